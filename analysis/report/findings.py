"""The findings of a report: its statistics and the paragraph that states them.

:func:`findings` reads a loaded study and computes what the report leads with: the trial and seed
counts, the paper's claims per cell against the cell's own λ = 0 seeds (:mod:`analysis.claims`),
the timing verdict per cell with the onset rule and the tests used (:mod:`analysis.emergence`),
the false emergence and the calibration of the pipeline on the study's λ = 0 noise, success, and
the λ at which accuracy drops. Each group of sentences has its own builder;
:mod:`analysis.report.sections` shows the same numbers as tables and figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.claims import CLAIMS, calibrate_paired, claims_table
from analysis.emergence import (
    ALPHA,
    Calibration,
    calibrate,
    false_emergence,
    measure_noise,
    timing_seeds,
    verdict_table,
)
from analysis.runs import StudyData
from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z, ONSET_METRICS, TIE_EVALS
from study.contract.params import PARAM_MI_WEIGHT, PARAM_RUN, PARAM_Z

__all__ = [
    "ACCURACY_DROP",
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
CLAIM_VERDICTS = ("holds", "weak", "breaks", "inconclusive", "not measured")
_NOT_MEASURED = (
    "Emergence timing was not measured in this study (its curves have no "
    "q_func_z / q_struct_z z-scores), so no timing verdict is given."
)


@dataclass(frozen=True)
class Findings:
    """The numbers behind the findings paragraph, and the paragraph itself."""

    text: str  # the paragraph, plain text
    n_trials: int
    n_running: int
    n_seeds: int  # seeds analysed (trials not running)
    n_timing: int  # seeds used for timing statistics (finished trials with z-score curves)
    measured: bool  # the study has the z-score curves the onsets need
    verdicts: pd.DataFrame  # verdict table per λ (analysis.emergence.verdict_table)
    excluded: pd.DataFrame  # seeds left out of the timing statistics, with the reason
    calibration: Calibration | None  # on this study's λ = 0 noise; None without controls
    false_emergence: dict[str, tuple[int, int]] | None  # λ = 0 seeds with an onset, per metric
    accuracy_drop_at: float | None  # smallest λ whose accuracy dropped, None if none / not swept
    # the paper's claims per (cell, λ) against the cell's λ = 0 seeds (analysis.claims)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)
    claims_calibration: pd.DataFrame | None = None  # the paired test on no-effect data


def analysed_seeds(study: StudyData) -> pd.DataFrame:
    """Seeds of trials that are not running any more (running trials have partial curves)."""
    s = study.seeds
    return s[~s["running"].astype(bool)] if "running" in s.columns else s


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


def verdict_cells(swept: list[str], timing: pd.DataFrame) -> list[str]:
    """The keys of a verdict's cell: λ first, then every other swept key the seeds carry."""
    keys = [PARAM_MI_WEIGHT] if PARAM_MI_WEIGHT in timing else []
    return keys + [k for k in swept if k in timing and k not in keys]


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float, np.number)) else str(v)


def _p(p: float) -> str:
    return f"{p:.2g}" if np.isfinite(p) else "–"


def findings(study: StudyData, *, rng: np.random.Generator) -> Findings:
    """Compute the findings paragraph from the data.

    States the trial and seed counts (and that the study is still running, or that trials failed),
    then the timing verdict of every λ on its own (never pooled: λ = 0 controls are reported as
    controls with their false-emergence counts), or that the timing was not measured; the
    calibration of the pipeline on this study's noise; "inconclusive" when no treated λ gives a
    significant ordering or co-emergence; the success and differentiated counts, and the smallest
    λ at which the median final task metric falls more than ``ACCURACY_DROP`` below its value at
    the smallest λ.

    Args:
        study: the loaded study.
        rng: generator of the calibration's synthetic curves.

    Returns:
        The :class:`Findings`.
    """
    trials, seeds = study.trials, analysed_seeds(study)
    n_trials = len(trials)
    status_counts = trials["status"].value_counts() if n_trials else pd.Series(dtype=int)
    n_running = int(status_counts.get("running", 0))
    parts = _count_sentences(study, status_counts, n_trials, len(seeds))
    empty = pd.DataFrame()
    if not len(seeds):
        parts.append("There are no finished seeds yet, so there is nothing to analyse.")
        return Findings(
            " ".join(parts), n_trials, n_running, 0, 0, False, empty, empty, None, None, None
        )

    timing, excluded = timing_seeds(seeds)
    measured = bool(seeds.get("onsets_measured", pd.Series(False)).astype(bool).any())
    # a verdict is per cell: λ and every other swept key (cells of a grid share seed values, so
    # pooling them would count one seed several times); the per-λ pooled table is descriptive
    cells = verdict_cells(study.swept, timing)
    if measured:
        verdicts = verdict_table(timing, cells)
        timing_parts, fe, cal = _timing_sentences(study, timing, excluded, cells, verdicts, rng)
    else:
        verdicts, timing_parts, fe, cal = pd.DataFrame(), [_NOT_MEASURED], None, None
    success_parts, drop_at = _success_sentences(study, seeds)
    claims, claims_cal = _claims_of(study, seeds)
    # the claims come right after the counts: the answer first
    parts += _claim_sentences(claims, claims_cal) + timing_parts + success_parts
    return Findings(
        " ".join(parts),
        n_trials,
        n_running,
        len(seeds),
        len(timing),
        measured,
        verdicts,
        excluded,
        cal,
        fe,
        drop_at,
        claims,
        claims_cal,
    )


