"""Assemble a study's self-contained HTML report (figures embedded), PNG and CSV files beside it.

Run as ``python -m analysis report STUDY``; the report is also logged under ``report/`` in the
study run's artifacts so it opens from the MLflow UI. It leads with the answer (issue 9): the
timing verdict per λ and per cell, then the Kaplan–Meier curves, the calibration of the pipeline,
the MI audit, the phase diagrams of the null-referenced quantities, the rest, and provenance last.
"""

from __future__ import annotations

import base64
import html
import itertools
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.claims import CLAIMS, CLEAR_Z, calibrate_paired, claims_table
from analysis.emergence import (ALPHA, MARGIN_EVALS, Calibration, calibrate,
                                censored_regression, false_emergence, km_table, measure_noise,
                                timing_seeds, verdict_table)
from analysis.figures import (plot_curve_bands, plot_km, plot_onsets, plot_pareto, plot_phase,
                              plot_scatter, to_png)
from analysis.mi_audit import mi_audit
from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z, ONSET_METRICS, TIE_EVALS
from analysis.phase import Z_QUANTITIES, curve_bands_info, pareto_info, phase_info, scatter_info
from analysis.runs import StudyData, load_study, resolve_study_home
from study.contract.artifacts import ARTIFACT_REPORT, REPORT_FILE
from study.contract.params import PARAM_EVAL_EVERY, PARAM_MI_WEIGHT, PARAM_RUN, PARAM_Z
from study.contract.tags import TAG_COMMIT

__all__ = ["ACCURACY_DROP", "Findings", "Report", "build_report", "findings"]

_log = logging.getLogger(__name__)

# A λ "drops accuracy" when its median final task metric is this far below the smallest λ's.
ACCURACY_DROP = 0.02
CALIBRATION_CELLS = 200  # simulated cells per calibration (~1 s for 41 evaluations)
CLAIMS_CALIBRATION_REPS = 1000  # no-effect replicates per world of the paired test (cached)
CLAIM_VERDICTS = ("holds", "weak", "breaks", "inconclusive", "not measured")


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


@dataclass(frozen=True)
class Report:
    """Where a report was written and what it holds."""

    path: Path  # the HTML file
    out_dir: Path
    files: list[Path]  # PNG and CSV files beside it
    findings: Findings
    logged_run_id: str | None  # the study run the report was logged to, None if not logged
    notes: list[str] = field(default_factory=list)


def analysed_seeds(study: StudyData) -> pd.DataFrame:
    """Seeds of trials that are not running any more (running trials have partial curves)."""
    s = study.seeds
    return s[~s["running"].astype(bool)] if "running" in s.columns else s


def _mode(seeds: pd.DataFrame, key: str, default: float) -> float:
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


