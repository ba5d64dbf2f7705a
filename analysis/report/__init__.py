"""Assemble a study's self-contained HTML report (figures embedded), PNG and CSV files beside it.

Run as ``python -m analysis report STUDY``; the report is also logged under ``report/`` in the
study run's artifacts so it opens from the MLflow UI. It leads with the answer as a picture: the
verdict matrix (each claim per cell, coloured by its verdict, the timing verdicts beside them)
and a findings block of at most 15 sentences. Details follow in collapsible sections: the claims
per cell, the timing verdicts, for adaptive searches the responses, contours and λ → 0 limits,
which hyperparameters matter, the Kaplan–Meier curves, the calibration, the MI audit, the phase
diagrams, the rest, and provenance last.

The package is cut by job: :mod:`~analysis.report.findings` computes the statistics and the
findings paragraph, :mod:`~analysis.report.sections` writes one section of the page each,
:mod:`~analysis.report.page` builds the HTML, and this module ties them together.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.report.findings import ACCURACY_DROP, Findings, analysed_seeds, findings
from analysis.report.page import Page
from analysis.report.sections import write_sections
from analysis.runs import StudyData, load_study, resolve_study_home
from study.contract.artifacts import ARTIFACT_REPORT, REPORT_FILE

__all__ = ["ACCURACY_DROP", "Findings", "Report", "analysed_seeds", "build_report", "findings"]

# onset columns of the report's tables: a value at the first evaluation is a bound ("≤ t")
ONSET_COLUMNS = ("t_func", "t_struct", "t_func_km", "t_struct_km", "t_func_half", "t_struct_half")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """Where a report was written and what it holds."""

    path: Path  # the HTML file
    out_dir: Path
    files: list[Path]  # PNG and CSV files beside it
    findings: Findings
    logged_run_id: str | None  # the study run the report was logged to, None if not logged
    notes: list[str] = field(default_factory=list)


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
    notes = list(data.notes)
    fnd = findings(data, rng=rng)
    page = Page(out, left_censored={c: fnd.first_eval for c in ONSET_COLUMNS})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_sections(page, data, fnd)
    for w in caught:
        notes.append(str(w.message))
        _log.warning("%s", w.message)

    running = data.status == "running" or fnd.n_running > 0
    path = out / REPORT_FILE
    path.write_text(
        page.document(data.name, fnd.text, notes, fnd.n_running if running else None),
        encoding="utf-8",
    )

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
    except Exception as e:
        _log.warning("report: cannot log the report to run %s: %s", data.study_run_id, e)
        return None
    return data.study_run_id
