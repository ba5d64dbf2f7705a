"""Assemble a study's self-contained HTML report (figures embedded), PNG and CSV files beside it.

Run as ``python -m analysis report STUDY``; the report is also logged under ``report/`` in the
study run's artifacts so it opens from the MLflow UI.
"""

from __future__ import annotations

import base64
import html
import itertools
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.emergence import LagSummary, lag_summary, lag_table, rank_correlations
from analysis.figures import (plot_curve_bands, plot_onsets, plot_pareto, plot_phase, plot_scatter,
                              to_png)
from analysis.phase import (axis_labels, curve_bands_info, pareto_info, phase_info, scatter_info)
from analysis.runs import (ARTIFACT_REPORT, PARAM_MI_WEIGHT, TAG_GIT_COMMIT, StudyData,
                           load_study, resolve_study_home)

__all__ = ["ACCURACY_DROP", "Findings", "Report", "build_report", "findings"]

_log = logging.getLogger(__name__)

# A λ "drops accuracy" when its median final task metric is this far below the smallest λ's.
ACCURACY_DROP = 0.02
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Findings:
    """The numbers behind the findings paragraph, and the paragraph itself."""

    text: str  # the paragraph, plain text
    n_trials: int
    n_running: int
    n_seeds: int  # seeds analysed (trials not running)
    n_both: int  # seeds where q_func and q_struct both emerged
    n_func_first: int  # of those, lag > 0
    n_func_only: int  # q_func emerged, q_struct never did
    lag: LagSummary | None  # over the n_both seeds
    accuracy_drop_at: float | None  # smallest λ whose accuracy dropped, None if none / not swept


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