def study_calibration(study: StudyData, timing: pd.DataFrame, *,
                      rng: np.random.Generator) -> Calibration | None:
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
    epochs = np.sort(c.loc[c["trial_id"] == c["trial_id"].iloc[0], "epoch"].unique()).astype(
        float)
    z = _mode(timing, PARAM_Z, DEFAULT_Z)
    run = int(_mode(timing, PARAM_RUN, DEFAULT_RUN))
    if epochs.size < run + 2:
        return None
    treated = timing[~_controls(timing)]
    n_cell = 8
    amp = 10.0
    if len(treated):
        n_cell = int(np.median(treated.groupby(PARAM_MI_WEIGHT).size())) \
            if PARAM_MI_WEIGHT in treated else len(treated)
        finals = [pd.to_numeric(treated[f"final.{col}"], errors="coerce").median()
                  for col in ONSET_METRICS.values() if f"final.{col}" in treated]
        finals = [f for f in finals if np.isfinite(f)]
        if finals:
            amp = float(np.clip(min(finals), z + 2.0, 20.0))
    return calibrate(nf._replace(rho=min(nf.rho, 0.99)), ns, epochs=epochs,
                     n_seeds=max(n_cell, 2), n_cells=CALIBRATION_CELLS, amplitude=amp, z=z,
                     run=run, rng=rng)


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
    n_counts = len(parts)  # the claims come right after the counts: the answer first
    empty = pd.DataFrame()
    if not len(seeds):
        parts.append("There are no finished seeds yet, so there is nothing to analyse.")
        return Findings(" ".join(parts), n_trials, n_running, 0, 0, False, empty, empty, None,
                        None, None)

    timing, excluded = timing_seeds(seeds)
    measured = bool(seeds.get("onsets_measured", pd.Series(False)).astype(bool).any())
    # a verdict is per cell: λ and every other swept key (cells of a grid share seed values, so
    # pooling them would count one seed several times); the per-λ pooled table is descriptive
    cells = verdict_cells(study.swept, timing)
    verdicts = verdict_table(timing, cells) if measured else pd.DataFrame()
    cal = fe = None
    if not measured:
        parts.append("Emergence timing was not measured in this study (its curves have no "
                     "q_func_z / q_struct_z z-scores), so no timing verdict is given.")
    else:
        parts += _rule_sentences(timing, excluded, cells)
        verdict_parts, readings = _verdict_sentences(verdicts, cells)
        parts += verdict_parts
        if PARAM_MI_WEIGHT in timing:
            control_parts, fe, cal = _control_sentences(study, timing, rng)
            parts += control_parts
        treated = [v for v in readings if v != "inconclusive"]
        if not readings or not treated:
            parts.append("Overall the timing is inconclusive: no λ with the MI penalty gives a "
                         "significant order or a significant co-emergence.")
    success_parts, drop_at = _success_sentences(study, seeds)
    claims, claims_cal = _claims_of(study, seeds)
    parts = (parts[:n_counts] + _claim_sentences(claims, claims_cal) + parts[n_counts:]
             + success_parts)
    return Findings(" ".join(parts), n_trials, n_running, len(seeds), len(timing), measured,
                    verdicts, excluded, cal, fe, drop_at, claims, claims_cal)


