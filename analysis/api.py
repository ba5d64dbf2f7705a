"""The report's tables for notebooks: each a function of a loaded study returning a DataFrame.

``import analysis`` exposes these names lazily (``analysis.load_study``, ``analysis.claims``,
...). Every function takes the :class:`~analysis.runs.StudyData` of :func:`load_study` and
returns a pandas DataFrame with machine column names (the CSVs beside a report have the same
tables; :func:`display_table` gives the rounded, readable form the report's HTML shows). A study
is cut into cells by :func:`study_cells`: grid points, or bins of λ for an adaptive search. docs/
analysis.md ("Notebooks") lists them with an example; docs/example.ipynb runs them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.cells import N_BINS, Cells, log_axis
from analysis.cells import study_cells as _cut
from analysis.claims import ACCURACY_MARGIN, claims_table
from analysis.runs import StudyData, analysed_seeds, load_study
from analysis.tables import display_table
from analysis.verdicts import first_evaluation, timing_excluded
from analysis.verdicts import timing_verdicts as _timing_verdicts
from study.contract.params import PARAM_MI_WEIGHT as LAMBDA

__all__ = [
    "IMPORTANCE_REPEATS",
    "IMPORTANCE_TREES",
    "StudyData",
    "claims_by_cell",
    "display_table",
    "first_evaluation",
    "importance_table",
    "importance_targets",
    "lambda_limits",
    "load_study",
    "mi_audit_table",
    "phase_cells",
    "seeds",
    "study_cells",
    "timing_excluded",
    "timing_verdicts",
    "verdict_matrix",
]

IMPORTANCE_REPEATS = {"fanova": 5, "ped_anova": 10}  # evaluations per (target, evaluator)
IMPORTANCE_TREES = 16  # fANOVA's forest: about 0.2 s a fit on 60 trials of 3 keys


def seeds(data: StudyData) -> pd.DataFrame:
    """One row per seed of every trial that is not running: its keys, finals, success, onsets
    (``t_func``, ``t_struct``, NaN where the metric did not emerge) and which came first."""
    return analysed_seeds(data)


def study_cells(data: StudyData, *, n_bins: int = N_BINS) -> Cells:
    """How the study is cut into cells (grid points, or bins of λ × the few-valued keys) and
    the per-seed table with λ as its bin label (:func:`analysis.cells.study_cells`)."""
    return _cut(data, n_bins=n_bins)


def _finished(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"].astype(str) == "finished"] if "status" in frame else frame


def claims_by_cell(
    data: StudyData,
    *,
    margin: float = ACCURACY_MARGIN,
    n_bins: int = N_BINS,
    cut: Cells | None = None,
) -> pd.DataFrame:
    """The paper's claims per cell, from the finished trials.

    A grid: each (cell, λ > 0) against the cell's own λ = 0 seeds, paired by seed
    (:func:`analysis.claims.claims_table`; accuracy by equivalence within ±`margin`). An
    adaptive search: each bin of λ against the fitted λ → 0 limit of the same few-valued cell
    (:func:`analysis.response.binned_claims`). Columns: the cell keys, ``claim``, ``verdict``
    and each method's statistics; empty when no claim can be tested (no control, no limit).
    """
    from analysis.response import binned_claims

    cut = _cut(data, n_bins=n_bins) if cut is None else cut
    done = _finished(cut.seeds)
    if cut.design.kind == "grid":
        return claims_table(done, data.swept, task_metric=data.success_metric, margin=margin)
    if cut.binning is None:
        return pd.DataFrame()
    by = [k for k in cut.keys if k != LAMBDA]
    return binned_claims(done, cut.binning, by=by, task_metric=data.success_metric, margin=margin)


def timing_verdicts(
    data: StudyData, *, n_bins: int = N_BINS, cut: Cells | None = None
) -> pd.DataFrame:
    """The timing verdict per cell (grid point or bin of λ): the cell keys, ``verdict``,
    ``n``, ``why`` and the pipeline's statistics (:func:`analysis.verdicts.timing_verdicts`).
    Trials cut short and networks that failed the task are left out
    (:func:`timing_excluded` lists them)."""
    cut = _cut(data, n_bins=n_bins) if cut is None else cut
    return _timing_verdicts(data, cut.keys, seeds=cut.cell_seeds)


def verdict_matrix(
    data: StudyData,
    *,
    claims_table: pd.DataFrame | None = None,
    timing: pd.DataFrame | None = None,
    cut: Cells | None = None,
) -> pd.DataFrame:
    """The verdict matrix as a table: one row per claim and one timing row per ordering
    measured (``Timing, function vs Q(|W|)``, ``Timing, function vs ΔW``), one column per cell
    (its label, e.g. ``λ=0.3 · K=2``), each entry a verdict (``not measured`` where none).
    """
    from analysis.matrix import TIMING_ROW

    info = matrix_info_of(data, claims_table=claims_table, timing=timing, cut=cut)
    rows = {title: list(info.verdicts[i]) for i, title in enumerate(info.claims)}
    for title, row in info.timing_rows or ((TIMING_ROW, tuple(info.timing)),):
        rows[title] = list(row)
    return pd.DataFrame.from_dict(rows, orient="index", columns=info.cells)


def matrix_info_of(
    data: StudyData,
    *,
    claims_table: pd.DataFrame | None = None,
    timing: pd.DataFrame | None = None,
    cut: Cells | None = None,
):
    """:func:`analysis.matrix.matrix_info` of the study's claims and timing verdicts (computed
    here unless given)."""
    from analysis.claims import CLAIMS
    from analysis.matrix import matrix_info

    cut = _cut(data) if cut is None else cut
    table = claims_by_cell(data, cut=cut) if claims_table is None else claims_table
    tim = timing_verdicts(data, cut=cut) if timing is None else timing
    keys = [k for k in cut.keys if not len(table) or k in table.columns]
    keys = keys or [k for k in cut.keys if k in tim.columns]
    order = [c.name for c in CLAIMS if len(table) and c.name in set(table["claim"])]
    return matrix_info(table, tim if len(tim) else None, keys=keys, claim_order=order)


def phase_cells(data: StudyData, x: str, y: str | None = None) -> pd.DataFrame:
    """Per cell of an (x, y) phase diagram: seeds, medians of the finals and onsets, success
    and emergence rates (:func:`analysis.phase.phase_info`; a continuous key is binned)."""
    from analysis.phase import phase_info

    return phase_info(analysed_seeds(data), x, y, task_metric=data.success_metric).cells


def mi_audit_table(
    data: StudyData, *, n_bins: int = N_BINS, cut: Cells | None = None
) -> pd.DataFrame:
    """Every MI measurement against its null floor, per λ (per bin of λ in an adaptive search):
    seeds, mean and sd of each series' last value, seeds with a positive excess."""
    from analysis.mi_audit import mi_audit_table as audit

    cut = _cut(data, n_bins=n_bins) if cut is None else cut
    return audit(data, groups=_lambda_groups(cut))


