"""The error every bad config or spec raises, and the bounded repr its messages quote.

A leaf module (no imports from `study`): the other modules of `study.spec` raise `ConfigError`,
and the package `study.spec` re-exports both names, which is where callers import them from.
"""

from __future__ import annotations

import reprlib
from typing import Any


class ConfigError(ValueError):
    """A bad config or spec: where (file, dotted key), what was expected and what was given."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.detail = message  # the message without the source prefix
        super().__init__(f"{source}: {message}" if source else message)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxlist, _REPR.maxdict = 3, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 80, 80, 40


def short_repr(value: Any) -> str:
    """repr() bounded in size and depth: an error message never expands a YAML alias bomb or
    echoes a megabyte of input."""
    return _REPR.repr(value)
