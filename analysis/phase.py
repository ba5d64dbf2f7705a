"""Phase-diagram aggregation over swept hyperparameters: the "info" half of every report figure.

Each function takes the per-seed table of :func:`analysis.runs.load_study` and returns a small
NamedTuple or DataFrame (no matplotlib here; ``analysis.figures`` draws them, as optuna splits its
``_get_*_info`` from its plots). Seeds of trials that are still running are left out by the caller.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.tables import format_number
from study.contract.params import PARAM_MI_WEIGHT

__all__ = [
    "Axis",
    "PhaseInfo",
    "EMERGED_RATES",
    "Z_QUANTITIES",
    "axis_labels",
    "curve_bands_info",
    "pareto_info",
    "phase_info",
    "phase_quantities",
    "scatter_info",
]

_log = logging.getLogger(__name__)

MIN_SEEDS = 3  # fewer seeds per cell get a warning (STYLE.md "Errors for bad input")
_ONSETS = ("t_func", "t_struct", "lag")  # defined only for the seeds where the metrics emerged


class Axis(NamedTuple):
    """One axis of a phase diagram: the levels (grid) or bins (sampled) of a hyperparameter."""

    key: str  # dotted key, e.g. "mi.weight"; "" for the single row of a one-key diagram
    labels: list[str]  # tick label per level/bin, in order
    values: list[float]  # level value or bin centre (NaN for categorical levels)
    binned: bool  # True when continuous values were binned (sampled studies)
    edges: list[float]  # bin edges (len(labels) + 1) when binned, else []


class PhaseInfo(NamedTuple):
    """Per-cell aggregates of one (x, y) pair of hyperparameters; arrays have shape (ny, nx)."""

    x: Axis
    y: Axis
    values: dict[str, np.ndarray]  # quantity → (ny, nx), NaN for empty cells
    n_seeds: np.ndarray  # (ny, nx) int: seeds per cell
    n_defined: dict[str, np.ndarray]  # quantity → (ny, nx) int: seeds with a finite value (onsets)
    cells: pd.DataFrame  # one row per non-empty cell: x, y labels, n_seeds, n_<onset>, quantities
    sparse_cells: int  # non-empty cells with fewer than MIN_SEEDS seeds


# Null-referenced and partition-free finals: shown first when a study measured them.
Z_QUANTITIES = {
    "final.q_func_z": "median final q_func z-score",
    "final.q_struct_z": "median final q_struct z-score",
    "final.q_struct_delta_z": "median final q_struct_delta z-score",
    "final.nmi_func": "median final NMI (functional communities)",
    "final.nmi_struct": "median final NMI (structural communities)",
}


# Fraction of seeds whose z-score onset exists: null-referenced, so comparable across K and N
# (unlike the absolute q_struct > 0.1 of the differentiated rate).
EMERGED_RATES = {
    "func_emerged_rate": ("func_emerged", "q_func_z emerged (rate)"),
    "struct_emerged_rate": ("struct_emerged", "q_struct_z emerged (rate)"),
}


def phase_quantities(task_metric: str, columns: Sequence[str] | None = None) -> dict[str, str]:
    """Quantity column → title of the phase-diagram panels (docs/method.md §15.4).

    With ``columns`` (the seeds' columns) the null-referenced quantities of ``Z_QUANTITIES``
    that the study measured come first; those it did not measure are left out.
    """
    cols = set(columns or ())
    z = {q: t for q, t in Z_QUANTITIES.items() if q in cols}
    z |= {q: t for q, (src, t) in EMERGED_RATES.items() if src in cols}
    return z | {
        "final.q_func": "median final q_func",
        "final.q_struct": "median final q_struct",
        "success_rate": "success rate",
        "differentiated_rate": "differentiated rate",
        f"final.{task_metric}": f"median final {task_metric}",
        "t_func": "median t_func (epoch)",
        "t_struct": "median t_struct (epoch)",
        "lag": "median lag (epochs)",
    }


def phase_info(
    seeds: pd.DataFrame,
    x: str,
    y: str | None = None,
    *,
    task_metric: str = "accuracy",
    max_levels: int = 8,
    n_bins: int = 5,
) -> PhaseInfo:
    """Aggregate seeds into the cells of an (x, y) phase diagram.

    A hyperparameter with at most ``max_levels`` distinct values (a grid study) gets one cell per
    value; a numeric one with more (a sampled study) is cut into ``n_bins`` bins, log-spaced when
    all values are positive and span more than a factor 20. Other hyperparameters are pooled.
    Per cell: medians over seeds of the final metrics, success and differentiated rates (fraction
    of seeds), and medians of t_func, t_struct and lag over the seeds where they are defined.

    Args:
        seeds: one row per (trial, seed) with the x/y columns, ``final.q_func``,
            ``final.q_struct``, ``final.<task_metric>``, ``success``, ``differentiated``,
            ``t_func``, ``t_struct``, ``lag``.
        x: the column on the horizontal axis.
        y: the column on the vertical axis; None gives a single row.
        task_metric: ``accuracy`` or ``r2``.
        max_levels: most distinct values shown as a grid.
        n_bins: bins for a sampled hyperparameter.

    Returns:
        The :class:`PhaseInfo`; empty seeds give empty arrays and a logged warning.

    Raises:
        ValueError: when x or y is not a column of seeds.
    """
    _check_phase_args(seeds, x, y, max_levels, n_bins)
    columns = list(seeds.columns)
    if "onsets_measured" in seeds and not seeds["onsets_measured"].astype(bool).any():
        columns = [c for c in columns if c not in ("func_emerged", "struct_emerged")]
    quantities = phase_quantities(task_metric, columns)
    data = seeds if len(seeds) else seeds.iloc[0:0]
    if not len(data):
        _log.warning("phase_info(): there are no seeds to aggregate for %s x %s.", x, y)
    ax, ix = _axis(data[x] if len(data) else pd.Series(dtype=float), x, max_levels, n_bins)
    if y is None:
        ay, iy = Axis("", ["all"], [math.nan], False, []), np.zeros(len(data), dtype=int)
    else:
        ay, iy = _axis(data[y], y, max_levels, n_bins)
    frame = data.assign(_ix=ix, _iy=iy)
    values, n_seeds, n_defined, rows = _fill_cells(frame, ax, ay, quantities, task_metric)
    sparse = int(np.count_nonzero((n_seeds > 0) & (n_seeds < MIN_SEEDS)))
    if sparse:
        warnings.warn(
            f"phase_info(): {sparse} cell(s) of {x} x {y or '-'} have fewer than {MIN_SEEDS} "
            "seeds; their medians and rates are rough.",
            stacklevel=2,
        )
    cells = pd.DataFrame(
        rows, columns=["x", "y", "n_seeds", *(f"n_{q}" for q in _ONSETS), *quantities]
    )
    return PhaseInfo(ax, ay, values, n_seeds, n_defined, cells, sparse)


def _check_phase_args(
    seeds: pd.DataFrame, x: str, y: str | None, max_levels: int, n_bins: int
) -> None:
    """phase_info()'s argument checks (ValueError): x and y are columns, levels and bins >= 1."""
    for key in (x, y):
        if key is not None and key not in seeds.columns:
            raise ValueError(
                f"phase_info(): {key!r} must be a column of seeds, but the columns are "
                f"{sorted(map(str, seeds.columns))}."
            )
    if max_levels < 1 or n_bins < 1:
        raise ValueError(
            f"phase_info(): max_levels and n_bins must be >= 1, but got max_levels={max_levels}, "
            f"n_bins={n_bins}."
        )


def _fill_cells(
    frame: pd.DataFrame, ax: Axis, ay: Axis, quantities: dict[str, str], task_metric: str
) -> tuple[dict, np.ndarray, dict, list[dict]]:
    """Aggregate the seeds of each (y, x) cell (columns _iy, _ix of `frame`): the value grids,
    seed counts and defined-onset counts per quantity, and one table row per non-empty cell."""
    shape = (len(ay.labels), len(ax.labels))
    values = {q: np.full(shape, np.nan) for q in quantities}
    n_seeds = np.zeros(shape, dtype=int)
    n_defined = {q: np.zeros(shape, dtype=int) for q in quantities}
    rows = []
    for (j, i), g in frame.groupby(["_iy", "_ix"], sort=True):
        if i < 0 or j < 0:
            continue  # NaN hyperparameter value: the run did not log it
        agg = _aggregate(g, task_metric)
        agg = {q: agg.get(q, math.nan) for q in quantities}
        for q in quantities:
            values[q][j, i] = agg[q]
        n_seeds[j, i] = len(g)
        for q in quantities:
            if q not in _ONSETS:
                n_defined[q][j, i] = len(g)
            elif q in g:
                n_defined[q][j, i] = int(np.isfinite(g[q].to_numpy(float)).sum())
        rows.append(
            {
                "x": ax.labels[i],
                "y": ay.labels[j],
                "n_seeds": len(g),
                **{f"n_{q}": n_defined[q][j, i] for q in _ONSETS},
                **agg,
            }
        )
    return values, n_seeds, n_defined, rows


def _aggregate(g: pd.DataFrame, task_metric: str) -> dict[str, float]:
    """The phase quantities of one cell's seeds."""

    def median(col: str) -> float:
        if col not in g:
            return math.nan
        v = pd.to_numeric(g[col], errors="coerce").to_numpy(float)
        v = v[np.isfinite(v)]
        return float(np.median(v)) if v.size else math.nan

    def rate(col: str) -> float:
        return float(g[col].fillna(False).astype(bool).mean()) if col in g else math.nan

    return {
        **{q: median(q) for q in Z_QUANTITIES if q in g},
        **{q: rate(src) for q, (src, _) in EMERGED_RATES.items() if src in g},
        "final.q_func": median("final.q_func"),
        "final.q_struct": median("final.q_struct"),
        "success_rate": rate("success"),
        "differentiated_rate": rate("differentiated"),
        f"final.{task_metric}": median(f"final.{task_metric}"),
        "t_func": median("t_func"),
        "t_struct": median("t_struct"),
        "lag": median("lag"),
    }


def axis_labels(
    seeds: pd.DataFrame, key: str, *, max_levels: int = 8, n_bins: int = 5
) -> pd.Series:
    """Each seed's level or bin label on the axis of `key`, as :func:`phase_info` assigns it."""
    if key not in seeds.columns:
        raise ValueError(f"axis_labels(): {key!r} must be a column of seeds, but it is missing.")
    ax, idx = _axis(seeds[key], key, max_levels, n_bins)
    labels = np.array(ax.labels + [None], dtype=object)
    return pd.Series(labels[idx], index=seeds.index, name=key)


def _axis(col: pd.Series, key: str, max_levels: int, n_bins: int) -> tuple[Axis, np.ndarray]:
    """The axis of one hyperparameter and each row's level index (-1 for a missing value)."""
    num = pd.to_numeric(col, errors="coerce")
    numeric = len(col) > 0 and num.notna().sum() == col.notna().sum() and num.notna().any()
    if not numeric:
        levels = sorted(col.dropna().astype(str).unique())
        index = {v: i for i, v in enumerate(levels)}
        idx = np.array([index.get(str(v), -1) if pd.notna(v) else -1 for v in col], dtype=int)
        return Axis(key, levels, [math.nan] * len(levels), False, []), idx
    v = num.to_numpy(float)
    uniq = np.unique(v[np.isfinite(v)])
    if uniq.size <= max_levels:
        idx = np.searchsorted(uniq, v)
        idx[~np.isfinite(v)] = -1
        return Axis(key, [f"{u:g}" for u in uniq], uniq.tolist(), False, []), idx
    lo, hi = float(uniq[0]), float(uniq[-1])
    if lo > 0 and hi / lo > 20:
        edges = np.geomspace(lo, hi, n_bins + 1)
        centres = np.sqrt(edges[:-1] * edges[1:])
    else:
        edges = np.linspace(lo, hi, n_bins + 1)
        centres = 0.5 * (edges[:-1] + edges[1:])
    # Inner edges decide the bin; the last bin is closed so the maximum lands in it.
    idx = np.clip(np.searchsorted(edges[1:-1], v, side="right"), 0, n_bins - 1)
    idx[~np.isfinite(v)] = -1
    # 3 significant figures, never more than 4 decimals (analysis.tables' display rule)
    labels = [
        f"[{format_number(a)}, {format_number(b)}{']' if i == n_bins - 1 else ')'}"
        for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))
    ]
    return Axis(key, labels, centres.tolist(), True, edges.tolist()), idx