def findings(study: StudyData, *, rng: np.random.Generator) -> Findings:
    """Compute the findings paragraph from the data.

    States the trial and seed counts (and that the study is still running, or that trials failed),
    how many seeds had q_func emerge before q_struct, the median lag with its bootstrap CI and the
    Wilcoxon p-value, the success and differentiated counts, and the smallest λ at which the median
    final task metric falls more than ``ACCURACY_DROP`` below its value at the smallest λ.

    Args:
        study: the loaded study.
        rng: generator of the bootstrap resamples.

    Returns:
        The :class:`Findings`.
    """
    trials, seeds = study.trials, analysed_seeds(study)
    n_trials = len(trials)
    status_counts = trials["status"].value_counts() if n_trials else pd.Series(dtype=int)
    n_running = int(status_counts.get("running", 0))
    parts = []
    counts = ", ".join(f"{n} {s}" for s, n in status_counts.items())
    parts.append(f"Study {study.name} ({study.status}) has {n_trials} trial"
                 f"{'' if n_trials == 1 else 's'}{f' ({counts})' if counts else ''} and "
                 f"{len(seeds)} analysed seed{'' if len(seeds) == 1 else 's'}.")
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
    if not len(seeds):
        parts.append("There are no finished seeds yet, so there is nothing to analyse.")
        return Findings(" ".join(parts), n_trials, n_running, 0, 0, 0, 0, None, None)

    func = seeds["func_emerged"].astype(bool)
    struct = seeds["struct_emerged"].astype(bool)
    lags = seeds["lag"].to_numpy(float)
    both = np.isfinite(lags)
    n_both = int(both.sum())
    n_first = int((lags[both] > 0).sum())
    n_same = int((lags[both] == 0).sum())
    n_func_only = int((func & ~struct).sum())
    parts.append(f"q_func emerged in {int(func.sum())} of {len(seeds)} seeds and q_struct in "
                 f"{int(struct.sum())}.")
    summary = None
    if n_both:
        summary = lag_summary(lags, rng=rng)
        ci = (f"95% bootstrap CI {summary.ci_low:g} to {summary.ci_high:g}"
              if np.isfinite(summary.ci_low) else "no CI from a single seed")
        parts.append(
            f"Of the {n_both} seeds where both emerged, functional modularity came before "
            f"structural in {n_first} ({100 * n_first / n_both:.0f}%), at the same evaluation in "
            f"{n_same} and after it in {n_both - n_first - n_same}; median lag "
            f"t_struct − t_func = {summary.median:g} epochs ({ci}; Wilcoxon signed-rank "
            f"p = {summary.p_value:.2g}, n = {n_both}).")
        thr = (seeds["thr_struct"] - seeds["thr_func"]).to_numpy(float) if {
            "thr_func", "thr_struct"} <= set(seeds.columns) else np.array([])
        thr = thr[np.isfinite(thr)]
        if thr.size:
            parts.append(f"By threshold crossing (first epoch from which Q stays above its chance "
                         f"level plus the noise margin) the median lag is {np.median(thr):g} "
                         f"epochs over {thr.size} seeds.")
    else:
        parts.append("No seed had both q_func and q_struct emerge, so there is no lag to report.")
    if n_func_only:
        parts.append(f"In {n_func_only} more seed(s) q_func emerged and q_struct never did within "
                     "training (structure later than the run, a censored positive lag).")
    metric, thr = study.success_metric, study.success_threshold
    n_success = int(seeds["success"].astype(bool).sum())
    n_diff = int(seeds["differentiated"].astype(bool).sum())
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
    return Findings(" ".join(parts), n_trials, n_running, len(seeds), n_both, n_first,
                    n_func_only, summary, drop_at)


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
        rng: generator of the bootstrap resamples; default ``np.random.default_rng(0)`` so that a
            report is reproducible.

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
    """Provenance, emergence, phase diagrams, curves, Pareto/scatter and tables, in that order."""
    seeds = analysed_seeds(data)
    metric = data.success_metric
    swept = [k for k in data.swept if k in seeds.columns] or (
        [PARAM_MI_WEIGHT] if PARAM_MI_WEIGHT in seeds.columns else [])
    by = PARAM_MI_WEIGHT if PARAM_MI_WEIGHT in seeds.columns else (swept[0] if swept else None)

    _provenance(page, data)

    page.h2("Emergence and lag")
    page.p("Emergence epoch = first evaluation where the metric reaches X_0 + ½(X_end − X_0), "
           "X_end the mean of the last evaluations; a curve that never rises above its noise band "
           "did not emerge and has no epoch. Lag = t_struct − t_func per seed; CIs are percentile "
           "bootstraps of the median; p-values are two-sided Wilcoxon signed-rank tests across "
           "seeds.")
    if not len(seeds):
        page.nothing("no finished seeds")
    else:
        page.figure(plot_onsets(seeds, by=by or "mi.weight"), "onsets",
                    "Half-rise epochs of q_struct against q_func, per seed.")
        if by is not None:
            page.p(f"Lag by {by}:")
            page.table(lag_table(seeds, [by], rng=rng), f"lag_by_{_slug(by)}")
        page.p("Lag by trial:")
        page.table(lag_table(seeds, ["trial_id"], rng=rng), "lag_by_trial")
        params = [k for k in swept if pd.api.types.is_numeric_dtype(seeds[k])]
        if params:
            page.p("Spearman rank correlations over seeds (censored onsets left out):")
            page.table(rank_correlations(seeds, params), "correlations")

    page.h2("Phase diagrams")
    if not len(seeds) or not swept:
        page.nothing("no finished seeds" if not len(seeds) else "no swept hyperparameters")
    else:
        pairs = list(itertools.combinations(swept, 2)) or [(swept[0], None)]
        for x, y in pairs:
            info = phase_info(seeds, x, y, task_metric=metric)
            slug = _slug(x, y) if y else _slug(x)
            title = f"{x} × {y}" if y else x
            others = [k for k in swept if k not in (x, y)]
            pooled = f" Pooled over {', '.join(others)}." if others else ""
            page.figure(plot_phase(info, task_metric=metric, title=title), f"phase_{slug}",
                        f"Phase diagram over {title}: per cell the value and the number of "
                        "seeds n "
                        f"(k/n: k seeds where the onset is defined).{pooled}")
            page.table(info.cells, f"phase_{slug}")
            cell = seeds.assign(_x=axis_labels(seeds, x))
            keys = ["_x"]
            if y:
                cell = cell.assign(_y=axis_labels(seeds, y))
                keys.append("_y")
            lt = lag_table(cell, keys, rng=rng).rename(columns={"_x": x, "_y": y or ""})
            page.p(f"Lag per cell of {title}:")
            page.table(lt, f"lag_phase_{slug}")

    page.h2("Modularity curves")
    bands = curve_bands_info(data.curves[data.curves["trial_id"].isin(seeds["trial_id"])]
                             if len(seeds) else data.curves.iloc[0:0], seeds, by=by)
    if not len(bands):
        page.nothing("no curves")
    else:
        page.figure(plot_curve_bands(bands, by=by or "all"), "curves",
                    f"q_func and q_struct against epoch per {by or 'study'}: median over seeds "
                    "(line) and interquartile range (band).")
        page.table(bands, "curve_bands", max_rows=0)

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

    page.h2("Tables")
    if len(data.trials):
        page.p("Trials:")
        page.table(data.trials, "trials")
    else:
        page.nothing("no trial runs")
    if len(data.seeds):
        page.p("Seeds (CSV beside the report; running trials included there, flagged):")
        page.table(data.seeds, "seeds", max_rows=0)


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
            ("git commit", data.tags.get(TAG_GIT_COMMIT, "unknown")),
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
