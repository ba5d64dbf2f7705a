"""Checking an Optuna storage URL (the spec's `storage`, or STUDY_OPTUNA_STORAGE) up front:
parsed, its dialect and driver known, without connecting. Every URL shown is redacted.
"""

from __future__ import annotations

from pathlib import Path

from study.contract.text import redact_url
from study.spec._errors import ConfigError, short_repr

__all__ = ["check_storage_url"]


def check_storage_url(url: str, *, source: str, key: str = "storage") -> str:
    """An Optuna RDB URL that SQLAlchemy can parse, with a known dialect and an installed driver,
    checked without connecting; for SQLite, the database's folder must exist. Returns the URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise ConfigError(
            f"key '{key}': not a database URL such as sqlite:////abs/optuna.db or "
            f"postgresql+psycopg://user:pass@host:5432/db, but got "
            f"{short_repr(redact_url(str(url)))}",
            source=source,
            key=key,
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(
            f"key '{key}': unknown database kind '{parsed.drivername}' in {shown} "
            f"(use sqlite, postgresql or mysql)",
            source=source,
            key=key,
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise ConfigError(
            f"key '{key}': the driver for {parsed.drivername} is not installed "
            f"({e}); install the cluster extra (pip install -e '.[cluster]')",
            source=source,
            key=key,
        ) from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:") or db.startswith("file:"):
            raise ConfigError(
                f"key '{key}': a SQLite storage needs a file path "
                f"(sqlite:////abs/path/optuna.db), but got {shown}",
                source=source,
                key=key,
            )
        if not Path(db).expanduser().resolve().parent.is_dir():
            raise ConfigError(
                f"key '{key}': the folder of the SQLite file {db} does not exist",
                source=source,
                key=key,
            )
    return url