def _claims_of(study: StudyData, seeds: pd.DataFrame
               ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
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
    parts.append(f"Claims, each (cell, λ) against the same cell's λ = 0 seeds ({n_cells} "
                 f"treated cell(s), paired by seed, exact signed-rank test, BH per claim, α = {ALPHA:g}): "
                 + "; ".join(words) + ".")
    if cal is not None and len(cal):
        parts.append(f"That paired test rejects {100 * cal['rejected'].max():.1f}% or fewer of "
                     f"no-effect cells of {int(cal['n'].iloc[0])} pairs (normal, heavy-tailed "
                     "and tied synthetic data).")
    return parts


def _count_sentences(study: StudyData, status_counts: pd.Series, n_trials: int,
                     n_seeds: int) -> list[str]:
    """Trial and seed counts, whether the study still runs, failed and diverged trials."""
    parts = []
    n_running = int(status_counts.get("running", 0))
    counts = ", ".join(f"{n} {s}" for s, n in status_counts.items())
    parts.append(f"Study {study.name} ({study.status}) has {n_trials} trial"
                 f"{'' if n_trials == 1 else 's'}{f' ({counts})' if counts else ''} and "
                 f"{n_seeds} analysed seed{'' if n_seeds == 1 else 's'}.")
    if n_running:
        parts.append(f"The study is still running: {n_running} trial(s) have not finished and are "
                     "left out of the statistics below.")
    elif study.status == "running":
        parts.append("The study is still running.")
    n_failed = int(status_counts.get("failed", 0))
    n_diverged = int(status_counts.get("diverged", 0))
    if n_failed or n_diverged:
        parts.append(f"{n_failed} trial(s) failed and {n_diverged} diverged (see Provenance); "
                     "diverged seeds count as unsuccessful.")
    return parts


def _rule_sentences(timing: pd.DataFrame, excluded: pd.DataFrame, cells: list[str]) -> list[str]:
    """The seeds cut short, the onset rule and tests used, and what a verdict cell is."""
    parts = []
    cut = excluded[~excluded["reason"].str.startswith("no z-score")] if len(excluded) \
        else excluded
    if len(cut):
        parts.append(f"{len(cut)} seed(s) of trials cut short ("
                     f"{', '.join(sorted(set(cut['reason'])))}) are excluded from the timing "
                     "statistics (listed in the timing section).")
    z, run = _mode(timing, PARAM_Z, DEFAULT_Z), int(_mode(timing, PARAM_RUN, DEFAULT_RUN))
    parts.append(f"Onset = first evaluation from which the z-score stays >= {z:g} for {run} "
                 f"evaluations; ties are onsets within {TIE_EVALS} evaluation; tests at "
                 f"α = {ALPHA:g} after Benjamini–Hochberg across the λ > 0 rows.")
    others = [k for k in cells if k != PARAM_MI_WEIGHT]
    if others:
        parts.append(f"Verdicts are per cell of {' × '.join(cells)} (BH across the treated "
                     "cells); the per-λ table pooled over "
                     f"{', '.join(others)} is descriptive only.")
    return parts


def _verdict_sentences(verdicts: pd.DataFrame, cells: list[str]) -> tuple[list[str], list[str]]:
    """One sentence per verdict cell (λ = 0 as controls), and the treated cells' verdicts."""
    parts, readings = [], []
    others = [k for k in cells if k != PARAM_MI_WEIGHT]
    for r in verdicts.to_dict("records"):
        lam = r.get(PARAM_MI_WEIGHT, math.nan)
        cell = "".join(f", {k} = {_fmt_value(r[k])}" for k in others)
        counts = (f"{r['n_seeds']} seeds: function first {r['n_func_first']}, structure "
                  f"first {r['n_struct_first']}, tie {r['n_tie']}, neither {r['n_neither']}")
        if lam == 0:
            parts.append(f"λ = 0{cell} (controls, {counts}).")
            continue
        p = r["p_tost_bh"] if r["verdict"] == "co-emergent" else r["p_sign_bh"]
        test = "TOST" if r["verdict"] == "co-emergent" else "sign test"
        where = (f"λ = {lam:g}{cell}" if np.isfinite(lam)
                 else "All seeds (λ not logged)" + cell)
        parts.append(f"{where} ({counts}): {r['verdict']} ({test}, BH-adjusted "
                     f"p = {_p(p)}).")
        readings.append(r["verdict"])
    return parts, readings


def _control_sentences(study: StudyData, timing: pd.DataFrame, rng: np.random.Generator
                       ) -> tuple[list[str], dict | None, Calibration | None]:
    """False emergence of the λ = 0 controls and the calibration on their noise."""
    parts = []
    fe = None
    ctrl = timing[_controls(timing)]
    if len(ctrl):
        fe = false_emergence(ctrl)
        parts.append(
            f"False emergence at λ = 0: q_func_z {fe['func'][0]} of {fe['func'][1]} "
            f"seeds, q_struct_z {fe['struct'][0]} of {fe['struct'][1]} (target <= 5%).")
    cal = study_calibration(study, timing, rng=rng)
    if cal is not None:
        ok = "within" if cal.false_function_first <= cal.alpha else "ABOVE"
        parts.append(
            f"Calibration on this study's λ = 0 noise: identical time courses read as "
            f"'function first' in {100 * cal.false_function_first:.1f}% of "
            f"{cal.n_cells} simulated {cal.n_seeds}-seed cells ({ok} α = "
            f"{cal.alpha:g}).")
    else:
        parts.append("The pipeline is not calibrated on this study's noise (no λ = 0 "
                     "seeds with z-score curves).")
    return parts, fe, cal


def _success_sentences(study: StudyData, seeds: pd.DataFrame) -> tuple[list[str], float | None]:
    """Success and differentiated counts, and the λ at which the median task metric drops."""
    metric, thr = study.success_metric, study.success_threshold
    n_success = int(seeds["success"].astype(bool).sum())
    n_diff = int(seeds["differentiated"].astype(bool).sum())
    parts = []
    parts.append(f"{n_success} of {len(seeds)} seeds succeeded (final {metric} > {thr:g}) and "
                 f"{n_diff} were differentiated (success and final q_struct > 0.1).")
    drop_at = None
    if PARAM_MI_WEIGHT in seeds.columns and f"final.{metric}" in seeds.columns:
        lam = pd.to_numeric(seeds[PARAM_MI_WEIGHT], errors="coerce")
        by_lam = (pd.to_numeric(seeds[f"final.{metric}"], errors="coerce")
                  .groupby(lam).median().dropna().sort_index())
        if len(by_lam) >= 2:
            ref_lam, ref = float(by_lam.index[0]), float(by_lam.iloc[0])
            dropped = by_lam[by_lam < ref - ACCURACY_DROP]
            if len(dropped):
                drop_at = float(dropped.index[0])
                parts.append(
                    f"The median final {metric} starts to drop at λ = {drop_at:g} "
                    f"({dropped.iloc[0]:.3f} against {ref:.3f} at λ = {ref_lam:g}).")
            else:
                parts.append(
                    f"The median final {metric} does not drop over λ = {ref_lam:g} to "
                    f"{float(by_lam.index[-1]):g} (never more than {ACCURACY_DROP:g} below "
                    f"{ref:.3f}).")
    return parts, drop_at


class _Page:
    """Accumulates HTML sections, embedded figures and the files written beside the report."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.body: list[str] = []
        self.files: list[Path] = []

    def h2(self, title: str) -> None:
        self.body.append(f"<h2>{html.escape(title)}</h2>")

    def p(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.body.append(f"<p{c}>{html.escape(text)}</p>")

    def nothing(self, what: str) -> None:
        _log.warning("report: nothing to show for %s.", what)
        self.p(f"Nothing to show: {what}.", "empty")

    def figure(self, fig: Any, name: str, caption: str) -> None:
        png = to_png(fig)
        path = self.out_dir / f"{name}.png"
        path.write_bytes(png)
        self.files.append(path)
        data = base64.b64encode(png).decode("ascii")
        self.body.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)} <span class=\"file\">({path.name})</span>"
            "</figcaption></figure>")

    def table(self, df: pd.DataFrame, name: str | None = None, *, max_rows: int = 200) -> None:
        if name is not None:
            path = self.out_dir / f"{name}.csv"
            df.to_csv(path, index=False)
            self.files.append(path)
        if max_rows > 0:
            shown = df.head(max_rows).to_html(index=False, na_rep="–", border=0, classes="t",
                                              float_format=lambda v: f"{v:.4g}")
            self.body.append(f'<div class="scroll">{shown}</div>')
        if len(df) > max_rows:
            rest = f"{len(df) - max_rows} more rows" if max_rows > 0 else f"{len(df)} rows"
            self.p(f"({rest} in {name}.csv beside this report.)")

    def pre(self, text: str) -> None:
        self.body.append(f"<pre>{html.escape(text)}</pre>")


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em}
.findings{background:#eef6ee;border-left:4px solid #4a4;padding:.6em 1em;font-size:1.05em}
.empty{color:#777;font-style:italic} figure{margin:1em 0} img{max-width:100%}
figcaption{font-size:.9em;color:#555} .file{color:#999}
table.t{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.t td,table.t th{border:1px solid #ddd;padding:2px 6px;text-align:right}
.scroll{overflow-x:auto}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
"""


def build_report(
    study: str | StudyData,
    *,
    tracking_uri: str | None = None,
    out_dir: str | Path | None = None,
    log_to_mlflow: bool = True,
    rng: np.random.Generator | None = None,
) -> Report:
    """Write the study's HTML report, PNG and CSV files, and log them to the study run.

    Args:
        study: a study name (read with :func:`analysis.runs.load_study`) or loaded data.
        tracking_uri: MLflow tracking URI when `study` is a name.
        out_dir: output folder; default ``$STUDY_HOME/reports/<study>/``.
        log_to_mlflow: log the folder as ``report/`` artifacts of the study run.
        rng: generator of the calibration's synthetic curves; default
            ``np.random.default_rng(0)`` so that a report is reproducible.

    Returns:
        The :class:`Report`.
    """
    data = study if isinstance(study, StudyData) else load_study(study, tracking_uri)
    rng = np.random.default_rng(0) if rng is None else rng
    out = Path(out_dir) if out_dir is not None else resolve_study_home() / "reports" / data.name
    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    page = _Page(out)
    notes = list(data.notes)
    fnd = findings(data, rng=rng)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _sections(page, data, fnd, rng)
    for w in caught:
        notes.append(str(w.message))
        _log.warning("%s", w.message)

    head = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Study report: {html.escape(data.name)}</title><style>{_CSS}</style></head>")
    banner = ""
    if data.status == "running" or fnd.n_running:
        banner = (f"<p class=\"banner\">This study is still running ({fnd.n_running} trial(s) "
                  "unfinished): the report shows the trials finished so far.</p>")
    notes_html = ""
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        notes_html = f"<h2>Data notes</h2><ul>{items}</ul>"
    doc = (f"{head}<body><h1>Study report: {html.escape(data.name)}</h1>{banner}"
           f"<h2>Findings</h2><p class=\"findings\" id=\"findings\">{html.escape(fnd.text)}</p>"
           f"{''.join(page.body)}{notes_html}</body></html>")
    path = out / REPORT_FILE
    path.write_text(doc, encoding="utf-8")

    logged = None
    if log_to_mlflow:
        logged = _log_to_study_run(data, [path, *page.files], notes)
    return Report(path, out, page.files, fnd, logged, notes)


def _log_to_study_run(data: StudyData, files: list[Path], notes: list[str]) -> str | None:
    """Log the report's files as the study run's ``report/`` artifacts (only those written now,
    never other files of the output folder); failures are logged, the local report stands."""
    if data.study_run_id is None:
        notes.append("No study run to log the report to.")
        return None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=data.tracking_uri)
    try:
        for f in files:
            client.log_artifact(data.study_run_id, str(f), artifact_path=ARTIFACT_REPORT)
    except Exception as e:  # noqa: BLE001 - the local report is still complete
        _log.warning("report: cannot log the report to run %s: %s", data.study_run_id, e)
        return None
    return data.study_run_id


