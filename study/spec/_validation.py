"""Pydantic validation: the strict base of every schema, and its errors as one-line ConfigErrors.

`format_validation_error` names every problem by its dotted key, with what was expected, what was
given and, for an unknown key, the closest valid one. The model and the test for "is this a key"
come in as arguments; `study.spec.trial` binds them to TrialConfig / StudySpec, and the package
`study.spec` re-exports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict

from study.spec._errors import ConfigError, short_repr
from study.spec._keys import closest_key, section, valid_keys


class Strict(BaseModel):
    """Base of every trial config section and study spec model: unknown keys, coercions
    ("3" for 3) and non-finite numbers are refused, and a validated config is frozen."""

    # allow_inf_nan=False: `lr: .inf` or `mi.weight=1e999` is an input error, not a diverged run
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _walk(loc: tuple[Any, ...], model: type[BaseModel]) -> tuple[list[str], Any]:
    """Dotted parts of a pydantic error location (union-branch labels dropped) and the section
    the last part lives in."""
    parts: list[str] = []
    node: Any = model
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        if isinstance(node, tuple):  # a dict field: this item is one of its keys
            parts.append(str(item))
            node = (
                node[1] if isinstance(node[1], type) and issubclass(node[1], BaseModel) else None
            )
            continue
        fields = getattr(node, "model_fields", None)
        if fields is None:
            continue  # inside a union or a leaf: branch labels such as 'int'
        parts.append(str(item))  # a field, or an unknown key of this section
        node = section(fields[item].annotation) if item in fields else None
    return parts, node


def _dotted(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    """Keep the field names of a pydantic error location, drop union-branch labels."""
    return ".".join(_walk(loc, model)[0]).replace(".[", "[")


def _model_at(loc: tuple[Any, ...], model: type[BaseModel]) -> type[BaseModel] | None:
    """The model class of the section at a pydantic error location (None if not a model)."""
    node = _walk(loc, model)[1] if loc else model
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def format_validation_error(
    err: pydantic.ValidationError,
    *,
    model: type[BaseModel],
    is_key: Callable[[str], bool],
    source: str | None = None,
    prefix: str = "",
) -> ConfigError:
    """Turn a pydantic error into one ConfigError listing every problem, one line each.

    `is_key(name)` says whether a cross-field message's leading dotted name is a key (then the
    problem is filed under it), as opposed to a word such as 'a' or 'sampler'.
    """
    lines: list[str] = []
    first_key: str | None = None
    by_key: dict[str, list[dict]] = {}
    for e in err.errors():
        key = prefix + _dotted(tuple(e["loc"]), model)
        by_key.setdefault(key, []).append(e)
    known = [prefix + k for k in valid_keys(model)]
    for key, errs in by_key.items():
        e = errs[0]
        msg = str(e["msg"]).removeprefix("Value error, ")
        if key == prefix:  # a cross-field check (no location): its message names the key
            key = _key_of_message(msg, prefix, is_key)
            msg = msg.removeprefix(key.removeprefix(prefix) + ": ")
        first_key = first_key or key
        if e["type"] == "extra_forbidden":
            parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
            section = _model_at(tuple(e["loc"])[:-1], model)
            siblings = list(section.model_fields) if section is not None else []
            guess = closest_key(key, [parent + f for f in siblings] or known)
            hint = f" (did you mean '{guess}'?)" if guess else ""
            allowed = f"; allowed here: {', '.join(siblings)}" if siblings else ""
            lines.append(f"unknown key '{key}'{hint}{allowed}")
        elif e["type"] == "value_error":
            lines.append(f"key '{key}': {msg}")
        elif e["type"] == "missing":
            lines.append(f"key '{key}' is required")
        else:
            expected = " or ".join(dict.fromkeys(_expectation(x) for x in errs))
            lines.append(f"key '{key}': expected {expected}, but got {short_repr(e.get('input'))}")
    # one line, so that a CLI error is exactly one line on stderr
    message = lines[0] if len(lines) == 1 else "invalid config: " + "; ".join(lines)
    return ConfigError(message, source=source, key=first_key)


def _key_of_message(msg: str, prefix: str, is_key: Callable[[str], bool]) -> str:
    """The key a cross-field message is about: its leading dotted name if `is_key` says it is one
    (`partition.groups must ...`), else the section the check belongs to (never blank)."""
    m = re.match(r"([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)", msg)
    if m and is_key(m.group(1)):
        return prefix + m.group(1)
    return prefix.rstrip(".") or "(top level)"


def _expectation(e: Mapping[str, Any]) -> str:
    """What a pydantic type error expected ('a valid integer'), without its 'Input should be'."""
    msg = str(e["msg"])
    return msg[len("Input should be ") :] if msg.startswith("Input should be ") else msg
