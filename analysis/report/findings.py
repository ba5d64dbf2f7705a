"""The findings of a report: its statistics and the short block of sentences that states them.

:func:`findings` reads a loaded study and computes what the report leads with: how the study is
cut into cells (:mod:`analysis.cells`: grid points, or bins of λ in an adaptive search), the
paper's claims per cell (:func:`analysis.api.claims`), the timing verdict per cell
(:func:`analysis.verdicts.timing_verdicts`, the one seam), the verdict matrix of both
(:mod:`analysis.matrix`), the networks that failed the task, the controls' false emergence and
the calibration, and, for adaptive searches, which hyperparameters matter
(:mod:`analysis.importance`). The findings block is at most :data:`MAX_LINES` sentences, one a
line, never one per trial or per cell; :mod:`analysis.report.sections` shows the same numbers as
tables and figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.api import claims_by_cell as claims_of
from analysis.api import importance_infos, matrix_info_of
from analysis.api import timing_verdicts as timing_of
from analysis.arms import analyse_arms
from analysis.cells import Cells, study_cells
from analysis.claims import ACCURACY_MARGIN, calibrate_paired
from analysis.emergence import (
    FAILED_TASK,
    Calibration,
    calibrate,
    false_emergence,
    measure_noise,
    timing_seeds,
)
from analysis.response import _METHOD_WORDS
from analysis.runs import StudyData, analysed_seeds
from analysis.verdicts import first_evaluation, verdict_cells
from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z, ONSET_METRICS
from study.contract.params import PARAM_MI_WEIGHT, PARAM_RUN, PARAM_Z

__all__ = [
    "ACCURACY_DROP",
    "MAX_LINES",
    "Findings",
    "analysed_seeds",
    "findings",
    "param_mode",
    "study_calibration",
    "verdict_cells",
]

# A λ "drops accuracy" when its median final task metric is this far below the smallest λ's.
ACCURACY_DROP = 0.02
CALIBRATION_CELLS = 200  # simulated cells per calibration (~1 s for 41 evaluations)
CLAIMS_CALIBRATION_REPS = 1000  # no-effect replicates per world of the paired test (cached)
MAX_LINES = 15  # sentences in the findings block
IMPORTANCE_MIN_TRIALS = 8  # finished trials a grid needs for its hyperparameter importance
_NOT_MEASURED = (
    "Timing: not measured (the curves have no q_func_z / q_struct_z z-scores), so no "
    "timing verdict is given."
)


@dataclass(frozen=True)
class Findings:
    """The numbers behind the findings block, and the block itself (one sentence a line)."""

    text: str  # the findings block, plain text, one sentence a line
    n_trials: int
    n_running: int
    n_seeds: int  # seeds analysed (trials not running)
    n_timing: int  # seeds used for timing statistics (finished, succeeded, with z-score curves)
    measured: bool  # the study has the z-score curves the onsets need
    verdicts: pd.DataFrame  # timing verdict per cell (analysis.verdicts.timing_verdicts)
    excluded: pd.DataFrame  # seeds left out of the timing statistics, with the reason
    calibration: Calibration | None  # on this study's λ = 0 noise; None without controls
    false_emergence: dict[str, tuple[int, int]] | None  # λ = 0 seeds with an onset, per metric
    accuracy_drop_at: float | None  # smallest λ whose accuracy dropped, None if none / not swept
    # the paper's claims per cell: against the cell's λ = 0 seeds (a grid) or against the
    # fitted λ → 0 limit (bins of an adaptive search)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)
    claims_calibration: pd.DataFrame | None = None  # the paired test on no-effect data
    cells: Cells | None = None  # how the study is cut into cells
    matrix: Any = None  # analysis.matrix.MatrixInfo of the claims and timing verdicts
    importance: list = field(default_factory=list)  # analysis.importance.ImportanceInfo's
    first_eval: float = math.nan  # first evaluation after training began: onsets there are bounds
    arms: Any = None  # analysis.arms.ArmAnalysis of a study with arms, else None

    @property
    def lines(self) -> list[str]:
        """The findings block's sentences."""
        return self.text.splitlines()


def param_mode(seeds: pd.DataFrame, key: str, default: float) -> float:
    """The most common value of a trial param over the seeds, else `default`."""
    if key not in seeds or not len(seeds):
        return default
    v = pd.to_numeric(seeds[key], errors="coerce").dropna()
    return float(v.mode().iloc[0]) if len(v) else default


def _controls(seeds: pd.DataFrame) -> pd.Series:
    """Which seeds are λ = 0 controls (no MI penalty); all False without an mi.weight column."""
    if PARAM_MI_WEIGHT not in seeds:
        return pd.Series(False, index=seeds.index)
    return pd.to_numeric(seeds[PARAM_MI_WEIGHT], errors="coerce").eq(0.0)


