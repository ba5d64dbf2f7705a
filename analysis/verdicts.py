"""The timing verdict of each cell of a study, whichever pipeline computes it: one seam.

:func:`timing_verdicts` is the only place the report, the notebook API and the verdict matrix
get timing verdicts from. It returns one row per cell: the cell keys as columns, then
``verdict``, ``n`` (seeds judged), ``why`` (one line of free text: the counts and the test
behind the verdict), and whatever further columns the pipeline gives. Today the pipeline is the
half-rise onsets and censoring-aware lag tests of :mod:`analysis.timing`
(:func:`_study_verdicts`, docs/timing.md); the old fixed-z threshold pipeline
(:func:`_threshold_verdicts`) is kept for comparison only. A pipeline that gives the same three
columns replaces it in the one line marked below.

Also here: which seeds a verdict may use and which it leaves out, with the reason
(:func:`timing_excluded`: trials cut short, networks that failed the task), the cell keys of a
study (:func:`verdict_cells`), and the epoch of the first evaluation after training began, by
which an onset is only a bound (:func:`first_evaluation`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.emergence import timing_seeds, verdict_table
from analysis.runs import StudyData, analysed_seeds
from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z
from study.contract.params import PARAM_MI_WEIGHT, PARAM_RUN, PARAM_Z

__all__ = [
    "NO_SEEDS",
    "TIMING_COLUMNS",
    "first_evaluation",
    "timing_excluded",
    "timing_verdicts",
    "verdict_cells",
]

TIMING_COLUMNS = ("verdict", "n", "why")  # after the cell keys, in every pipeline's table
NO_SEEDS = "no seeds to time"  # a cell whose seeds were all left out (failed, cut short)


def verdict_cells(swept: Sequence[str], seeds: pd.DataFrame) -> list[str]:
    """The keys of a verdict's cell: λ first, then every other swept key the seeds carry."""
    keys = [PARAM_MI_WEIGHT] if PARAM_MI_WEIGHT in seeds else []
    return keys + [k for k in swept if k in seeds and k not in keys]