def _timing_sentences(
    study: StudyData,
    timing: pd.DataFrame,
    excluded: pd.DataFrame,
    cells: list[str],
    verdicts: pd.DataFrame,
    rng: np.random.Generator,
) -> tuple[list[str], dict[str, Any] | None, Calibration | None]:
    """The onset rule, one sentence per verdict cell, the controls' false emergence, the
    calibration, and whether any treated cell is decided (a study with z-score curves)."""
    parts = _rule_sentences(timing, excluded, cells)
    verdict_parts, readings = _verdict_sentences(verdicts, cells)
    parts += verdict_parts
    fe = cal = None
    if PARAM_MI_WEIGHT in timing:
        control_parts, fe, cal = _control_sentences(study, timing, rng)
        parts += control_parts
    treated = [v for v in readings if v != "inconclusive"]
    if not readings or not treated:
        parts.append(
            "Overall the timing is inconclusive: no λ with the MI penalty gives a "
            "significant order or a significant co-emergence."
        )
    return parts, fe, cal


def _claims_of(study: StudyData, seeds: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The claims table on the finished seeds, and its test's calibration at the study's n."""
    done = seeds[seeds["status"].astype(str) == "finished"] if "status" in seeds else seeds
    table = claims_table(done, study.swept, task_metric=study.success_metric)
    if not len(table):
        return table, None
    n = int(table["n"].max())
    return table, calibrate_paired(n, reps=CLAIMS_CALIBRATION_REPS) if n else None


def _claim_sentences(claims: pd.DataFrame, cal: pd.DataFrame | None) -> list[str]:
    """Per claim, in how many treated cells it holds, is weak, breaks or is inconclusive."""
    if not len(claims):
        return []
    parts = []
    n_cells = claims.groupby("claim").size().max()
    words = []
    for claim in CLAIMS:
        rows = claims[claims["claim"] == claim.name]
        if not len(rows):
            continue
        counts = rows["verdict"].value_counts()
        said = ", ".join(f"{v} in {int(counts[v])}" for v in CLAIM_VERDICTS if v in counts)
        words.append(f"{claim.text}: {said}")
    parts.append(
        f"Claims, each (cell, λ) against the same cell's λ = 0 seeds ({n_cells} "
        "treated cell(s), paired by seed, exact signed-rank test, BH per claim, "
        f"α = {ALPHA:g}): " + "; ".join(words) + "."
    )
    if cal is not None and len(cal):
        parts.append(
            f"That paired test rejects {100 * cal['rejected'].max():.1f}% or fewer of "
            f"no-effect cells of {int(cal['n'].iloc[0])} pairs (normal, heavy-tailed "
            "and tied synthetic data)."
        )
    return parts


def _count_sentences(
    study: StudyData, status_counts: pd.Series, n_trials: int, n_seeds: int
) -> list[str]:
    """Trial and seed counts, whether the study still runs, failed and diverged trials."""
    parts = []
    n_running = int(status_counts.get("running", 0))
    counts = ", ".join(f"{n} {s}" for s, n in status_counts.items())
    parts.append(
        f"Study {study.name} ({study.status}) has {n_trials} trial"
        f"{'' if n_trials == 1 else 's'}{f' ({counts})' if counts else ''} and "
        f"{n_seeds} analysed seed{'' if n_seeds == 1 else 's'}."
    )
    if n_running:
        parts.append(
            f"The study is still running: {n_running} trial(s) have not finished and are "
            "left out of the statistics below."
        )
    elif study.status == "running":
        parts.append("The study is still running.")
    n_failed = int(status_counts.get("failed", 0))
    n_diverged = int(status_counts.get("diverged", 0))
    if n_failed or n_diverged:
        parts.append(
            f"{n_failed} trial(s) failed and {n_diverged} diverged (see Provenance); "
            "diverged seeds count as unsuccessful."
        )
    return parts


def _rule_sentences(timing: pd.DataFrame, excluded: pd.DataFrame, cells: list[str]) -> list[str]:
    """The seeds cut short, the onset rule and tests used, and what a verdict cell is."""
    parts = []
    cut = excluded[~excluded["reason"].str.startswith("no z-score")] if len(excluded) else excluded
    if len(cut):
        parts.append(
            f"{len(cut)} seed(s) of trials cut short ("
            f"{', '.join(sorted(set(cut['reason'])))}) are excluded from the timing "
            "statistics (listed in the timing section)."
        )
    z = param_mode(timing, PARAM_Z, DEFAULT_Z)
    run = int(param_mode(timing, PARAM_RUN, DEFAULT_RUN))
    parts.append(
        f"Onset = first evaluation from which the z-score stays >= {z:g} for {run} "
        f"evaluations; ties are onsets within {TIE_EVALS} evaluation; tests at "
        f"α = {ALPHA:g} after Benjamini–Hochberg across the λ > 0 rows."
    )
    others = [k for k in cells if k != PARAM_MI_WEIGHT]
    if others:
        parts.append(
            f"Verdicts are per cell of {' × '.join(cells)} (BH across the treated "
            "cells); the per-λ table pooled over "
            f"{', '.join(others)} is descriptive only."
        )
    return parts


def _verdict_sentences(verdicts: pd.DataFrame, cells: list[str]) -> tuple[list[str], list[str]]:
    """One sentence per verdict cell (λ = 0 as controls), and the treated cells' verdicts."""
    parts, readings = [], []
    others = [k for k in cells if k != PARAM_MI_WEIGHT]
    for r in verdicts.to_dict("records"):
        lam = r.get(PARAM_MI_WEIGHT, math.nan)
        cell = "".join(f", {k} = {_fmt_value(r[k])}" for k in others)
        counts = (
            f"{r['n_seeds']} seeds: function first {r['n_func_first']}, structure "
            f"first {r['n_struct_first']}, tie {r['n_tie']}, neither {r['n_neither']}"
        )
        if lam == 0:
            parts.append(f"λ = 0{cell} (controls, {counts}).")
            continue
        p = r["p_tost_bh"] if r["verdict"] == "co-emergent" else r["p_sign_bh"]
        test = "TOST" if r["verdict"] == "co-emergent" else "sign test"
        where = f"λ = {lam:g}{cell}" if np.isfinite(lam) else "All seeds (λ not logged)" + cell
        parts.append(f"{where} ({counts}): {r['verdict']} ({test}, BH-adjusted p = {_p(p)}).")
        readings.append(r["verdict"])
    return parts, readings


def _control_sentences(
    study: StudyData, timing: pd.DataFrame, rng: np.random.Generator
) -> tuple[list[str], dict | None, Calibration | None]:
    """False emergence of the λ = 0 controls and the calibration on their noise."""
    parts = []
    fe = None
    ctrl = timing[_controls(timing)]
    if len(ctrl):
        fe = false_emergence(ctrl)
        parts.append(
            f"False emergence at λ = 0: q_func_z {fe['func'][0]} of {fe['func'][1]} "
            f"seeds, q_struct_z {fe['struct'][0]} of {fe['struct'][1]} (target <= 5%)."
        )
    cal = study_calibration(study, timing, rng=rng)
    if cal is not None:
        ok = "within" if cal.false_function_first <= cal.alpha else "ABOVE"
        parts.append(
            f"Calibration on this study's λ = 0 noise: identical time courses read as "
            f"'function first' in {100 * cal.false_function_first:.1f}% of "
            f"{cal.n_cells} simulated {cal.n_seeds}-seed cells ({ok} α = "
            f"{cal.alpha:g})."
        )
    else:
        parts.append(
            "The pipeline is not calibrated on this study's noise (no λ = 0 "
            "seeds with z-score curves)."
        )
    return parts, fe, cal


def _success_sentences(study: StudyData, seeds: pd.DataFrame) -> tuple[list[str], float | None]:
    """Success and differentiated counts, and the λ at which the median task metric drops."""
    metric, thr = study.success_metric, study.success_threshold
    n_success = int(seeds["success"].astype(bool).sum())
    n_diff = int(seeds["differentiated"].astype(bool).sum())
    parts = []
    parts.append(
        f"{n_success} of {len(seeds)} seeds succeeded (final {metric} > {thr:g}) and "
        f"{n_diff} were differentiated (success and final q_struct > 0.1)."
    )
    drop_at = None
    if PARAM_MI_WEIGHT in seeds.columns and f"final.{metric}" in seeds.columns:
        lam = pd.to_numeric(seeds[PARAM_MI_WEIGHT], errors="coerce")
        by_lam = (
            pd.to_numeric(seeds[f"final.{metric}"], errors="coerce")
            .groupby(lam)
            .median()
            .dropna()
            .sort_index()
        )
        if len(by_lam) >= 2:
            ref_lam, ref = float(by_lam.index[0]), float(by_lam.iloc[0])
            dropped = by_lam[by_lam < ref - ACCURACY_DROP]
            if len(dropped):
                drop_at = float(dropped.index[0])
                parts.append(
                    f"The median final {metric} starts to drop at λ = {drop_at:g} "
                    f"({dropped.iloc[0]:.3f} against {ref:.3f} at λ = {ref_lam:g})."
                )
            else:
                parts.append(
                    f"The median final {metric} does not drop over λ = {ref_lam:g} to "
                    f"{float(by_lam.index[-1]):g} (never more than {ACCURACY_DROP:g} below "
                    f"{ref:.3f})."
                )
    return parts, drop_at