def curve_bands_info(
    curves: pd.DataFrame,
    seeds: pd.DataFrame,
    *,
    by: str | None = PARAM_MI_WEIGHT,
    metrics: Sequence[str] = ("q_func", "q_struct"),
) -> pd.DataFrame:
    """Median and interquartile band over seeds of each metric against epoch, per level of `by`.

    Args:
        curves: one row per (trial_id, seed, epoch) with the metric columns.
        seeds: the per-seed table (gives each trial's `by` value).
        by: the grouping hyperparameter (λ by default); None or absent pools all seeds.
        metrics: the curve columns to summarise.

    Returns:
        One row per (level, metric, epoch): ``level`` (label), ``metric``, ``epoch``, ``median``,
        ``q25``, ``q75``, ``n`` (seeds with a finite value there).
    """
    cols = ["level", "metric", "epoch", "median", "q25", "q75", "n"]
    if not len(curves):
        _log.warning("curve_bands_info(): there are no curves to show.")
        return pd.DataFrame(columns=cols)
    if by is not None and by in seeds.columns:
        level = seeds.drop_duplicates("trial_id").set_index("trial_id")[by]
        lab = level.map(lambda v: f"{v:g}" if isinstance(v, (int, float, np.number)) else str(v))
        data = curves.assign(
            level=curves["trial_id"].map(lab), _order=curves["trial_id"].map(level)
        )
        data = data[data["level"].notna()]
    else:
        data = curves.assign(level="all", _order=0)
    rows = []
    for m in metrics:
        if m not in data:
            continue
        for (_order, lev, epoch), g in data.groupby(["_order", "level", "epoch"], sort=True):
            v = g[m].to_numpy(float)
            v = v[np.isfinite(v)]
            if v.size:
                q25, med, q75 = np.percentile(v, [25, 50, 75])
                rows.append(
                    {
                        "level": lev,
                        "metric": m,
                        "epoch": float(epoch),
                        "median": med,
                        "q25": q25,
                        "q75": q75,
                        "n": int(v.size),
                    }
                )
    return pd.DataFrame(rows, columns=cols)