def timing_verdicts(
    data: StudyData, by: Sequence[str] | None = None, *, seeds: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One timing verdict per cell of the study.

    Args:
        data: the loaded study (its curves are what a curve-based pipeline reads).
        by: the cell keys; default :func:`verdict_cells` (λ and every other swept key).
        seeds: the per-seed table to judge, default the analysed seeds of `data`; pass a copy
            whose key columns hold bin labels (an adaptive search) to judge bins as cells.
            Seeds are matched to their curves by ``trial_id`` and ``seed``.

    Returns:
        One row per cell: the `by` columns, ``verdict``, ``n``, ``why``, then the pipeline's
        own columns; empty (with those columns) when the study has no seeds to time or did not
        measure the z-score curves. λ = 0 cells are controls: any order there is a false one.
    """
    seeds = analysed_seeds(data) if seeds is None else seeds
    by = list(by) if by is not None else verdict_cells(data.swept, seeds)
    measured = "onsets_measured" in seeds and bool(seeds["onsets_measured"].astype(bool).any())
    if not len(seeds) or not measured:
        return pd.DataFrame(columns=[*by, *TIMING_COLUMNS])
    # the pipeline sees the seeds of failed networks too, to count them per cell (n_failed);
    # it judges none of them. `excluded` (failed and cut short) gives the reasons of a cell
    # without a seed to judge.
    timing = timing_seeds(seeds, require_success=False)[0]
    excluded = timing_seeds(seeds)[1]
    table = pd.DataFrame(columns=[*by, *TIMING_COLUMNS])
    if len(timing):
        # ---- the pipeline: replace this one line to swap it (same arguments, same columns);
        # _threshold_verdicts is the old fixed-z pipeline, kept for comparison only
        table = _study_verdicts(data, timing, by)
    method = table.attrs.get("method", "")
    table = _with_untimed(table, excluded, by)
    out = table[[*by, *TIMING_COLUMNS, *(c for c in table if c not in (*by, *TIMING_COLUMNS))]]
    out.attrs["method"] = method
    return out


def _with_untimed(table: pd.DataFrame, excluded: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """`table` with a row for every cell whose seeds were all left out (verdict
    :data:`NO_SEEDS`, n = 0, the reasons counted in ``why``), sorted by the cell keys. A row of
    the pipeline's own without a seed to judge (n = 0) gets the same ``why``; a count column
    of the pipeline's is 0 in an added row, its per-ordering ``verdict.<s>``/``why.<s>`` those
    of the row."""
    if not len(excluded):
        return table
    reasons: dict[tuple, str] = {}
    groups = excluded.groupby(by, sort=False, dropna=False) if by else [((), excluded)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        counts = g["reason"].value_counts()
        reasons[key] = "left out: " + ", ".join(f"{n} {r}" for r, n in counts.items())
    keys = [tuple(r) for r in table[by].itertuples(index=False)] if by else [()] * len(table)
    table = table.copy()
    whys = [c for c in table if c.split(".")[0] == "why"]
    for i, key in enumerate(keys):
        if key in reasons and table["n"].iloc[i] == 0:
            table.loc[table.index[i], whys] = reasons[key]
    have = set(keys)
    ints = [c for c in table if pd.api.types.is_integer_dtype(table[c]) and c not in by]
    rows = []
    for key, why in reasons.items():
        if key in have:
            continue
        row = {**{c: 0 for c in ints}, **dict(zip(by, key)), "verdict": NO_SEEDS, "n": 0}
        if "control" in table:
            lam = dict(zip(by, key)).get(PARAM_MI_WEIGHT)
            row["control"] = bool(pd.to_numeric(pd.Series([lam]), errors="coerce").eq(0).iloc[0])
        if "ordering" in table and table["ordering"].nunique() == 1:
            row["ordering"] = table["ordering"].iloc[0]
        for c in table.columns:
            head = c.split(".")[0]
            if c != head and head in ("verdict", "n", "why"):
                row[c] = {"verdict": NO_SEEDS, "n": 0, "why": why}[head]
        rows.append({**row, "why": why})
    if not rows:
        return table
    added = pd.DataFrame(rows)
    out = pd.concat([table, added], ignore_index=True) if len(table) else added
    keep = [*ints, *(["control"] if "control" in table else [])]
    out = out.astype({c: table[c].dtype for c in keep if c in out})
    try:
        return out.sort_values(by, kind="stable").reset_index(drop=True) if by else out
    except TypeError:  # a key mixing numbers and labels keeps its order
        return out


def _study_verdicts(data: StudyData, timing: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """:func:`analysis.timing.study_verdicts_wide`: each seed's half-rise onsets (from its
    seeds-table columns, else its curves), the censoring-aware lag test and TOST per cell and
    ordering, BH within the treated cells, λ = 0 controls alone; one row per cell, the first
    ordering (function vs Q(|W|)) in ``verdict``/``n``/``why``, every ordering in
    ``verdict.<struct>`` etc."""
    from analysis.timing import study_verdicts_wide

    curves = data.curves if data.curves is not None and len(data.curves) else None
    return study_verdicts_wide(timing, by, curves=curves)


def _threshold_verdicts(data: StudyData, timing: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """:func:`analysis.emergence.verdict_table` with the seam's columns (``data`` is unused:
    the per-seed onsets are already in `timing`)."""
    del data
    table = verdict_table(timing, by)
    control = (
        pd.to_numeric(table[PARAM_MI_WEIGHT], errors="coerce").eq(0.0)
        if PARAM_MI_WEIGHT in table
        else pd.Series(False, index=table.index)
    )
    why = []
    for r, is_control in zip(table.to_dict("records"), control):
        counts = (
            f"function first {r['n_func_first']}, structure first {r['n_struct_first']}, "
            f"tie {r['n_tie']}, neither {r['n_neither']}"
        )
        if r["verdict"].endswith(("never emerged", "neither emerged")):
            text = (
                f"onsets: function in {r['n_func_emerged']}, structure in "
                f"{r['n_struct_emerged']} of {r['n_seeds']} seeds"
            )
        elif r["verdict"] == "co-emergent":
            text = f"{counts}; TOST p (BH) = {_p(r['p_tost_bh'])}"
        else:
            text = f"{counts}; sign test p (BH) = {_p(r['p_sign_bh'])}"
        why.append(f"control (λ = 0): {text}" if is_control else text)
    out = table.assign(n=table["n_seeds"], why=why)
    z, run = _mode(timing, PARAM_Z, DEFAULT_Z), int(_mode(timing, PARAM_RUN, DEFAULT_RUN))
    out.attrs["method"] = (
        f"threshold onsets (z ≥ {z:g} for {run} evaluations), sign test per cell, BH"
    )
    return out


def _mode(seeds: pd.DataFrame, key: str, default: float) -> float:
    """The most common value of a trial param over the seeds, else `default`."""
    v = pd.to_numeric(seeds[key], errors="coerce").dropna() if key in seeds else []
    return float(v.mode().iloc[0]) if len(v) else default


def _p(p: float) -> str:
    return f"{p:.2g}" if np.isfinite(p) else "–"


def timing_excluded(data: StudyData, *, seeds: pd.DataFrame | None = None) -> pd.DataFrame:
    """The seeds a timing verdict leaves out, with the reason: trials cut short (diverged,
    stopped, failed, running), no z-score curves, or a network that failed the task.

    Returns:
        ``trial_id``, ``seed``, the swept keys, ``status``, the final task metric and
        ``reason``.
    """
    seeds = analysed_seeds(data) if seeds is None else seeds
    if not len(seeds):
        return pd.DataFrame(columns=["trial_id", "seed", "status", "reason"])
    excluded = timing_seeds(seeds)[1]
    metric = f"final.{data.success_metric}"
    cols = ["trial_id", "seed", *data.swept, "status", metric, "reason"]
    return excluded[[c for c in dict.fromkeys(cols) if c in excluded]].reset_index(drop=True)


def first_evaluation(data: StudyData) -> float:
    """The epoch of a study's first evaluation after training began: per trial the smallest
    epoch above 0 of its curves (an evaluation at epoch 0 sees the untrained network), the most
    common over the trials (NaN without curves). An onset at or before it is left-censored: the
    metric had emerged by then, and when is unresolved."""
    curves = data.curves
    if curves is None or not len(curves) or "epoch" not in curves:
        return float("nan")
    trained = curves[pd.to_numeric(curves["epoch"], errors="coerce") > 0]
    if not len(trained):
        return float("nan")
    if "trial_id" not in trained:
        return float(trained["epoch"].min())
    return float(trained.groupby("trial_id")["epoch"].min().mode().iloc[0])
