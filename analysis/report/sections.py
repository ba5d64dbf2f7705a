"""The report's parts, one function each, in the order of the page.

First the answer: the verdict matrix (claims × cells, the timing verdicts beside them) at the top
of the page. Then sections a reader can skip: claims per cell (or per bin of λ, with the λ → 0
limits), timing verdicts with the seeds left out, for adaptive searches the responses to each
continuous key and the contours over pairs, which hyperparameters matter, Kaplan–Meier curves,
the calibration, the MI audit, the phase diagrams, the timing regression, the modularity curves,
the Pareto front and scatter, the tables, and provenance with the spec last. Each section writes
its heading, a short text saying what is shown, then figures and tables (CSV beside the page),
or says there is nothing to show. No section lists trials one by one in text.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from analysis.claims import CLEAR_Z
from analysis.emergence import ALPHA, MARGIN_EVALS, censored_regression, km_table, timing_seeds
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
from analysis.report.findings import Findings, analysed_seeds, param_mode
from analysis.report.page import Page, slug
from analysis.runs import StudyData
from analysis.verdicts import timing_excluded
from study.contract.names import TIMING_FUNCTION, TIMING_STRUCTURE
from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z, TIE_EVALS
from study.contract.params import PARAM_EVAL_EVERY, PARAM_MI_WEIGHT, PARAM_RUN, PARAM_Z
from study.contract.power import LEAD_OF_INTEREST_EVALS
from study.contract.rise import onset_column
from study.contract.tags import TAG_COMMIT

__all__ = ["RESPONSE_METRICS", "write_sections"]

# what the response curves show against each continuous key: the claims' metrics and the onsets
RESPONSE_METRICS = ("accuracy", "functional", "structural", "mi", "t_func", "t_struct")
CONTOUR_METRICS = ("functional", "accuracy")  # the surfaces over each pair of keys


def write_sections(page: Page, data: StudyData, fnd: Findings) -> None:
    """The verdict matrix first, then the sections in page order, provenance and spec last."""
    seeds = analysed_seeds(data)
    metric = data.success_metric
    swept = [k for k in data.swept if k in seeds.columns] or (
        [PARAM_MI_WEIGHT] if PARAM_MI_WEIGHT in seeds.columns else []
    )
    by = PARAM_MI_WEIGHT if PARAM_MI_WEIGHT in seeds.columns else (swept[0] if swept else None)
    # λ-grouped views use the cells' seeds: λ as its bin label in an adaptive search
    cell_seeds = fnd.cells.cell_seeds if fnd.cells is not None else seeds
    timing = timing_seeds(cell_seeds)[0] if len(cell_seeds) else cell_seeds
    adaptive = fnd.cells is not None and fnd.cells.design.kind == "adaptive"

    _matrix(page, fnd)
    _claims(page, data, fnd)
    _arms(page, fnd)
    _verdicts(page, data, fnd, timing, by)
    if adaptive:
        _responses(page, data, fnd, seeds)
    _importance(page, data, fnd, seeds, swept)
    _km(page, fnd, timing, by)
    _calibration(page, fnd)
    _mi_audit(page, data, fnd)
    _phase_diagrams(page, seeds, swept, metric, figures=not adaptive, first_eval=fnd.first_eval)
    _timing_regression(page, fnd, timing, swept, seeds)
    _curves(page, data, fnd, cell_seeds, timing, by)
    _pareto(page, seeds, metric, by)
    _tables(page, data)
    _provenance(page, data)


def _matrix(page: Page, fnd: Findings) -> None:
    """The verdict matrix at the top of the page (before the findings block)."""
    from analysis.matrix import plot_matrix

    if fnd.matrix is None or not fnd.matrix.cells:
        return
    kind = fnd.cells.design.kind if fnd.cells is not None else "grid"
    where = "cell (grid point)" if kind == "grid" else "cell (bin of λ)"
    page.figure(
        plot_matrix(fnd.matrix),
        "verdict_matrix",
        f"The answer: each claim per {where}, coloured by its verdict; the timing verdict "
        "below. λ = 0 columns are controls (no claim; any timing order there is false).",
        answer=True,
    )


def _claims(page: Page, data: StudyData, fnd: Findings) -> None:
    """The claims per cell against the cell's own control (a grid) or per bin of λ against the
    fitted λ → 0 limit (an adaptive search), with the test's calibration or the limits."""
    page.h2("Claims per cell")
    cut = fnd.cells
    if cut is not None and cut.design.kind == "adaptive":
        _binned_claims(page, data, fnd)
        return
    if not len(fnd.claims):
        page.nothing("no λ = 0 control in this study, so no claim can be tested against one")
        return
    page.p(
        "Each row: one cell (a value of every other swept key) and one λ > 0, against the "
        "λ = 0 seeds of the same cell, paired by seed (same initialisation and data). "
        "Accuracy holds only with equivalence: the paired mean change lies within "
        f"±{fnd.claims['margin'].dropna().iloc[0]:g} by TOST (two one-sided paired t-tests, "
        "BH across cells) and all treated seeds but at most one succeed; it breaks when under "
        "half succeed or the drop exceeds the margin significantly; otherwise it is "
        "inconclusive. The mean and the worst seed's change are shown, not only the median. "
        "Functional / structural (final q_func_z / q_struct_z) hold when the paired rise is "
        f"significant (exact Wilcoxon signed-rank, BH per claim, α = {ALPHA:g}) and the "
        f"treated median z > {CLEAR_Z:g}, weak when significant but not clear; mi (held-out "
        "MI excess over its null) holds when it falls significantly. Cells are never pooled."
    )
    page.table(fnd.claims, "claims_by_cell")
    if fnd.claims_calibration is not None:
        page.p(
            "Calibration of the signed-rank test: fraction of synthetic no-effect cells (same "
            f"n) it rejects at α = {ALPHA:g}:"
        )
        page.table(fnd.claims_calibration, "claims_calibration")