def _slug(*keys: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9]+", "_", k).strip("_") for k in keys)


def _sections(page: _Page, data: StudyData, fnd: Findings, rng: np.random.Generator) -> None:
    """Verdicts, Kaplan–Meier, calibration, MI audit, phase diagrams, regression, curves,
    Pareto/scatter, tables, and provenance with the spec last (issue 9, item 6)."""
    seeds = analysed_seeds(data)
    metric = data.success_metric
    swept = [k for k in data.swept if k in seeds.columns] or (
        [PARAM_MI_WEIGHT] if PARAM_MI_WEIGHT in seeds.columns else [])
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


def _phase_diagrams(page: _Page, seeds: pd.DataFrame, swept: list[str], metric: str) -> None:
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
            slug = _slug(x, y) if y else _slug(x)
            title = f"{x} × {y}" if y else x
            others = [k for k in swept if k not in (x, y)]
            pooled = f" Pooled over {', '.join(others)}." if others else ""
            page.figure(plot_phase(info, task_metric=metric, title=title), f"phase_{slug}",
                        f"Phase diagram over {title}: per cell the value and the number of "
                        "seeds n (k/n: k seeds where the onset is defined; onset medians are "
                        f"over those k seeds only, see the Kaplan–Meier curves).{pooled}")
            page.table(info.cells, f"phase_{slug}")