def _lambda_groups(cut: Cells) -> pd.Series | None:
    """trial_id -> λ's bin label in an adaptive search (None for a grid)."""
    if cut.binning is None or "trial_id" not in cut.cell_seeds:
        return None
    return cut.cell_seeds.drop_duplicates("trial_id").set_index("trial_id")[LAMBDA]


def importance_targets(data: StudyData) -> list[tuple[str, str]]:
    """(metric, direction) pairs importance is computed for: the study's declared objectives,
    the final task metric, and the two onsets (earlier is better)."""
    out = [
        (str(o["metric"]), str(o.get("direction", "maximize")))
        for o in data.objectives
        if isinstance(o, dict) and "metric" in o
    ]
    out += [("accuracy", "maximize"), ("t_func", "minimize"), ("t_struct", "minimize")]
    seen, unique = set(), []
    for metric, direction in out:
        key = f"final.{data.success_metric}" if metric == "accuracy" else metric
        if key not in seen:
            seen.add(key)
            unique.append((metric, direction))
    return unique


def importance_table(
    data: StudyData,
    targets: Sequence[tuple[str, str]] | None = None,
    *,
    evaluators: Sequence[str] = ("fanova", "ped_anova"),
    n_repeats: dict[str, int] | None = None,
    n_trees: int = IMPORTANCE_TREES,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """Which swept keys matter for each target, by each evaluator (named), with its spread.

    Args:
        targets: (metric, direction) pairs; default :func:`importance_targets`.
        evaluators: Optuna's ``fanova`` and/or ``ped_anova``.
        n_repeats: evaluations per evaluator (bootstrap resamples of the trials after the
            first); default :data:`IMPORTANCE_REPEATS`.
        rng: generator of the resamples; default ``np.random.default_rng(0)``.

    Returns:
        One row per (target, evaluator, key): ``target``, ``column``, ``evaluator``,
        ``param``, ``importance`` (all trials), ``mean``, ``sd``, ``q05``, ``q95``,
        ``n_repeats``, ``n_trials``, ``message`` (why a target has no rows, or warnings).
    """
    return _importance_frame(importance_infos(data, targets, evaluators, n_repeats, n_trees, rng))


def importance_infos(
    data: StudyData,
    targets: Sequence[tuple[str, str]] | None = None,
    evaluators: Sequence[str] = ("fanova", "ped_anova"),
    n_repeats: dict[str, int] | None = None,
    n_trees: int = IMPORTANCE_TREES,
    rng: np.random.Generator | None = None,
) -> list:
    """The :class:`analysis.importance.ImportanceInfo` of each (target, evaluator)."""
    from analysis.importance import importance_info

    rng = np.random.default_rng(0) if rng is None else rng
    reps = {**IMPORTANCE_REPEATS, **(n_repeats or {})}
    seeds_ = _finished(analysed_seeds(data))
    params = [k for k in data.swept if k in seeds_.columns]
    logs = {k: log_axis(seeds_[k]) for k in params}
    out = []
    for metric, direction in importance_targets(data) if targets is None else targets:
        for ev in evaluators:
            out.append(
                importance_info(
                    seeds_,
                    params,
                    metric,
                    evaluator=ev,
                    direction=direction,
                    n_repeats=reps.get(ev, 1),
                    task_metric=data.success_metric,
                    log=logs,
                    n_trees=n_trees,
                    rng=rng,
                )
            )
    return out


def _importance_frame(infos: list) -> pd.DataFrame:
    cols = [
        "target",
        "column",
        "evaluator",
        "param",
        "importance",
        "mean",
        "sd",
        "q05",
        "q95",
        "n_repeats",
        "n_trials",
        "message",
    ]
    frames = []
    for i in infos:
        head = {
            "target": i.objective,
            "column": i.column,
            "evaluator": i.evaluator_name,
            "n_trials": i.n_trials,
            "message": i.message,
        }
        if i.table.empty:
            frames.append(pd.DataFrame([head]))
        else:
            frames.append(i.table.assign(**head))
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True).reindex(columns=cols)


def lambda_limits(data: StudyData, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The λ → 0 limit of each claim's metric, fitted from the trials of smallest λ
    (:func:`analysis.response.limit_info`): ``metric``, ``column``, ``estimate``, ``ci_lo``,
    ``ci_hi``, ``level``, ``window`` (largest λ in the fit), ``n_trials``, ``observed`` (mean
    of the λ = 0 trials, a check), ``n_observed``, ``method``, ``message``."""
    from analysis.response import _metric_label, limit_info

    seeds_ = _finished(analysed_seeds(data))
    rows = []
    for m in metrics or ("accuracy", "functional", "structural", "mi"):
        if LAMBDA not in seeds_:
            break
        li = limit_info(seeds_, m, task_metric=data.success_metric)
        rows.append(
            {
                "metric": m,
                "column": _metric_label(m, data.success_metric),
                "estimate": li.estimate,
                "ci_lo": li.lo,
                "ci_hi": li.hi,
                "level": li.level,
                "window": li.window,
                "n_trials": li.n_trials,
                "observed": li.observed,
                "n_observed": li.n_observed,
                "method": li.method,
                "message": li.message,
            }
        )
    return pd.DataFrame(rows)