def _arms(page: Page, fnd: Findings) -> None:
    """The arms of a study with arms (analysis.arms): what each arm tests and its answer, the
    paired comparisons with the control, the lesions, and each arm's curves against the
    control's with its intervention's epoch; nothing for a study without arms."""
    from analysis.arms import INTEREST
    from analysis.figures import plot_arm_curves

    arms = fnd.arms
    if arms is None:
        return
    page.h2("Arms", open=True)
    for note in arms.notes:
        page.p(note, "empty")
    control = arms.design.control
    if control is None or not len(arms.comparisons):
        page.nothing("no control arm named, or no arm with seeds paired with it")
        return
    by = arms.by
    where = f" in each cell of {' × '.join(by)}" if by else ""
    page.p(
        f"Each arm against the control arm '{control}', paired by seed{where}: the same "
        "initialisations and data, and until an arm's intervention acts the same networks bit "
        "for bit; arms and cells are never pooled. Answers: a question about what happens "
        "after the intervention tests each switched seed's change from its switch epoch (the "
        "first evaluation with intervened = 1; after a partition swap, the first evaluation on "
        "the new partition) to its final value; a question about a level tests the seeds' "
        f"final z-score against 0 (yes: significant and median > {CLEAR_Z:g}; weak: significant "
        f"but not clear; no: the CI of the median below {CLEAR_Z:g}). Wilcoxon signed-rank "
        f"(SciPy), Benjamini–Hochberg within each arm's family (its questions and comparisons), "
        f"α = {ALPHA:g}; 'inconclusive (power)' where the seeds cannot reach α/family or could "
        f"not see a shift of {INTEREST['z']:g} z ({INTEREST['score']:g} of the task score, "
        f"{INTEREST['onset']:g} evaluations of an onset) with 80 % power."
    )
    v = arms.verdicts
    page.table(v[[*by, "arm", "question", "verdict", "n", "why"]], names={"n": "seeds"})
    page.table(v, "arm_verdicts", max_rows=0)
    page.p(
        "Paired comparisons with the control: arm − control per seed; effect = median "
        "difference with its distribution-free CI (order statistics; coverage ci_level); onsets "
        "are the half-rise timing onsets (epochs), compared as censored intervals (a "
        "signed-rank test on intervals, exact Wilcoxon on points), their effect over the pairs "
        "where both are points."
    )
    c = arms.comparisons
    shown = [
        *by,
        "arm",
        "quantity",
        "n",
        "median_control",
        "median_arm",
        "effect",
        "ci_lo",
        "ci_hi",
        "p",
        "p_bh",
        "verdict",
    ]
    page.table(c[shown], names={"n": "pairs"})
    page.table(c, "arm_comparisons", max_rows=0)
    les = arms.lesions
    if len(les):
        page.p(
            "Lesions at each seed's last lesion evaluation: drop = intact − lesioned (task score "
            "and q_func_z) when W_rec's between-group blocks are zeroed (zero_between), reset to "
            "W(0) (reset_between), or all of W_rec is reset to W(0) (reset_rec); per arm the "
            "median drop with its CI and a one-sample Wilcoxon test, and the paired difference "
            "of the drops against the control's (BH within each arm's lesions)."
        )
        keep = [
            *by,
            "arm",
            "lesion",
            "measure",
            "n",
            "median_intact",
            "median_drop",
            "ci_lo",
            "ci_hi",
            "p_bh",
            "drop_vs_control",
            "p_vs_bh",
        ]
        page.table(les[keep], names={"n": "seeds"})
        page.table(les, "arm_lesions", max_rows=0)
    else:
        page.p("No lesions measured in this study (train.lesion_every = 0).", "empty")
    bands = arms.bands
    if not len(bands):
        return
    labels = {"q_func_z": "q_func_z", "q_struct_z": "Q(|W|) z", "dw_block_z": "ΔW block z"}
    metrics = [m for m in labels if m in set(bands["metric"])]
    cells = [((), bands)] if not by else list(bands.groupby(by, sort=True))
    for key, g in cells:
        key = key if isinstance(key, tuple) else (key,)
        title = " · ".join(f"{k} = {val}" for k, val in zip(by, key))
        sw = arms.switches
        for k, val in zip(by, key):
            sw = sw[sw[k] == val]
        page.figure(
            plot_arm_curves(
                g,
                sw,
                control=str(control),
                arms=arms.design.treated,
                metrics=metrics,
                labels=labels,
                title=title,
            ),
            f"arms_curves{'_' + slug(*map(str, key)) if by else ''}",
            "Each arm (colour) against the control (grey): median over seeds and IQR band of "
            "q_func_z, Q(|W|) z and the ΔW block z; dashed, the intervention's epoch (the "
            "median of the seeds' switch epochs, their IQR shaded); dotted, a swapped arm's "
            f"designed partition{' (' + title + ')' if title else ''}.",
        )
    page.table(bands, "arm_curve_bands", max_rows=0)