def _timing_regression(page: _Page, fnd: Findings, timing: pd.DataFrame,
                       swept: list[str]) -> None:
    """Censored regressions of the onsets on the numeric swept keys."""
    page.h2("Relating timing to the hyperparameters")
    params = [k for k in swept if k in timing and pd.api.types.is_numeric_dtype(timing[k])]
    if not fnd.measured or not len(timing):
        page.nothing("onsets not measured in this study" if not fnd.measured
                     else "no seeds for timing statistics")
    else:
        page.p("Censored regressions over seeds (seeds that did not emerge stay in, censored at "
               "their censoring epoch): Weibull AFT models of t_func and t_struct (coef = change "
               "of log time to emergence per unit; > 0 later) and a logistic regression of "
               "function-first against structure-first. λ is a regressor here, not pooled into "
               "a verdict.")
        page.table(censored_regression(timing, params), "timing_regression")


def _curves(page: _Page, data: StudyData, fnd: Findings, seeds: pd.DataFrame,
            timing: pd.DataFrame, by: str | None) -> None:
    """Modularity curve bands per `by`, then the onsets scatter and the half-rise epochs."""
    page.h2("Modularity curves")
    bands = curve_bands_info(
        data.curves[data.curves["trial_id"].isin(seeds["trial_id"])]
        if len(seeds) else data.curves.iloc[0:0], seeds, by=by,
        metrics=[m for m in ("q_func_z", "q_struct_z", "q_func", "q_struct")
                 if m in data.curves])
    if not len(bands):
        page.nothing("no curves")
    else:
        page.figure(plot_curve_bands(bands, by=by or "all"), "curves",
                    f"Modularity against epoch per {by or 'study'}: median over seeds (line) "
                    "and interquartile range (band).")
        page.table(bands, "curve_bands", max_rows=0)
    if len(timing) and fnd.measured:
        page.figure(plot_onsets(timing, by=by or PARAM_MI_WEIGHT), "onsets",
                    "Onsets of q_struct_z against q_func_z for the seeds where both emerged.")
        page.p("Half-rise epochs (descriptive only: run-length dependent, used by no test) per "
               f"{by or 'study'}:")
        half = timing.groupby(by)[["t_func_half", "t_struct_half"]].median().reset_index() \
            if by else timing[["t_func_half", "t_struct_half"]].median().to_frame().T
        page.table(half, "half_rise")


