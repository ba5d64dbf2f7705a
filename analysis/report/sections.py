"""The report's sections after the findings, one function each, in the order of the page.

Claims per cell, timing verdicts, Kaplan–Meier curves, the calibration, the MI audit, the phase
diagrams, the timing regression, the modularity curves, the Pareto front and scatter, the tables,
and provenance with the spec last. Each section writes its heading, a short text saying what is
shown, then figures and tables (CSV beside the page), or says there is nothing to show.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from analysis.claims import CLEAR_Z
from analysis.emergence import (
    ALPHA,
    MARGIN_EVALS,
    censored_regression,
    km_table,
    timing_seeds,
    verdict_table,
)
from analysis.figures import (
    plot_curve_bands,
    plot_km,
    plot_onsets,
    plot_pareto,
    plot_phase,
    plot_scatter,
)
from analysis.mi_audit import mi_audit
from analysis.phase import Z_QUANTITIES, curve_bands_info, pareto_info, phase_info, scatter_info
from analysis.report.findings import Findings, analysed_seeds, param_mode, verdict_cells
from analysis.report.page import Page, slug
from analysis.runs import StudyData
from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z, TIE_EVALS
from study.contract.params import PARAM_EVAL_EVERY, PARAM_MI_WEIGHT, PARAM_RUN, PARAM_Z
from study.contract.tags import TAG_COMMIT

__all__ = ["write_sections"]


def write_sections(page: Page, data: StudyData, fnd: Findings) -> None:
    """Claims, verdicts, Kaplan–Meier, calibration, MI audit, phase diagrams, regression, curves,
    Pareto/scatter, tables, and provenance with the spec last."""
    seeds = analysed_seeds(data)
    metric = data.success_metric
    swept = [k for k in data.swept if k in seeds.columns] or (
        [PARAM_MI_WEIGHT] if PARAM_MI_WEIGHT in seeds.columns else []
    )
    by = PARAM_MI_WEIGHT if PARAM_MI_WEIGHT in seeds.columns else (swept[0] if swept else None)
    timing = timing_seeds(seeds)[0] if len(seeds) else seeds

    _claims(page, fnd)
    _verdicts(page, data, fnd, timing, swept, by)
    _km(page, fnd, timing, by)
    _calibration(page, fnd)
    _mi_audit(page, data)
    _phase_diagrams(page, seeds, swept, metric)
    _timing_regression(page, fnd, timing, swept)
    _curves(page, data, fnd, seeds, timing, by)
    _pareto(page, seeds, metric, by)
    _tables(page, data)
    _provenance(page, data)


def _claims(page: Page, fnd: Findings) -> None:
    """The paper's claims per cell against the cell's own λ = 0 seeds, and the test's
    calibration (analysis.claims)."""
    page.h2("Claims per cell")
    if not len(fnd.claims):
        page.nothing("no λ = 0 control in this study, so no claim can be tested against one")
        return
    page.p(
        "Each row: one cell (a value of every other swept key) and one λ > 0, against the "
        "λ = 0 seeds of the same cell, paired by seed (same initialisation and data). "
        "effect = median of treated − control; p: exact two-sided Wilcoxon signed-rank; "
        f"p_bh: Benjamini–Hochberg across the treated cells of the claim; α = {ALPHA:g}. "
        "accuracy holds when all treated seeds but at most one succeed and no significant "
        "drop > 0.02; functional / structural (final q_func_z / q_struct_z) hold when the "
        f"rise is significant and the treated median z > {CLEAR_Z:g}, weak when significant "
        "but not clear; mi (held-out MI excess over its null) holds when it falls "
        "significantly. Cells are never pooled."
    )
    page.table(fnd.claims, "claims_by_cell")
    if fnd.claims_calibration is not None:
        page.p(
            "Calibration of the paired test: fraction of synthetic no-effect cells (same n) "
            f"it rejects at α = {ALPHA:g}:"
        )
        page.table(fnd.claims_calibration, "claims_calibration")


def _verdicts(
    page: Page,
    data: StudyData,
    fnd: Findings,
    timing: pd.DataFrame,
    swept: list[str],
    by: str | None,
) -> None:
    """The answer first: the verdict per λ, then per phase cell, and the excluded seeds."""
    page.h2("Timing verdicts")
    if not fnd.n_seeds:
        page.nothing("no finished seeds")
        return
    if not fnd.measured:
        page.nothing(
            "emergence timing not measured in this study (no q_func_z / q_struct_z curves)"
        )
        return
    z = param_mode(timing, PARAM_Z, DEFAULT_Z)
    run = int(param_mode(timing, PARAM_RUN, DEFAULT_RUN))
    step = param_mode(timing, PARAM_EVAL_EVERY, math.nan)
    page.p(
        f"Per seed, the onset of q_func_z (t_func) and of q_struct_z (t_struct) is the first "
        f"evaluation from which the z-score against random partitions of the same sizes "
        f"stays >= {z:g} for {run} consecutive evaluations (emergence.z, emergence.run). "
        f"Onsets within {TIE_EVALS} evaluation are a tie; a seed where only one emerged by "
        "the end counts for that side (censored evidence); neither = no onset. Per group: "
        "exact sign test of function-first against structure-first (ties and neither left "
        f"out), TOST equivalence of the median lag with 0 within ±{MARGIN_EVALS:g} "
        f"evaluations{f' (±{MARGIN_EVALS * step:g} epochs)' if np.isfinite(step) else ''} "
        "for co-emergence, Benjamini–Hochberg across the treated rows of each table, "
        f"α = {ALPHA:g}. λ = 0 rows are controls (raw p, outside the BH family): any "
        "verdict there is a false one."
    )
    cell_keys = verdict_cells(swept, timing)
    if len(cell_keys) > 1:
        page.p(f"Verdict per cell of {' × '.join(cell_keys)} (BH across the treated cells):")
        page.table(fnd.verdicts, "verdicts_by_cell")
        if by and len(timing):
            page.p(
                f"Pooled per {by} over {', '.join(k for k in cell_keys if k != by)}: "
                "descriptive only, not a verdict (the cells of a grid share seed values, "
                "so pooling counts one seed several times)."
            )
            pooled = verdict_table(timing, [by]).drop(columns=["verdict"])
            page.table(pooled, f"pooled_by_{slug(by)}")
    else:
        if by:
            page.p(f"Verdict per {by}:")
        page.table(fnd.verdicts, f"verdicts_by_{slug(by)}" if by else "verdicts")
    if len(fnd.excluded):
        page.p("Seeds excluded from the timing statistics:")
        cols = [c for c in ("trial_id", "seed", "status", "reason") if c in fnd.excluded]
        page.table(fnd.excluded[cols].reset_index(drop=True), "timing_excluded")


def _km(page: Page, fnd: Findings, timing: pd.DataFrame, by: str | None) -> None:
    """Kaplan–Meier curves of time to emergence per metric and λ."""
    page.h2("Time to emergence (Kaplan–Meier)")
    if not fnd.measured or not len(timing):
        page.nothing(
            "onsets not measured in this study"
            if not fnd.measured
            else "no seeds for timing statistics"
        )
        return
    km = km_table(timing, by)
    if not len(km):
        page.nothing("no onsets or censoring epochs")
        return
    page.figure(
        plot_km(km, by=by or "all"),
        "kaplan_meier",
        "Fraction of seeds whose z-score has emerged against epoch (Kaplan–Meier; "
        "seeds that did not emerge are censored at their censoring epoch). Legend: "
        "onsets / seeds.",
    )
    med = km.drop_duplicates(["level", "metric"])[["level", "metric", "n", "events", "median"]]
    page.p("Kaplan–Meier median time to emergence (inf: fewer than half emerged):")
    page.table(med.reset_index(drop=True), "kaplan_meier_medians")
    page.table(km, "kaplan_meier", max_rows=0)


def _calibration(page: Page, fnd: Findings) -> None:
    """The calibration of the whole onset + test pipeline, printed."""
    page.h2("Calibration")
    cal = fnd.calibration
    if fnd.false_emergence:
        fe = fnd.false_emergence
        page.p(
            f"False-emergence rate at λ = 0 (controls with an onset; target <= 5%): "
            f"q_func_z {fe['func'][0]}/{fe['func'][1]} "
            f"({100 * fe['func'][0] / max(fe['func'][1], 1):.0f}%), q_struct_z "
            f"{fe['struct'][0]}/{fe['struct'][1]} "
            f"({100 * fe['struct'][0] / max(fe['struct'][1], 1):.0f}%)."
        )
    if cal is None:
        page.nothing("no λ = 0 seeds with z-score curves to measure the noise on")
        return
    page.p(
        f"Synthetic curve pairs with an identical time course and the noise of this study's "
        f"λ = 0 z-scores (AR(1): sd and lag-1 autocorrelation per metric), judged exactly as "
        f"a λ is (z = {cal.z:g}, run = {cal.run}): false 'function first' in "
        f"{100 * cal.false_function_first:.1f}% and false 'structure first' in "
        f"{100 * cal.false_structure_first:.1f}% of {cal.n_cells} cells of {cal.n_seeds} "
        f"seeds (α = {cal.alpha:g}); per seed, {100 * cal.seed_function_first:.1f}% read "
        f"function first and {100 * cal.seed_structure_first:.1f}% structure first. Pure "
        f"noise emerges in {100 * cal.false_emergence_func:.2f}% (q_func_z) and "
        f"{100 * cal.false_emergence_struct:.2f}% (q_struct_z) of simulated curves."
    )
    page.table(pd.DataFrame([cal._asdict()]), "calibration")


def _mi_audit(page: Page, data: StudyData) -> None:
    """The MI audit section (analysis.mi_audit): every MI measurement against its null."""
    page.h2("MI audit")
    if data.curves is None or not len(data.curves):
        page.nothing("no curves to audit")
        return
    fig, table = mi_audit(data)
    if fig is not None:
        page.figure(fig, "mi_audit", "MI audit: measured MI against its null floor.")
    if table is not None and len(table):
        page.table(table, "mi_audit")


def _phase_diagrams(page: Page, seeds: pd.DataFrame, swept: list[str], metric: str) -> None:
    """One phase diagram (figure and table) per pair of swept keys, or over the one swept key."""
    page.h2("Phase diagrams")
    if not len(seeds) or not swept:
        page.nothing("no finished seeds" if not len(seeds) else "no swept hyperparameters")
    else:
        missing = [q.removeprefix("final.") for q in Z_QUANTITIES if q not in seeds.columns]
        if missing:
            page.p(f"Not measured in this study: {', '.join(missing)}.", "empty")
        pairs = list(itertools.combinations(swept, 2)) or [(swept[0], None)]
        for x, y in pairs:
            info = phase_info(seeds, x, y, task_metric=metric)
            stem = slug(x, y) if y else slug(x)
            title = f"{x} × {y}" if y else x
            others = [k for k in swept if k not in (x, y)]
            pooled = f" Pooled over {', '.join(others)}." if others else ""
            page.figure(
                plot_phase(info, task_metric=metric, title=title),
                f"phase_{stem}",
                f"Phase diagram over {title}: per cell the value and the number of "
                "seeds n (k/n: k seeds where the onset is defined; onset medians are "
                f"over those k seeds only, see the Kaplan–Meier curves).{pooled}",
            )
            page.table(info.cells, f"phase_{stem}")


def _timing_regression(page: Page, fnd: Findings, timing: pd.DataFrame, swept: list[str]) -> None:
    """Censored regressions of the onsets on the numeric swept keys."""
    page.h2("Relating timing to the hyperparameters")
    params = [k for k in swept if k in timing and pd.api.types.is_numeric_dtype(timing[k])]
    if not fnd.measured or not len(timing):
        page.nothing(
            "onsets not measured in this study"
            if not fnd.measured
            else "no seeds for timing statistics"
        )
    else:
        page.p(
            "Censored regressions over seeds (seeds that did not emerge stay in, censored at "
            "their censoring epoch): Weibull AFT models of t_func and t_struct (coef = change "
            "of log time to emergence per unit; > 0 later) and a logistic regression of "
            "function-first against structure-first. λ is a regressor here, not pooled into "
            "a verdict."
        )
        page.table(censored_regression(timing, params), "timing_regression")


def _curves(
    page: Page,
    data: StudyData,
    fnd: Findings,
    seeds: pd.DataFrame,
    timing: pd.DataFrame,
    by: str | None,
) -> None:
    """Modularity curve bands per `by`, then the onsets scatter and the half-rise epochs."""
    page.h2("Modularity curves")
    bands = curve_bands_info(
        data.curves[data.curves["trial_id"].isin(seeds["trial_id"])]
        if len(seeds)
        else data.curves.iloc[0:0],
        seeds,
        by=by,
        metrics=[m for m in ("q_func_z", "q_struct_z", "q_func", "q_struct") if m in data.curves],
    )
    if not len(bands):
        page.nothing("no curves")
    else:
        page.figure(
            plot_curve_bands(bands, by=by or "all"),
            "curves",
            f"Modularity against epoch per {by or 'study'}: median over seeds (line) "
            "and interquartile range (band).",
        )
        page.table(bands, "curve_bands", max_rows=0)
    if len(timing) and fnd.measured:
        page.figure(
            plot_onsets(timing, by=by or PARAM_MI_WEIGHT),
            "onsets",
            "Onsets of q_struct_z against q_func_z for the seeds where both emerged.",
        )
        page.p(
            "Half-rise epochs (descriptive only: run-length dependent, used by no test) per "
            f"{by or 'study'}:"
        )
        half = (
            timing.groupby(by)[["t_func_half", "t_struct_half"]].median().reset_index()
            if by
            else timing[["t_func_half", "t_struct_half"]].median().to_frame().T
        )
        page.table(half, "half_rise")


def _pareto(page: Page, seeds: pd.DataFrame, metric: str, by: str | None) -> None:
    """Final task metric against q_func per trial (Pareto front), q_func against q_struct."""
    page.h2(f"{metric[:1].upper()}{metric[1:]} against q_func; q_func against q_struct")
    pareto = pareto_info(seeds, task_metric=metric, by=by)
    scatter = scatter_info(seeds, by=by)
    if not len(pareto):
        page.nothing("no trial with final values")
    else:
        page.figure(
            plot_pareto(pareto, task_metric=metric, by=by or ""),
            "pareto",
            f"Median final {metric} against median final q_func per trial, with the "
            "Pareto front of the two.",
        )
        page.table(pareto, "pareto")
    if len(scatter):
        page.figure(
            plot_scatter(scatter, by=by or ""),
            "scatter",
            "Final q_func against final q_struct per seed.",
        )


def _tables(page: Page, data: StudyData) -> None:
    """The trial and seed tables (CSV beside the report)."""
    page.h2("Tables")
    if len(data.trials):
        page.p("Trials:")
        page.table(data.trials, "trials")
    else:
        page.nothing("no trial runs")
    if len(data.seeds):
        page.p("Seeds (CSV beside the report; running trials included there, flagged):")
        page.table(data.seeds, "seeds", max_rows=0)


def _provenance(page: Page, data: StudyData) -> None:
    """The study's spec, code and library versions, trial counts, failures and dropped runs."""
    page.h2("Provenance")
    trials = data.trials
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    rows = [
        ("study", data.name),
        ("status", data.status),
        ("task", data.task or "unknown"),
        ("swept", ", ".join(data.swept) or "none"),
        (
            "objectives",
            "; ".join(
                f"{o.get('direction', '?')} {o.get('metric', '?')}"
                if isinstance(o, dict)
                else str(o)
                for o in data.objectives
            )
            or "none",
        ),
        ("git commit", data.tags.get(TAG_COMMIT, "unknown")),
        ("versions", ", ".join(f"{k} {v}" for k, v in data.versions.items()) or "unknown"),
        ("trials", f"{len(trials)} ({', '.join(f'{n} {s}' for s, n in counts.items()) or '-'})"),
        ("seeds", str(len(data.seeds))),
        ("dropped runs", f"{len(data.dropped)} (duplicates or orphans)"),
        ("tracking URI", data.tracking_uri),
        ("experiment id", data.experiment_id),
        ("study run", data.study_run_id or "none"),
    ]
    page.table(pd.DataFrame(rows, columns=["", "value"]))
    bad = trials[trials["status"].isin(["failed", "diverged", "stopped"])] if len(trials) else []
    if len(bad):
        page.p("Trials that did not finish normally:")
        page.table(
            bad[["trial_id", "run_id", "status", "message"]].reset_index(drop=True), "failures"
        )
    if len(data.dropped):
        page.p("Runs left out:")
        page.table(data.dropped, "dropped_runs")
    if data.spec_text:
        page.p("Study spec (spec.yaml):")
        page.pre(data.spec_text)