def _binned_claims(page: Page, data: StudyData, fnd: Findings) -> None:
    """Claims per bin of λ and the λ → 0 limits they are judged against."""
    from analysis.api import lambda_limits

    cut = fnd.cells
    binning = cut.binning
    page.p(
        f"{cut.statement} Each bin's mean of trial means (trials are the units: seeds of one "
        "trial share its hyperparameters) is compared with the λ → 0 limit of the same cell, "
        "a straight line through the trials of smallest λ evaluated at 0, by a "
        "Welch–Satterthwaite t-interval, Bonferroni over the bins. Accuracy holds when the "
        "interval lies within the margin and the bin's mean succeeds; functional / structural "
        f"hold when it lies above 0 and the mean z > {CLEAR_Z:g} (weak: above 0, not clear); "
        "mi holds when it lies below 0."
        if binning is not None
        else f"{cut.statement} Without a binned λ no claim is judged."
    )
    if len(fnd.claims):
        page.table(fnd.claims, "claims_by_bin", names={"n": "seeds", "mean": "bin mean"})
    else:
        page.nothing("no bin of λ has a λ → 0 limit to be judged against")
    lim = lambda_limits(data)
    if len(lim):
        page.p(
            "The λ → 0 limit of each claim's metric, from the trials of smallest λ (observed: "
            "the mean of the λ = 0 trials, where there are any, as a check):"
        )
        page.table(lim, "lambda_limits")