def _pareto(page: _Page, seeds: pd.DataFrame, metric: str, by: str | None) -> None:
    """Final task metric against q_func per trial (Pareto front), q_func against q_struct."""
    page.h2(f"{metric[:1].upper()}{metric[1:]} against q_func; q_func against q_struct")
    pareto = pareto_info(seeds, task_metric=metric, by=by)
    scatter = scatter_info(seeds, by=by)
    if not len(pareto):
        page.nothing("no trial with final values")
    else:
        page.figure(plot_pareto(pareto, task_metric=metric, by=by or ""), "pareto",
                    f"Median final {metric} against median final q_func per trial, with the "
                    "Pareto front of the two.")
        page.table(pareto, "pareto")
    if len(scatter):
        page.figure(plot_scatter(scatter, by=by or ""), "scatter",
                    "Final q_func against final q_struct per seed.")


def _tables(page: _Page, data: StudyData) -> None:
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


def _claims(page: _Page, fnd: Findings) -> None:
    """The paper's claims per cell against the cell's own λ = 0 seeds, and the test's
    calibration (analysis.claims)."""
    page.h2("Claims per cell")
    if not len(fnd.claims):
        page.nothing("no λ = 0 control in this study, so no claim can be tested against one")
        return
    page.p("Each row: one cell (a value of every other swept key) and one λ > 0, against the "
           "λ = 0 seeds of the same cell, paired by seed (same initialisation and data). "
           "effect = median of treated − control; p: exact two-sided Wilcoxon signed-rank; "
           f"p_bh: Benjamini–Hochberg across the treated cells of the claim; α = {ALPHA:g}. "
           "accuracy holds when all treated seeds but at most one succeed and no significant "
           "drop > 0.02; functional / structural (final q_func_z / q_struct_z) hold when the "
           f"rise is significant and the treated median z > {CLEAR_Z:g}, weak when significant "
           "but not clear; mi (held-out MI excess over its null) holds when it falls "
           "significantly. Cells are never pooled.")
    page.table(fnd.claims, "claims_by_cell")
    if fnd.claims_calibration is not None:
        page.p("Calibration of the paired test: fraction of synthetic no-effect cells (same n) "
               f"it rejects at α = {ALPHA:g}:")
        page.table(fnd.claims_calibration, "claims_calibration")