def study_calibration(
    study: StudyData, timing: pd.DataFrame, *, rng: np.random.Generator
) -> Calibration | None:
    """The pipeline's calibration on this study's own λ = 0 noise (None without such seeds).

    Noise of q_func_z and q_struct_z from the finished λ = 0 seeds' curves; the evaluation grid,
    z and run of the study; cells as large as the median treated λ; the synthetic time course
    rises to the treated seeds' median final z-score (at least z + 2, at most 20).
    """
    ctrl = timing[_controls(timing)]
    if not len(ctrl):
        return None
    curves = study.curves
    keys = ctrl[["trial_id", "seed"]].drop_duplicates()
    c = curves.merge(keys, on=["trial_id", "seed"], how="inner")
    nf, ns = (measure_noise(c, col) for col in ONSET_METRICS.values())
    if not (nf.n_seeds and ns.n_seeds) or not (np.isfinite(nf.sd) and np.isfinite(ns.sd)):
        return None
    epochs = np.sort(c.loc[c["trial_id"] == c["trial_id"].iloc[0], "epoch"].unique()).astype(float)
    z = param_mode(timing, PARAM_Z, DEFAULT_Z)
    run = int(param_mode(timing, PARAM_RUN, DEFAULT_RUN))
    if epochs.size < run + 2:
        return None
    treated = timing[~_controls(timing)]
    n_cell = 8
    amp = 10.0
    if len(treated):
        n_cell = (
            int(np.median(treated.groupby(PARAM_MI_WEIGHT).size()))
            if PARAM_MI_WEIGHT in treated
            else len(treated)
        )
        finals = [
            pd.to_numeric(treated[f"final.{col}"], errors="coerce").median()
            for col in ONSET_METRICS.values()
            if f"final.{col}" in treated
        ]
        finals = [f for f in finals if np.isfinite(f)]
        if finals:
            amp = float(np.clip(min(finals), z + 2.0, 20.0))
    return calibrate(
        nf._replace(rho=min(nf.rho, 0.99)),
        ns,
        epochs=epochs,
        n_seeds=max(n_cell, 2),
        n_cells=CALIBRATION_CELLS,
        amplitude=amp,
        z=z,
        run=run,
        rng=rng,
    )


def findings(study: StudyData, *, rng: np.random.Generator, importance: bool = True) -> Findings:
    """Compute the findings block from the data.

    One sentence a line, at most :data:`MAX_LINES`: the trial and seed counts (and that the
    study still runs, or that trials failed); how the study is cut into cells; one sentence per
    claim and one for the timing over the treated cells and one over the λ = 0 controls (the
    verdict matrix's, counting cells and naming at most two); which networks failed the task
    and are left out of the timing; onsets at the first evaluation (bounds, not values); the
    calibration; for an adaptive search (or a grid of at least
    :data:`IMPORTANCE_MIN_TRIALS` finished trials), the most important key of each target by
    fANOVA. Never a sentence per trial.

    Args:
        study: the loaded study.
        rng: generator of the calibration's synthetic curves and of the importance resamples.
        importance: compute the hyperparameter importance (fANOVA costs about a second a fit).

    Returns:
        The :class:`Findings`.
    """
    trials, seeds = study.trials, analysed_seeds(study)
    n_trials = len(trials)
    status_counts = trials["status"].value_counts() if n_trials else pd.Series(dtype=int)
    n_running = int(status_counts.get("running", 0))
    lines = _count_lines(study, status_counts, n_trials, len(seeds))
    empty = pd.DataFrame()
    if not len(seeds):
        lines.append("There are no finished seeds yet, so there is nothing to analyse.")
        return Findings(
            "\n".join(lines), n_trials, n_running, 0, 0, False, empty, empty, None, None, None
        )

    cut = study_cells(study, seeds=seeds)
    timing, excluded = timing_seeds(cut.cell_seeds)
    measured = bool(seeds.get("onsets_measured", pd.Series(False)).astype(bool).any())
    verdicts = timing_of(study, cut=cut) if measured else pd.DataFrame()
    fe = cal = None
    if measured and PARAM_MI_WEIGHT in timing:
        ctrl = timing[_controls(timing)]
        fe = false_emergence(ctrl) if len(ctrl) else None
        cal = study_calibration(study, timing, rng=rng)
    claims = claims_of(study, cut=cut)
    claims_cal = None
    if len(claims) and "test" in claims:  # the paired test of a grid
        n = int(claims["n"].max())
        claims_cal = calibrate_paired(n, reps=CLAIMS_CALIBRATION_REPS) if n else None
    matrix = matrix_info_of(study, claims_table=claims, timing=verdicts, cut=cut)
    infos = []
    n_done = int((trials["status"] == "finished").sum()) if n_trials else 0
    if importance and (cut.design.kind == "adaptive" or n_done >= IMPORTANCE_MIN_TRIALS):
        infos = importance_infos(study, rng=rng)
    first = first_evaluation(study)
    arms = analyse_arms(study)

    lines.append(_design_line(cut))
    lines += _arm_lines(arms)
    lines += _claim_lines(claims, matrix, cut)
    method = verdicts.attrs.get("method", "") if len(verdicts) else ""
    lines += _timing_lines(matrix, measured, timing, excluded, fe, cal, first, method)
    lines += _importance_lines(infos)
    if len(lines) > MAX_LINES:  # the block stays short: the rest is in the sections
        lines = lines[: MAX_LINES - 1] + [" ".join(lines[MAX_LINES - 1 :])]
    return Findings(
        "\n".join(lines),
        n_trials,
        n_running,
        len(seeds),
        len(timing),
        measured,
        verdicts,
        excluded,
        cal,
        fe,
        _accuracy_drop(study, seeds) if cut.design.kind == "grid" else None,
        claims,
        claims_cal,
        cut,
        matrix,
        infos,
        first,
        arms,
    )