def pareto_info(
    seeds: pd.DataFrame, *, task_metric: str = "accuracy", by: str | None = PARAM_MI_WEIGHT
) -> pd.DataFrame:
    """Per trial, median final task metric and q_func, and whether it is on their Pareto front.

    Both are maximised; a trial is on the front when no other trial is at least as good in both
    and strictly better in one.

    Returns:
        One row per trial with finite values: ``trial_id``, ``task`` (median final task metric),
        ``q_func`` (median final q_func), ``level`` (the `by` value, NaN without it),
        ``on_front``; sorted by ``task``.
    """
    cols = ["trial_id", "task", "q_func", "level", "on_front"]
    need = {"trial_id", f"final.{task_metric}", "final.q_func"}
    if not len(seeds) or not need <= set(seeds.columns):
        return pd.DataFrame(columns=cols)
    g = seeds.groupby("trial_id", sort=True)
    df = pd.DataFrame(
        {
            "task": g[f"final.{task_metric}"].median(),
            "q_func": g["final.q_func"].median(),
            "level": g[by].first() if by in seeds.columns else math.nan,
        }
    ).reset_index()
    df = df[np.isfinite(df["task"].astype(float)) & np.isfinite(df["q_func"].astype(float))]
    a, q = df["task"].to_numpy(float), df["q_func"].to_numpy(float)
    dominated = (
        (a[None, :] >= a[:, None])
        & (q[None, :] >= q[:, None])
        & ((a[None, :] > a[:, None]) | (q[None, :] > q[:, None]))
    )
    df["on_front"] = ~dominated.any(axis=1)
    return df.sort_values("task").reset_index(drop=True)[cols]


def scatter_info(seeds: pd.DataFrame, *, by: str | None = PARAM_MI_WEIGHT) -> pd.DataFrame:
    """Final q_func against final q_struct per seed, with the colouring hyperparameter.

    Returns:
        One row per seed with finite values: ``trial_id``, ``seed``, ``q_func``, ``q_struct``,
        ``level`` (the `by` value, NaN without it), ``differentiated``.
    """
    cols = ["trial_id", "seed", "q_func", "q_struct", "level", "differentiated"]
    if not len(seeds) or not {"final.q_func", "final.q_struct"} <= set(seeds.columns):
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(
        {
            "trial_id": seeds["trial_id"],
            "seed": seeds["seed"],
            "q_func": pd.to_numeric(seeds["final.q_func"], errors="coerce"),
            "q_struct": pd.to_numeric(seeds["final.q_struct"], errors="coerce"),
            "level": seeds[by] if by in seeds.columns else math.nan,
            "differentiated": seeds.get("differentiated", False),
        }
    )
    return df[df["q_func"].notna() & df["q_struct"].notna()].reset_index(drop=True)[cols]