def _verdicts(page: _Page, data: StudyData, fnd: Findings, timing: pd.DataFrame,
              swept: list[str], by: str | None) -> None:
    """The answer first: the verdict per λ, then per phase cell, and the excluded seeds."""
    page.h2("Timing verdicts")
    if not fnd.n_seeds:
        page.nothing("no finished seeds")
        return
    if not fnd.measured:
        page.nothing("emergence timing not measured in this study (no q_func_z / q_struct_z "
                     "curves)")
        return
    z = _mode(timing, PARAM_Z, DEFAULT_Z)
    run = int(_mode(timing, PARAM_RUN, DEFAULT_RUN))
    step = _mode(timing, PARAM_EVAL_EVERY, math.nan)
    page.p(f"Per seed, the onset of q_func_z (t_func) and of q_struct_z (t_struct) is the first "
           f"evaluation from which the z-score against random partitions of the same sizes "
           f"stays >= {z:g} for {run} consecutive evaluations (emergence.z, emergence.run). "
           f"Onsets within {TIE_EVALS} evaluation are a tie; a seed where only one emerged by "
           "the end counts for that side (censored evidence); neither = no onset. Per group: "
           "exact sign test of function-first against structure-first (ties and neither left "
           f"out), TOST equivalence of the median lag with 0 within ±{MARGIN_EVALS:g} "
           f"evaluations{f' (±{MARGIN_EVALS * step:g} epochs)' if np.isfinite(step) else ''} "
           "for co-emergence, Benjamini–Hochberg across the treated rows of each table, "
           f"α = {ALPHA:g}. λ = 0 rows are controls (raw p, outside the BH family): any "
           "verdict there is a false one.")
    cell_keys = verdict_cells(swept, timing)
    if len(cell_keys) > 1:
        page.p(f"Verdict per cell of {' × '.join(cell_keys)} (BH across the treated cells):")
        page.table(fnd.verdicts, "verdicts_by_cell")
        if by and len(timing):
            page.p(f"Pooled per {by} over {', '.join(k for k in cell_keys if k != by)}: "
                   "descriptive only, not a verdict (the cells of a grid share seed values, "
                   "so pooling counts one seed several times).")
            pooled = verdict_table(timing, [by]).drop(columns=["verdict"])
            page.table(pooled, f"pooled_by_{_slug(by)}")
    else:
        if by:
            page.p(f"Verdict per {by}:")
        page.table(fnd.verdicts, f"verdicts_by_{_slug(by)}" if by else "verdicts")
    if len(fnd.excluded):
        page.p("Seeds excluded from the timing statistics:")
        cols = [c for c in ("trial_id", "seed", "status", "reason") if c in fnd.excluded]
        page.table(fnd.excluded[cols].reset_index(drop=True), "timing_excluded")


def _km(page: _Page, fnd: Findings, timing: pd.DataFrame, by: str | None) -> None:
    """Kaplan–Meier curves of time to emergence per metric and λ."""
    page.h2("Time to emergence (Kaplan–Meier)")
    if not fnd.measured or not len(timing):
        page.nothing("onsets not measured in this study" if not fnd.measured
                     else "no seeds for timing statistics")
        return
    km = km_table(timing, by)
    if not len(km):
        page.nothing("no onsets or censoring epochs")
        return
    page.figure(plot_km(km, by=by or "all"), "kaplan_meier",
                "Fraction of seeds whose z-score has emerged against epoch (Kaplan–Meier; "
                "seeds that did not emerge are censored at their censoring epoch). Legend: "
                "onsets / seeds.")
    med = km.drop_duplicates(["level", "metric"])[["level", "metric", "n", "events", "median"]]
    page.p("Kaplan–Meier median time to emergence (inf: fewer than half emerged):")
    page.table(med.reset_index(drop=True), "kaplan_meier_medians")
    page.table(km, "kaplan_meier", max_rows=0)