def _count_lines(
    study: StudyData, status_counts: pd.Series, n_trials: int, n_seeds: int
) -> list[str]:
    """Trial and seed counts, whether the study still runs, failed and diverged trials."""
    n_running = int(status_counts.get("running", 0))
    counts = ", ".join(f"{n} {s}" for s, n in status_counts.items())
    out = [
        f"Study {study.name} ({study.status}): {n_trials} trial"
        f"{'' if n_trials == 1 else 's'}{f' ({counts})' if counts else ''}, "
        f"{n_seeds} analysed seed{'' if n_seeds == 1 else 's'}."
    ]
    if n_running:
        out.append(
            f"The study is still running: {n_running} trial(s) have not finished and are "
            "left out of the statistics below."
        )
    elif study.status == "running":
        out.append("The study is still running.")
    n_failed = int(status_counts.get("failed", 0))
    n_diverged = int(status_counts.get("diverged", 0))
    if n_failed or n_diverged:
        out.append(
            f"{n_failed} trial(s) failed and {n_diverged} diverged (see Provenance); "
            "diverged seeds count as unsuccessful."
        )
    return out


def _arm_lines(arms: Any) -> list[str]:
    """One sentence on the arms: each arm's answers (one cell), or its counts of answers (several
    cells); nothing for a study without arms."""
    if arms is None:
        return []
    if arms.design.control is None:
        return ["Arms: the study names no control arm, so no arm is compared with one."]
    v = arms.verdicts
    if not len(v):
        return [f"Arms: no arm has seeds paired with the control arm '{arms.design.control}'."]
    by = arms.by
    head = (
        f"Arms, each against the control arm '{arms.design.control}' paired by seed"
        f"{' per cell of ' + ' × '.join(by) if by else ''} (BH within each arm):"
    )
    parts = []
    for arm, g in v.groupby("arm", sort=False):
        if by:
            counts = g["verdict"].value_counts()
            parts.append(f"{arm}: " + ", ".join(f"{n} {w}" for w, n in counts.items()))
        else:
            parts.append(
                f"{arm}: " + "; ".join(f"{q} — {w}" for q, w in zip(g["question"], g["verdict"]))
            )
    return [f"{head} {'. '.join(parts)}."]


def _design_line(cut: Cells) -> str:
    """How the study is cut into cells, in one sentence (the bin edges are in Claims)."""
    keys = " × ".join(cut.keys) or "the whole study"
    if cut.design.kind == "grid":
        return f"Grid: {len(cut.cell_seeds.groupby(cut.keys)) if cut.keys else 1} cells of {keys}."
    b = cut.binning
    bins = (
        f"λ in {len(b.labels) - b.zero_apart} {_METHOD_WORDS[b.method]} bins over "
        f"[{b.edges[0]:.2g}, {b.edges[-1]:.2g}]{', λ = 0 apart' if b.zero_apart else ''}"
        if b is not None
        else "λ not binned"
    )
    pooled = f"; pooled: {', '.join(cut.pooled)}" if cut.pooled else ""
    return f"Adaptive search ({cut.design.reason.rstrip('.')}): {bins}; cells of {keys}{pooled}."


