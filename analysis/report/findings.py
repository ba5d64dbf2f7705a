"""The findings of a report: its statistics and the short block of sentences that states them.

:func:`findings` reads a loaded study and computes what the report leads with: how the study is
cut into cells (:mod:`analysis.cells`: grid points, or bins of λ in an adaptive search), the
paper's claims per cell (:func:`analysis.api.claims`), the timing verdict per cell
(:func:`analysis.verdicts.timing_verdicts`, the one seam), the verdict matrix of both
(:mod:`analysis.matrix`, one timing row per ordering: function vs Q(|W|), function vs ΔW where
measured), the networks that failed the task, the controls' false detections and the timing
pipeline's calibration at the study's own design (:func:`timing_calibration`), and, for
adaptive searches, which hyperparameters matter
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
from analysis.emergence import FAILED_TASK, false_emergence, timing_seeds
from analysis.response import _METHOD_WORDS
from analysis.runs import StudyData, analysed_seeds
from analysis.timing.verdicts import ALPHA
from analysis.verdicts import first_evaluation, verdict_cells
from study.contract.names import TIMING_FUNCTION
from study.contract.params import PARAM_MI_WEIGHT
from study.contract.power import LEAD_OF_INTEREST_EVALS
from study.contract.rise import onset_column

__all__ = [
    "ACCURACY_DROP",
    "MAX_LINES",
    "Findings",
    "analysed_seeds",
    "findings",
    "param_mode",
    "timing_calibration",
    "verdict_cells",
]

# A λ "drops accuracy" when its median final task metric is this far below the smallest λ's.
ACCURACY_DROP = 0.02
# simulated cells per lead and ordering in the timing calibration (Monte-Carlo SE of a 5 % rate
# at 40 cells: 3.4 %; ~2 s per ordering for 25 evaluations; `python -m analysis timing` runs
# more, and the shipped scenario suite)
CALIBRATION_CELLS = 40
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
    # the timing pipeline's calibration at this study's design (analysis.timing
    # .study_calibration: one row per ordering and lead); None without treated cells to time
    calibration: pd.DataFrame | None
    false_emergence: dict[str, tuple[int, int]] | None  # λ = 0 seeds detectable, per metric
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


def timing_calibration(
    study: StudyData,
    timing: pd.DataFrame,
    verdicts: pd.DataFrame,
    by: list[str],
    *,
    rng: np.random.Generator,
) -> pd.DataFrame | None:
    """The timing pipeline's calibration at this study's design (None without treated cells
    to time or curves to measure).

    :func:`analysis.timing.study_calibration` without the scenario suite: for each ordering,
    cells of the median treated cell size in BH families of the study's treated-cell count,
    with the amplitudes, rise widths, noise and midpoints measured from the study's treated
    curves; the false-ordering rate with no lead and the power at leads of ±1, ±2 and ±4
    evaluations, :data:`CALIBRATION_CELLS` simulated cells each.
    """
    from analysis.timing import study_calibration as calibrate_study

    curves = study.curves
    if curves is None or not len(curves) or not len(verdicts) or "control" not in verdicts:
        return None
    treated = verdicts[~verdicts["control"].astype(bool) & (verdicts["n"] > 0)]
    if not len(treated):
        return None
    n = int(np.median(treated["n"]))
    table = calibrate_study(
        curves,
        timing,
        by,
        n_sim=CALIBRATION_CELLS,
        suite=False,
        seed=int(rng.integers(2**31)),
        n_seeds=[n],
    )
    return table if len(table) else None


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
    if measured and len(timing):
        by = [k for k in cut.keys if k in timing]
        cal = timing_calibration(study, timing, verdicts, by, rng=rng)
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
    cal: pd.DataFrame | None,
    first: float,
    method: str,
) -> list[str]:
    """The matrix's timing sentences (one per ordering, and its controls), how the pipeline
    decides and the seeds left out, left-censored functional onsets, the controls' false
    detections and the calibration at the study's design."""
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
    power = (
        f" 'inconclusive (power)': the cell's seeds could not show a lead of "
        f"{LEAD_OF_INTEREST_EVALS:g} evaluations, so no order is claimed."
        if any("inconclusive (power)" in line for line in out)
        else ""
    )
    out.append(f"Timing: {method or 'verdicts per cell'}{left}.{power}")
    status = onset_column(TIMING_FUNCTION, "status")
    if status in timing and len(timing):
        treated = timing[~_controls(timing)]
        n_left = int((treated[status] == "left-censored").sum())
        if n_left:
            when = f" (epoch {first:g})" if np.isfinite(first) else ""
            out.append(
                f"Functional onsets in {n_left} of {len(treated)} treated seeds are "
                f"left-censored: the rise was under way by the first evaluation after training "
                f"began{when}, so they are bounds, not values."
            )
    if fe is not None:
        out.append(
            f"Controls: detectable (the z-score significance gate) in {fe['func'][0]}/"
            f"{fe['func'][1]} (function) and {fe['struct'][0]}/{fe['struct'][1]} "
            "(structure) λ = 0 seeds."
        )
    if cal is not None:
        out.append(_calibration_line(cal))
    return out


def _calibration_line(cal: pd.DataFrame) -> str:
    """The calibration at the study's design in one sentence: per ordering, the false order
    with no lead and the power at a lead of LEAD_OF_INTEREST_EVALS evaluations each way."""
    parts = []
    for ordering, g in cal.groupby("ordering", sort=False):
        lead = g.set_index("lead_evals")
        none = lead.loc[0.0, "false_ordering"] if 0.0 in lead.index else math.nan
        pos = lead["power"].get(LEAD_OF_INTEREST_EVALS, math.nan)
        neg = lead["power"].get(-LEAD_OF_INTEREST_EVALS, math.nan)
        parts.append(
            f"{ordering}: no lead read as an order in {100 * none:.1f}%, a "
            f"{LEAD_OF_INTEREST_EVALS:g}-evaluation lead found in {100 * pos:.0f}% "
            f"(function leads) and {100 * neg:.0f}% (structure leads)"
        )
    r = cal.iloc[0]
    line = (
        f"Calibration at this design (cells of {int(r['n_seeds'])} seeds, BH over "
        f"{int(r['family'])}, the study's own rises and noise; {int(r['n_cells'])} simulated "
        f"cells a row): {'; '.join(parts)}."
    )
    bad = _miscalibrated(cal)
    if bad:
        line += (
            f" Not calibrated at this design: {' and '.join(bad)} read an order with no lead "
            f"in more than α = {ALPHA:g} of simulated cells (beyond Monte-Carlo error), so "
            "their timing verdicts are not evidence either way (docs/timing.md, Known limits)."
        )
    return line


def _miscalibrated(cal: pd.DataFrame) -> list[str]:
    """The orderings whose no-lead false-order rate exceeds ALPHA by more than 2.5 binomial
    standard errors of its simulated cells."""
    bad = []
    for ordering, g in cal.groupby("ordering", sort=False):
        none = g[g["lead_evals"] == 0.0]
        if not len(none):
            continue
        rate, n = float(none["false_ordering"].iloc[0]), float(none["n_cells"].iloc[0])
        if n > 0 and rate > ALPHA + 2.5 * math.sqrt(ALPHA * (1 - ALPHA) / n):
            bad.append(str(ordering))
    return bad


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