def _calibration(page: _Page, fnd: Findings) -> None:
    """The calibration of the whole onset + test pipeline, printed."""
    page.h2("Calibration")
    cal = fnd.calibration
    if fnd.false_emergence:
        fe = fnd.false_emergence
        page.p(f"False-emergence rate at λ = 0 (controls with an onset; target <= 5%): "
               f"q_func_z {fe['func'][0]}/{fe['func'][1]} "
               f"({100 * fe['func'][0] / max(fe['func'][1], 1):.0f}%), q_struct_z "
               f"{fe['struct'][0]}/{fe['struct'][1]} "
               f"({100 * fe['struct'][0] / max(fe['struct'][1], 1):.0f}%).")
    if cal is None:
        page.nothing("no λ = 0 seeds with z-score curves to measure the noise on")
        return
    page.p(f"Synthetic curve pairs with an identical time course and the noise of this study's "
           f"λ = 0 z-scores (AR(1): sd and lag-1 autocorrelation per metric), judged exactly as "
           f"a λ is (z = {cal.z:g}, run = {cal.run}): false 'function first' in "
           f"{100 * cal.false_function_first:.1f}% and false 'structure first' in "
           f"{100 * cal.false_structure_first:.1f}% of {cal.n_cells} cells of {cal.n_seeds} "
           f"seeds (α = {cal.alpha:g}); per seed, {100 * cal.seed_function_first:.1f}% read "
           f"function first and {100 * cal.seed_structure_first:.1f}% structure first. Pure "
           f"noise emerges in {100 * cal.false_emergence_func:.2f}% (q_func_z) and "
           f"{100 * cal.false_emergence_struct:.2f}% (q_struct_z) of simulated curves.")
    page.table(pd.DataFrame([cal._asdict()]), "calibration")


def _mi_audit(page: _Page, data: StudyData) -> None:
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


def _provenance(page: _Page, data: StudyData) -> None:
    """The study's spec, code and library versions, trial counts, failures and dropped runs."""
    page.h2("Provenance")
    trials = data.trials
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    rows = [("study", data.name), ("status", data.status), ("task", data.task or "unknown"),
            ("swept", ", ".join(data.swept) or "none"),
            ("objectives", "; ".join(f"{o.get('direction', '?')} {o.get('metric', '?')}"
                                     if isinstance(o, dict) else str(o) for o in data.objectives)
             or "none"),
            ("git commit", data.tags.get(TAG_COMMIT, "unknown")),
            ("versions", ", ".join(f"{k} {v}" for k, v in data.versions.items()) or "unknown"),
            ("trials", f"{len(trials)} ("
                       f"{', '.join(f'{n} {s}' for s, n in counts.items()) or '-'})"),
            ("seeds", str(len(data.seeds))),
            ("dropped runs", f"{len(data.dropped)} (duplicates or orphans)"),
            ("tracking URI", data.tracking_uri), ("experiment id", data.experiment_id),
            ("study run", data.study_run_id or "none")]
    page.table(pd.DataFrame(rows, columns=["", "value"]))
    bad = trials[trials["status"].isin(["failed", "diverged", "stopped"])] if len(trials) else []
    if len(bad):
        page.p("Trials that did not finish normally:")
        page.table(bad[["trial_id", "run_id", "status", "message"]].reset_index(drop=True),
                   "failures")
    if len(data.dropped):
        page.p("Runs left out:")
        page.table(data.dropped, "dropped_runs")
    if data.spec_text:
        page.p("Study spec (spec.yaml):")
        page.pre(data.spec_text)