def _claim_lines(claims: pd.DataFrame, matrix: Any, cut: Cells) -> list[str]:
    """How the claims are judged, then the matrix's sentence per claim."""
    if not len(claims):
        why = (
            "no λ = 0 control in this study"
            if cut.design.kind == "grid"
            else "no λ → 0 limit can be fitted (it needs four trials at three small λ)"
        )
        return [f"Claims: none can be tested ({why})."]
    if cut.design.kind == "grid":
        how = (
            "Claims: each cell against its own λ = 0 seeds, paired by seed (accuracy: "
            f"equivalence within ±{ACCURACY_MARGIN:g}; the rest: signed-rank; BH per claim):"
        )
    else:
        how = (
            "Claims: each bin of λ against the fitted λ → 0 limit of its cell (accuracy: "
            f"equivalence within ±{ACCURACY_MARGIN:g}; Bonferroni over the bins):"
        )
    n_claims = len(matrix.claims) if matrix is not None else 0
    return [how, *(matrix.sentences[:n_claims] if matrix is not None else [])]


def _timing_lines(
    matrix: Any,
    measured: bool,
    timing: pd.DataFrame,
    excluded: pd.DataFrame,
    fe: dict | None,
    cal: Calibration | None,
    first: float,
    method: str,
) -> list[str]:
    """The matrix's timing sentences, how the pipeline decides and the seeds left out,
    left-censored onsets, the controls and the calibration."""
    if not measured:
        return [_NOT_MEASURED]
    n_claims = len(matrix.claims) if matrix is not None else 0
    out = list(matrix.sentences[n_claims:]) if matrix is not None else []
    left = ""
    if len(excluded):
        failed = int((excluded["reason"] == FAILED_TASK).sum())
        cut = len(excluded) - failed
        parts = [f"{failed} seeds that failed the task"] if failed else []
        parts += [f"{cut} of trials cut short"] if cut else []
        left = f"; left out: {' and '.join(parts)}"
    out.append(f"Timing: {method or 'verdicts per cell'}{left}.")
    if np.isfinite(first) and len(timing):
        treated = timing[~_controls(timing)]
        tf = pd.to_numeric(treated.get("t_func", pd.Series(dtype=float)), errors="coerce")
        n_left = int((tf <= first).sum())
        if n_left:
            out.append(
                f"Functional onsets in {n_left} of {len(treated)} treated seeds are at the "
                f"first evaluation after training began: bounds (emerged by epoch {first:g}, "
                "when is unresolved), not values."
            )
    if fe is not None and cal is not None:
        ok = "within" if cal.false_function_first <= cal.alpha else "ABOVE"
        out.append(
            f"Controls: onsets in {fe['func'][0]}/{fe['func'][1]} (function) and "
            f"{fe['struct'][0]}/{fe['struct'][1]} (structure) λ = 0 seeds; identical courses "
            f"read 'function first' in {100 * cal.false_function_first:.1f}% of simulated "
            f"cells ({ok} α = {cal.alpha:g})."
        )
    return out


def _importance_lines(infos: list) -> list[str]:
    """The most important key of each target by fANOVA, in one sentence."""
    from analysis.matrix import KEY_SYMBOLS

    parts = []
    fanova = [i for i in infos if i.evaluator == "fanova" and not i.table.empty]
    for info in fanova:
        top = info.table.iloc[0]
        key = KEY_SYMBOLS.get(top["param"], top["param"])
        parts.append(
            f"{info.column.removeprefix('final.')}: {key} {top['importance']:.2f} "
            f"({top['q05']:.2f}–{top['q95']:.2f})"
        )
    if not parts:
        return []
    first = fanova[0]
    return [
        f"Most important key by {first.evaluator_name} (share; 5–95 % over "
        f"{int(first.table['n_repeats'].iloc[0])} resamples): " + "; ".join(parts) + "."
    ]


def _accuracy_drop(study: StudyData, seeds: pd.DataFrame) -> float | None:
    """The smallest λ whose median final task metric falls more than ACCURACY_DROP below its
    value at the smallest λ (a grid), else None."""
    metric = f"final.{study.success_metric}"
    if PARAM_MI_WEIGHT not in seeds.columns or metric not in seeds.columns:
        return None
    lam = pd.to_numeric(seeds[PARAM_MI_WEIGHT], errors="coerce")
    by_lam = pd.to_numeric(seeds[metric], errors="coerce").groupby(lam).median().dropna()
    by_lam = by_lam.sort_index()
    if len(by_lam) < 2:
        return None
    dropped = by_lam[by_lam < float(by_lam.iloc[0]) - ACCURACY_DROP]
    return float(dropped.index[0]) if len(dropped) else None
