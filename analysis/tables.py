"""Display tables: a machine table (the CSV beside a report) turned into what a reader sees.

Conventions shared by every function here: p-values get 2 significant figures and read
``< 0.001`` below 0.001; effects and other real numbers get 3 significant figures; no cell shows
more than :data:`MAX_DECIMALS` decimals; missing values, infinities and declared sentinels (such
as ``n_success = -1`` on rows where it does not apply) read as :data:`EMPTY`. Column names come
from :data:`DISPLAY_NAMES` (the CSVs keep the machine names). An onset at the first evaluation
is a bound, not a value: columns named in ``left_censored`` show it as ``≤ t``. Nothing here
changes the data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from study.contract.params import (
    PARAM_GROUPS,
    PARAM_HIDDEN,
    PARAM_LR,
    PARAM_MI_WEIGHT,
    PARAM_REG_REC,
)

__all__ = [
    "DISPLAY_NAMES",
    "EMPTY",
    "MAX_DECIMALS",
    "SENTINELS",
    "display_name",
    "display_table",
    "format_number",
    "format_p",
    "is_p_column",
]

EMPTY = "—"  # what a missing, infinite or not-applicable cell shows
MAX_DECIMALS = 4  # the most decimals any cell shows
P_FLOOR = 0.001  # smaller p-values read "< 0.001"

# Column -> values that mean "not applicable" there (the machine tables keep them for CSV types).
SENTINELS: Mapping[str, tuple[Any, ...]] = {"n_success": (-1,)}

# Machine name -> what a reader sees. Unlisted names fall back to display_name()'s rule.
DISPLAY_NAMES: Mapping[str, str] = {
    PARAM_MI_WEIGHT: "λ",
    PARAM_GROUPS: "K",
    PARAM_HIDDEN: "N",
    PARAM_LR: "learning rate",
    PARAM_REG_REC: "recurrent L2",
    "claim": "claim",
    "n": "pairs",
    "n_seeds": "seeds",
    "n_trials": "trials",
    "median_control": "control median",
    "median_treated": "treated median",
    "effect": "effect (median Δ)",
    "n_in_direction": "seeds in expected direction",
    "n_success": "treated seeds succeeding",
    "p": "p",
    "p_bh": "p (BH)",
    "p_sign": "p (sign test)",
    "p_sign_bh": "p (sign test, BH)",
    "p_tost": "p (TOST)",
    "p_tost_bh": "p (TOST, BH)",
    "verdict": "verdict",
    "n_func_first": "function first",
    "n_struct_first": "structure first",
    "n_tie": "ties",
    "n_neither": "neither emerged",
    "t_func": "functional onset (epoch)",
    "t_struct": "structural onset (epoch)",
    "lag": "lag (epochs)",
    "ci_lo": "CI low",
    "ci_hi": "CI high",
    "test": "test",
    "mean_change": "mean change",
    "worst_change": "worst seed's change",
    "p_drop": "p (drop > margin)",
    "p_drop_bh": "p (drop > margin, BH)",
    "n_func_emerged": "function emerged",
    "n_struct_emerged": "structure emerged",
    "t_func_km": "functional onset (KM median)",
    "t_struct_km": "structural onset (KM median)",
    "median_lag": "median lag (epochs)",
    "n_events": "onsets",
    "why": "why",
    "lambda": "λ",
}

_P_NAME = re.compile(r"^(p|pvalue|p_value)(_.*)?$|^(?!n_).*_p$")


def is_p_column(name: str) -> bool:
    """Whether a column holds p-values: ``p``, ``p_<x>`` (``p_bh``, ``p_sign_bh``) or ``<x>_p``
    (but not ``n_<x>``, a count)."""
    return bool(_P_NAME.match(str(name)))


def display_name(name: str, names: Mapping[str, str] | None = None) -> str:
    """The reader's name of a column: from `names` (default :data:`DISPLAY_NAMES`), else the
    machine name with ``final.`` dropped to "final " and underscores read as spaces."""
    names = DISPLAY_NAMES if names is None else names
    if name in names:
        return names[name]
    text = str(name)
    if text.startswith("final."):
        text = "final " + text[len("final.") :]
    return text.replace("_", " ")


def format_p(p: Any) -> str:
    """A p-value with 2 significant figures; ``< 0.001`` below 0.001; :data:`EMPTY` if missing.

    >>> format_p(0.0123), format_p(4.7e-10), format_p(1.0)
    ('0.012', '< 0.001', '1')
    """
    v = _float(p)
    if v is None or not math.isfinite(v):
        return EMPTY
    if v < P_FLOOR:
        return f"< {P_FLOOR:g}"
    return format_number(v, digits=2)


def format_number(v: Any, *, digits: int = 3) -> str:
    """A number to `digits` significant figures, never more than :data:`MAX_DECIMALS` decimals.

    Integers print whole (thousands are not abbreviated); a value that rounds to zero at
    MAX_DECIMALS prints ``0``; NaN and ±inf print :data:`EMPTY`.

    >>> format_number(-0.006431), format_number(12345.6), format_number(0.5), format_number(7)
    ('-0.0064', '12346', '0.5', '7')
    """
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    x = _float(v)
    if x is None or not math.isfinite(x):
        return EMPTY
    if float(x).is_integer() and isinstance(v, (int, np.integer)):
        return str(int(x))
    if x == 0:
        return "0"
    exponent = math.floor(math.log10(abs(x)))
    decimals = min(max(digits - 1 - exponent, 0), MAX_DECIMALS)
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "0") else text


def display_table(
    df: pd.DataFrame,
    *,
    names: Mapping[str, str] | None = None,
    sentinels: Mapping[str, Sequence[Any]] | None = None,
    p_columns: Sequence[str] | None = None,
    left_censored: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """A copy of `df` as strings for display, with readable column names.

    Args:
        df: a machine table (one row per record, machine column names).
        names: machine -> display column names; default :data:`DISPLAY_NAMES`.
        sentinels: column -> values that read as :data:`EMPTY`; default :data:`SENTINELS`.
        p_columns: the p-value columns; default those :func:`is_p_column` recognises.
        left_censored: onset column -> the epoch of the first evaluation (a number, or one per
            row); a value at or before it is left-censored (the metric had emerged by then,
            when is unknown) and reads ``≤ t``.

    Returns:
        A DataFrame of str, same rows and column order, columns renamed; duplicate display
        names keep the machine name in brackets so no column is lost.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"display_table(): df must be a pandas DataFrame, but got {type(df).__name__}."
        )
    sentinels = SENTINELS if sentinels is None else sentinels
    p_cols = set(p_columns) if p_columns is not None else {c for c in df if is_p_column(c)}
    cells = {}
    for i, col in enumerate(df.columns):
        blank = set(sentinels.get(col, ()))
        fmt = format_p if col in p_cols else format_number
        cells[i] = [EMPTY if _is_sentinel(v, blank) else _cell(v, fmt) for v in df.iloc[:, i]]
    out = pd.DataFrame(cells, index=df.index, columns=range(len(df.columns)))
    out.columns = df.columns
    for col, first in (left_censored or {}).items():
        if col not in df.columns:
            continue
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        t0 = np.broadcast_to(np.asarray(first, float), v.shape)
        with np.errstate(invalid="ignore"):
            bound = np.isfinite(v) & np.isfinite(t0) & (v <= t0 + 1e-9 * np.maximum(1, abs(t0)))
        out.loc[bound, col] = [f"≤ {format_number(x)}" for x in v[bound]]
    out.columns = _unique_names([display_name(c, names) for c in df.columns], list(df.columns))
    return out


def _cell(v: Any, fmt: Any) -> str:
    """One cell: numbers through `fmt`, missing as EMPTY, anything else as its text."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return EMPTY
    if isinstance(v, (int, float, np.integer, np.floating, bool, np.bool_)):
        return fmt(v) if not isinstance(v, (bool, np.bool_)) else format_number(v)
    return str(v)


def _is_sentinel(v: Any, blank: set[Any]) -> bool:
    """Whether `v` is one of the declared sentinel values of its column."""
    if not blank:
        return False
    try:
        return v in blank
    except TypeError:  # unhashable cell
        return False


def _float(v: Any) -> float | None:
    """`v` as a float, None when it is not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _unique_names(shown: list[str], machine: list[str]) -> list[str]:
    """Display names, disambiguated with the machine name where two would collide."""
    seen: dict[str, int] = {}
    for s in shown:
        seen[s] = seen.get(s, 0) + 1
    return [s if seen[s] == 1 else f"{s} [{m}]" for s, m in zip(shown, machine)]