# the columns of the timing table per ordering the report shows (the seam's wide table, one
# block of columns per ordering: analysis.timing.study_verdicts_wide)
ORDERING_COLUMNS = (
    "verdict",
    "n",
    "n_func_first",
    "n_struct_first",
    "n_undecided",
    "median_lag_evals",
    "p_order_bh",
    "p_tost_bh",
    "detectable_lead_evals",
    "power",
    "why",
)


def timing_by_ordering(verdicts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The seam's wide timing table as one row per (cell, ordering measured there): the cell
    keys, ``ordering``, ``struct`` (its structure measure), then :data:`ORDERING_COLUMNS` of
    that ordering (its ``<column>.<struct>`` columns). A table without per-ordering columns is
    returned as is."""
    from analysis.timing import ordering_label

    structs = [c.split(".", 1)[1] for c in verdicts.columns if str(c).startswith("verdict.")]
    if not structs:
        return verdicts
    rows = []
    for r in verdicts.to_dict("records"):
        for s in structs:
            if not isinstance(r.get(f"verdict.{s}"), str):
                continue  # not measured in this cell
            row = {k: r[k] for k in keys}
            row["ordering"], row["struct"] = ordering_label(s), s
            row.update({c: r.get(f"{c}.{s}") for c in ORDERING_COLUMNS})
            rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "ordering", "struct", *ORDERING_COLUMNS])


def _verdicts(
    page: Page, data: StudyData, fnd: Findings, timing: pd.DataFrame, by: str | None
) -> None:
    """The timing verdict per cell and ordering (the seam's table), the seeds left out and
    why, and the descriptive pooled counts of a grid with more than one key."""
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
    first = fnd.first_eval
    method = fnd.verdicts.attrs.get("method", "")
    bound = (
        f" An onset at the first evaluation after training began (epoch {first:g}) is a bound "
        f"and reads '≤ {first:g}'."
        if np.isfinite(first)
        else ""
    )
    if method.startswith("threshold"):
        _threshold_text(page, z, run, step, bound)
    else:  # another pipeline behind the seam names its own method
        _half_rise_text(page, method, z, run, bound)
    keys = fnd.cells.keys if fnd.cells else []
    cell_keys = [k for k in fnd.verdicts.columns if k in keys]
    long = timing_by_ordering(fnd.verdicts, cell_keys)
    page.p(f"Verdict per cell of {' × '.join(cell_keys) or 'the study'} and ordering:")
    page.table(
        long,
        "timing_by_ordering",
        names={
            "n": "seeds",
            "n_func_first": "function first",
            "n_struct_first": "structure first",
            "n_undecided": "undecided",
            "median_lag_evals": "median lag (evaluations)",
            "p_order_bh": "order p (BH)",
            "p_tost_bh": "TOST p (BH)",
            "detectable_lead_evals": "detectable lead (evaluations)",
            "power": f"power (lead {LEAD_OF_INTEREST_EVALS:g})",
            "struct": "measure",
        },
    )
    page.table(fnd.verdicts, "timing_verdicts", max_rows=0)  # every column, one row a cell
    excluded = timing_excluded(data, seeds=fnd.cells.seeds if fnd.cells else None)
    if len(excluded):
        page.p(
            "Seeds left out of the timing: networks that failed the task (final "
            f"{data.success_metric} at or below {data.success_threshold:g}), whose order of "
            "emergence says nothing about the claim, and trials cut short:"
        )
        page.table(excluded, "timing_excluded")
    if by and len(cell_keys) > 1 and len(long) and "ordering" in long:
        page.p(
            f"Pooled per {by} over {', '.join(k for k in cell_keys if k != by)}: descriptive "
            "counts only, no test and no p-value (the cells of a grid share seed values, so "
            "pooling counts one seed several times). The median lag is over the seeds whose "
            "lag is a point (both onsets resolved), in epochs and in evaluations."
        )
        steps = pd.to_numeric(fnd.verdicts.get("step", pd.Series(dtype=float)), errors="coerce")
        per = float(steps.median()) if steps.notna().any() else math.nan
        page.table(_pooled(long, timing, by, per), f"pooled_by_{slug(by)}")


def _pooled(long: pd.DataFrame, timing: pd.DataFrame, by: str, step: float) -> pd.DataFrame:
    """Per value of `by` and ordering: the cells' seed counts summed, and the median of the
    seeds' point lags t_struct − t_func (epochs; and in evaluations of `step` epochs)."""
    from study.contract.rise import lag_column

    counts = ["n", "n_func_first", "n_struct_first", "n_undecided"]
    out = long.groupby([by, "ordering", "struct"], sort=False)[counts].sum().reset_index()
    med = []
    for r in out.to_dict("records"):
        lo, hi = lag_column(r["struct"], "lo"), lag_column(r["struct"], "hi")
        point = pd.Series(dtype=float)
        if lo in timing and hi in timing:
            g = timing[timing[by] == r[by]]
            a = pd.to_numeric(g[lo], errors="coerce")
            point = a[(a == pd.to_numeric(g[hi], errors="coerce")) & np.isfinite(a)]
        med.append(float(point.median()) if len(point) else math.nan)
    out["median_lag"] = med
    out["median_lag_evals"] = out["median_lag"] / step
    return out


def _half_rise_text(page: Page, method: str, z: float, run: int, bound: str) -> None:
    """What the half-rise verdicts (analysis.timing, docs/timing.md) mean, in one paragraph."""
    from analysis.timing import ALPHA, MARGIN_EVALS

    page.p(
        f"Verdicts by {method or 'the timing pipeline'}. Per seed and curve, the timing onset "
        "is where its own fitted rise has covered half the way from the level at the first "
        "evaluation to its plateau (the half-rise), decided from the past only "
        f"once the curve is detectable (z >= {z:g} for {run} evaluations) and the rise "
        "resolved; a larger curve does not read earlier. Each ordering compares q_func_z "
        "with one structure measure: Q(|W|) (q_struct_z, the state of the weights) and, "
        "where measured, ΔW (dw_block_z, the change since the start). Per cell: a "
        "censoring-aware signed-rank test of the per-seed lags beyond ±0.25 evaluations "
        "(order p), TOST of "
        f"co-emergence within ±{MARGIN_EVALS:g} evaluations, Benjamini–Hochberg over the "
        f"treated cells, α = {ALPHA:g}; λ = 0 rows are controls (raw p). 'Inconclusive "
        "(power)' means the cell's seeds could not detect a lead of "
        f"{LEAD_OF_INTEREST_EVALS:g} evaluations (its detectable lead is larger, or its n "
        "cannot reach the level at all): no order is claimed, and none is ruled out. A cell "
        "where more than half of the seeds show no resolved rise of a metric reads "
        "'structure never emerged' (or 'function never emerged', 'neither emerged')." + bound
    )


def _threshold_text(page: Page, z: float, run: int, step: float, bound: str) -> None:
    """What the threshold-onset verdicts (analysis.emergence) mean, in one paragraph."""
    page.p(
        f"Per seed, the onset of q_func_z (t_func) and of q_struct_z (t_struct) is the first "
        f"evaluation from which the z-score against random partitions of the same sizes "
        f"stays >= {z:g} for {run} consecutive evaluations (emergence.z, emergence.run); "
        "a larger curve crosses a fixed threshold earlier, so this order depends on the "
        f"curves' amplitudes. Onsets within {TIE_EVALS} evaluation are a tie; a seed where "
        "only one emerged by the end counts for that side. Per cell: exact sign test of "
        "function-first against structure-first, TOST equivalence of the median lag with 0 "
        f"within ±{MARGIN_EVALS:g} evaluations"
        f"{f' (±{MARGIN_EVALS * step:g} epochs)' if np.isfinite(step) else ''} for "
        f"co-emergence, Benjamini–Hochberg across the treated cells, α = {ALPHA:g}. A cell "
        "where more than half of the seeds have no onset of a metric reads 'structure never "
        "emerged' (or 'function never emerged', 'neither emerged'), whatever the order of the "
        "rest. λ = 0 rows are controls (raw p, outside the BH family)." + bound
    )


def _responses(page: Page, data: StudyData, fnd: Findings, seeds: pd.DataFrame) -> None:
    """Response curves of each claim's metric and the onsets against each continuous key, the
    λ → 0 limits beside λ's, and contours over each pair of continuous keys."""
    from analysis.api import _finished
    from analysis.cells import log_axis
    from analysis.response import (
        contour_info,
        limit_info,
        plot_contour,
        plot_response,
        response_info,
    )

    page.h2("Response to the hyperparameters")
    done = _finished(seeds)
    keys = [k for k in fnd.cells.design.continuous if k in done.columns]
    if not keys or not len(done):
        page.nothing("no continuous key with enough distinct values")
        return
    page.p(
        "Each dot is one trial (its mean over seeds; size ∝ seeds with a value); the line is "
        "a LOWESS fit of the trial means and the band its 95 % percentile interval over "
        "bootstrap resamples of the trials. Other keys are pooled. Onsets (t_func, t_struct) "
        "are shown for the seeds where the metric emerged. On a log axis the λ = 0 trials "
        "(black) and the fitted λ → 0 limit (red, with its 95 % t-interval) sit in a panel "
        "apart."
    )
    rng = np.random.default_rng(0)
    logs = {k: log_axis(done[k]) for k in keys}
    lims = {
        m: limit_info(done, m, task_metric=data.success_metric)
        for m in RESPONSE_METRICS[:4]
        if PARAM_MI_WEIGHT in done
    }
    for key in keys:
        infos = [
            response_info(done, key, m, task_metric=data.success_metric, log=logs[key], rng=rng)
            for m in RESPONSE_METRICS
        ]
        page.figure(
            plot_response(infos, lims if key == PARAM_MI_WEIGHT else None),
            f"response_{slug(key)}",
            f"Response of each claim's metric and of the onsets to {key}: trial means, LOWESS "
            "and its bootstrap band.",
        )
    pairs = list(itertools.combinations(keys, 2))
    for x, y in pairs:
        for m in CONTOUR_METRICS:
            info = contour_info(done, x, y, m, task_metric=data.success_metric, log=logs)
            page.figure(
                plot_contour(info),
                f"contour_{slug(x, y)}_{m}",
                f"{info.column} over {x} × {y}: trial means (dots) linearly interpolated "
                "inside their convex hull, never extrapolated.",
            )


def _importance(
    page: Page, data: StudyData, fnd: Findings, seeds: pd.DataFrame, swept: list[str]
) -> None:
    """Parameter importance (fANOVA and PED-ANOVA, named, with their spread) for each target,
    and parallel coordinates of the trials."""
    from analysis.api import _finished, _importance_frame
    from analysis.cells import log_axis
    from analysis.importance import parallel_info, plot_importance, plot_parallel

    page.h2("Which hyperparameters matter")
    if not fnd.importance:
        page.nothing(
            "a grid of fewer than 8 finished trials (its cells answer per cell)"
            if fnd.cells is not None and fnd.cells.design.kind == "grid"
            else "no trials to judge"
        )
        return
    first = fnd.importance[0]
    page.p(
        "Share of the variation of each target (a trial's mean over its seeds) due to each "
        f"swept key, by two evaluators that answer different questions: {first.evaluator_name} "
        "(variance of a random-forest surrogate over the whole space) and PED-ANOVA (how the "
        "best trials' region differs from the rest; the best are the top 10 %, earlier onsets "
        "being better). Bars: all trials; whiskers: 5–95 % over bootstrap resamples of the "
        "trials with fresh evaluator seeds. Onsets are judged on the seeds where they emerged."
    )
    page.figure(
        plot_importance(fnd.importance),
        "importance",
        "Parameter importance per target; the evaluators are named in the legend.",
    )
    page.table(_importance_frame(fnd.importance), "importance")
    done = _finished(seeds)
    objective = next((i.objective for i in fnd.importance if not i.table.empty), "functional")
    logs = {k: log_axis(done[k]) for k in swept if k in done}
    info = parallel_info(done, swept, objective, task_metric=data.success_metric, log=logs)
    page.figure(
        plot_parallel(info),
        "parallel_coordinates",
        f"Parallel coordinates: one line per trial through its keys and its {objective} (colour).",
    )


def _km(page: Page, fnd: Findings, timing: pd.DataFrame, by: str | None) -> None:
    """Kaplan–Meier curves of time to emergence per metric and λ (its bins when adaptive)."""
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
        "Fraction of seeds whose z-score is detectable (the significance gate: z above the "
        "threshold for a run of evaluations, 'detectable from'; not the half-rise onsets the "
        "timing verdicts compare) against epoch (Kaplan–Meier; seeds never detectable are "
        "censored at their censoring epoch). Legend: detections / seeds.",
    )
    med = km.drop_duplicates(["level", "metric"])[["level", "metric", "n", "events", "median"]]
    page.p(
        "Kaplan–Meier median time to emergence (empty: fewer than half emerged; '≤ t': "
        "by the first evaluation):"
    )
    page.table(
        med.reset_index(drop=True),
        "kaplan_meier_medians",
        left_censored={"median": fnd.first_eval},
    )
    page.table(km, "kaplan_meier", max_rows=0)


def _calibration(page: Page, fnd: Findings) -> None:
    """The controls' false detections and the timing pipeline's calibration at the study's
    design, printed."""
    page.h2("Calibration")
    if fnd.false_emergence:
        fe = fnd.false_emergence
        page.p(
            f"False detections at λ = 0 (controls whose z-score passes the significance gate; "
            f"target <= 5%): q_func_z {fe['func'][0]}/{fe['func'][1]} "
            f"({100 * fe['func'][0] / max(fe['func'][1], 1):.0f}%), q_struct_z "
            f"{fe['struct'][0]}/{fe['struct'][1]} "
            f"({100 * fe['struct'][0] / max(fe['struct'][1], 1):.0f}%)."
        )
    cal = fnd.calibration
    if cal is None or not len(cal):
        page.nothing("no treated cells with curves to calibrate the timing verdicts on")
        return
    r = cal.iloc[0]
    page.p(
        "The timing verdicts' calibration at this study's design: synthetic cells of "
        f"{int(r['n_seeds'])} seeds judged exactly as the study's cells are (half-rise onsets, "
        f"lag test, TOST, BH over {int(r['family'])} cells), with each metric's amplitude, "
        "rise width, noise and midpoints measured from the study's treated curves (the curve "
        "models below). Per ordering: with no lead, the rate at which a cell "
        "reads an order (false_ordering, the target is at most α); with a known lead of 1, 2 "
        "or 4 evaluations either way, the rate at which the right side is called (power) "
        "and the wrong one (false_ordering). The shipped scenario suite (amplitude ratios, "
        "unequal noise and widths) and more simulated cells: python -m analysis timing "
        "STUDY."
    )
    page.p(f"Curve models: function {r['func_model']}; structure {r['struct_model']}.")
    page.table(cal, "calibration", max_rows=0)  # every column, machine names
    shown = [c for c in cal.columns if c not in ("struct", "lead_evals", *_MODELS)]
    page.table(cal[shown], None, names={"n_seeds": "seeds", "family": "BH family"})


_MODELS = ("func_model", "struct_model")


def _mi_audit(page: Page, data: StudyData, fnd: Findings) -> None:
    """The MI audit section (analysis.mi_audit): every MI measurement against its null, per λ
    (per bin of λ in an adaptive search)."""
    from analysis.api import _lambda_groups

    page.h2("MI audit")
    if data.curves is None or not len(data.curves):
        page.nothing("no curves to audit")
        return
    groups = _lambda_groups(fnd.cells) if fnd.cells is not None else None
    fig, table = mi_audit(data, groups=groups)
    if fig is not None:
        page.figure(fig, "mi_audit", "MI audit: measured MI against its null floor.")
    if table is not None and len(table):
        page.table(table, "mi_audit")


def _phase_diagrams(
    page: Page,
    seeds: pd.DataFrame,
    swept: list[str],
    metric: str,
    *,
    figures: bool = True,
    first_eval: float = math.nan,
) -> None:
    """One phase diagram (figure and table) per pair of swept keys, or over the one swept key;
    tables only without `figures` (an adaptive search, whose responses and contours show the
    same over continuous axes)."""
    page.h2("Phase diagrams")
    if not len(seeds) or not swept:
        page.nothing("no finished seeds" if not len(seeds) else "no swept hyperparameters")
        return
    missing = [q.removeprefix("final.") for q in Z_QUANTITIES if q not in seeds.columns]
    if missing:
        page.p(f"Not measured in this study: {', '.join(missing)}.", "empty")
    if not figures:
        page.p(
            "An adaptive search: its continuous keys are binned here (5 bins each, other keys "
            "pooled); the responses and contours above show the same without bins. Tables only."
        )
    pairs = list(itertools.combinations(swept, 2)) or [(swept[0], None)]
    for x, y in pairs:
        info = phase_info(seeds, x, y, task_metric=metric)
        stem = slug(x, y) if y else slug(x)
        title = f"{x} × {y}" if y else x
        others = [k for k in swept if k not in (x, y)]
        pooled = f" Pooled over {', '.join(others)}." if others else ""
        if figures:
            page.figure(
                plot_phase(info, task_metric=metric, title=title, first_eval=first_eval),
                f"phase_{stem}",
                f"Phase diagram over {title}: per cell the value and the number of "
                "seeds n (k/n: k seeds where the onset is defined; onset medians are "
                f"over those k seeds only, see the Kaplan–Meier curves).{pooled}",
            )
        else:
            page.p(f"Over {title}:{pooled}")
        page.table(info.cells, f"phase_{stem}")


def _timing_regression(
    page: Page, fnd: Findings, timing: pd.DataFrame, swept: list[str], seeds: pd.DataFrame
) -> None:
    """Censored regressions of the onsets on the numeric swept keys: descriptive, no p."""
    page.h2("Relating timing to the hyperparameters")
    if not fnd.measured or not len(timing):
        page.nothing(
            "onsets not measured in this study"
            if not fnd.measured
            else "no seeds for timing statistics"
        )
        return
    # the raw keys (λ as a number, not its bin), for the seeds the timing uses
    raw = seeds.loc[seeds.index.intersection(timing.index)]
    params = [k for k in swept if k in raw and pd.api.types.is_numeric_dtype(raw[k])]
    page.p(
        "Censored regressions over seeds of the detection onsets (t_func, t_struct: the "
        "significance gate, 'detectable from'; not the half-rise onsets of the timing "
        "verdicts; seeds never detectable stay in, censored at their censoring epoch): "
        "Weibull AFT models of t_func and t_struct (coef = change "
        "of log time to emergence per unit; > 0 later) and a logistic regression of "
        "function-first against structure-first. Descriptive only: the seeds are pooled over "
        "cells that share their seed values and over seeds of one trial, so they are not "
        "independent and no p-value is given. A fit that did not converge says so and gives "
        "no coefficient."
    )
    page.table(censored_regression(raw, params), "timing_regression")


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
    func = onset_column(TIMING_FUNCTION)
    if len(timing) and fnd.measured and func in timing:
        struct = onset_column(TIMING_STRUCTURE[0][0])
        page.figure(
            plot_onsets(
                timing.assign(t_func=timing[func], t_struct=timing[struct]),
                by=by or PARAM_MI_WEIGHT,
            ),
            "onsets",
            "Timing onsets (half-rise of each curve's own fitted rise) of q_struct_z (Q(|W|)) "
            "against q_func_z, for the seeds where both are resolved points; above the "
            "diagonal: structure after function.",
        )
        metrics = [TIMING_FUNCTION, *(m for m, *_ in TIMING_STRUCTURE)]
        status = {m: onset_column(m, "status") for m in metrics}
        cols = {  # the curves this study measured
            m: onset_column(m)
            for m in metrics
            if status[m] in timing and timing[status[m]].map(lambda v: isinstance(v, str)).any()
        }
        page.p(
            f"Median timing onsets (epochs) per {by or 'study'}, over the seeds whose onset of "
            "that curve is a resolved point (n_<curve> of them); left-censored, unresolved and "
            "undetected onsets are in the seeds table (onset.<curve>.status):"
        )
        g = timing.groupby(by, sort=True) if by else [("all", timing)]
        rows = []
        for level, part in g:
            row = {by or "study": level}
            for m, c in cols.items():
                v = pd.to_numeric(part[c], errors="coerce")
                row[m], row[f"n_{m}"] = v.median(), int(v.notna().sum())
            rows.append(row)
        page.table(pd.DataFrame(rows), "timing_onsets")


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
