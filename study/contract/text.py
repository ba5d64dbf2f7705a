"""Text that leaves a process (error lines, logs, printed URLs): credentials redacted, one line.

Both command lines (`python -m study`, `python -m analysis`) and the study service print through
these helpers, so a storage or tracking URL's password never reaches a terminal, a log or an
MLflow tag, and every error is one line on stderr. Torch-free and import-light.
"""

from __future__ import annotations

import re

__all__ = ["redact_url", "one_line"]

# `scheme://user:` then the password up to the `@` that ends the credentials
_CREDENTIALS = re.compile(r"(\b[A-Za-z][\w+.-]*://[^:/@\s]*:)[^\s/]*@")


def redact_url(text: str) -> str:
    """A URL (or any text holding URLs) with each password replaced by ***:
    postgresql://u:secret@h/db -> postgresql://u:***@h/db. Everything printed or logged that
    may hold a storage or tracking URL goes through this."""
    return _CREDENTIALS.sub(r"\1***@", str(text))


def one_line(text: str, limit: int = 2000) -> str:
    """Collapse a message to one line of at most `limit` characters (then " ..." is appended):
    every run of whitespace, newlines included, becomes one space."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."
