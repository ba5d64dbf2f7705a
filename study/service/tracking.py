"""MLflow side of the run-data contract (docs/run-data.md): experiments, study and trial runs.

Everything goes through an explicit `MlflowClient(tracking_uri)`, never the fluent API's global
active run, so trials running as threads or processes of Ray cannot log into each other's runs.
A trial run is found again by its `study.trial_id` tag, so resumed trials never duplicate runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from study.contract import settings
from study.contract.artifacts import ARTIFACT_REPORT, ARTIFACT_SPEC, REPORT_FILE

# the tags of the contract (docs/run-data.md), spelled once for study and analysis
from study.contract.tags import (
    ROLE_STUDY,
    ROLE_TRIAL,
    TAG_COMMIT,
    TAG_MESSAGE,
    TAG_NAME,
    TAG_OBJECTIVES,
    TAG_PARENT,
    TAG_ROLE,
    TAG_STATUS,
    TAG_SWEPT,
    TAG_TASK,
    TAG_TRIAL,
    TAG_VERSIONS,
)

__all__ = [
    "study_home",
    "default_tracking_uri",
    "default_optuna_storage",
    "StudyTracker",
    "TrialTracker",
    "git_commit",
    "versions",
    "TAG_ROLE",
    "TAG_NAME",
    "TAG_TRIAL",
    "TAG_STATUS",
    "TAG_TASK",
    "TAG_SWEPT",
    "TAG_OBJECTIVES",
    "TAG_COMMIT",
    "TAG_VERSIONS",
    "TAG_MESSAGE",
    "TAG_PARENT",
    "ROLE_STUDY",
    "ROLE_TRIAL",
    "TRIALS_VIEW",
    "trial_run_name",
    "filter_literal",
    "secure_store",
    "write_summary",
    "read_summary",
    "SUMMARY_FILE",
]

log = logging.getLogger("study.service.tracking")

# tags the MLflow UI reads (mlflow 3.17, found in its JS bundle): the experiment kind picks the
# view ("custom_model_development" = classic training runs, not the GenAI traces view); a note is
# the experiment's / run's description (markdown); a shared view state is a saved runs-table view
# (columns, filter, sort) that the "Views" menu lists and `?viewStateShareKey=<id>` opens
TAG_KIND = "mlflow.experimentKind"
KIND_TRAINING = "custom_model_development"
TAG_NOTE = "mlflow.note.content"
TAG_VIEW_PREFIX = "mlflow.sharedViewState."
TRIALS_VIEW = "trials"  # id of the saved view of the trial runs
REPORT_ARTIFACT = f"{ARTIFACT_REPORT}/{REPORT_FILE}"  # where `analysis report` logs it

# study.status -> MLflow run status
_RUN_STATUS = {
    "finished": "FINISHED",
    "diverged": "FINISHED",
    "failed": "FAILED",
    "stopped": "KILLED",
}


def study_home() -> Path:
    """STUDY_HOME made absolute (default ./studies), so Ray workers and jobs in temporary
    working directories all write to the same place."""
    return settings.study_home()


def default_tracking_uri(home: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI, else the SQLite store STUDY_HOME/mlflow.db."""
    return settings.tracking_uri() or f"sqlite:///{(home or study_home()) / 'mlflow.db'}"


def default_optuna_storage(home: Path | None = None) -> str:
    """STUDY_OPTUNA_STORAGE, else the SQLite storage STUDY_HOME/optuna.db."""
    return settings.optuna_storage() or f"sqlite:///{(home or study_home()) / 'optuna.db'}"


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        commit = out.stdout.strip()
        if out.returncode == 0 and commit:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd or Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return settings.git_commit()


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "ray", "optuna", "mlflow", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "postgresql:", "mysql:", "mssql:"))


def filter_literal(value: str) -> str:
    """`value` as a string literal of an MLflow filter. MLflow's filter grammar has no escape
    character, so the literal is quoted with whichever quote it does not contain; a value
    holding both quotes is refused (ValueError) rather than pasted into the filter."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(
        f"cannot search MLflow for a value holding both quote characters: {value[:80]!r}"
    )


SUMMARY_FILE = "summary.json"  # a trial's provisional summary, beside its outputs


def secure_store(uri: str) -> None:
    """chmod 0600 a SQLite store (and its -wal/-shm files) named by a URI: runs, params and the
    Optuna study are nobody else's business on a shared machine. Other URIs: nothing to do."""
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])  # sqlite:////abs -> /abs
    for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        try:
            if f.is_file():
                f.chmod(0o600)
        except OSError:
            pass  # not ours to change (a shared store set up by someone else)


_CLIENTS: dict[str, MlflowClient] = {}


def _client(uri: str) -> MlflowClient:
    """One MlflowClient per tracking URI in a process: a trial process that runs trial after
    trial (Tune's reused actors) checks the store's schema once, not once per trial."""
    client = _CLIENTS.get(uri)
    if client is None:
        client = _CLIENTS[uri] = MlflowClient(uri)
    return client


def _finite_metrics(values: Mapping[str, float], step: int, ts: int) -> list[Metric]:
    return [
        Metric(k, float(v), ts, step)
        for k, v in values.items()
        if v is not None and math.isfinite(float(v))
    ]


def _chunks(items: Sequence[Any], n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def write_summary(directory: Path, step: int, summary: Mapping[str, float]) -> Path:
    """DIRECTORY/summary.json: the provisional summary at `step` (finite values only)."""
    path = Path(directory) / SUMMARY_FILE
    data = {
        "step": int(step),
        "metrics": {
            k: float(v) for k, v in summary.items() if v is not None and math.isfinite(float(v))
        },
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # a killed trial never leaves half a file
    return path


def read_summary(directory: Path) -> tuple[int, dict[str, float]] | None:
    """(step, metrics) from DIRECTORY/summary.json, or None if absent or unreadable."""
    try:
        data = json.loads((Path(directory) / SUMMARY_FILE).read_text())
        return int(data["step"]), {str(k): float(v) for k, v in data["metrics"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class StudyTracker:
    """Driver side: the study's experiment and its parent run.

    Args:
        tracking_uri: MLflow URI (sqlite:///... for the embedded default, http://... for a server).
        name: the study (= experiment) name.
        artifact_root: where artifacts go for a database URI without a server (an absolute
            folder under STUDY_HOME; a relative ./mlruns would land in Ray's temporary folders).
    """

    def __init__(self, tracking_uri: str, name: str, artifact_root: Path | None = None):
        self.uri, self.name = tracking_uri, name
        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(name)
        secure_store(tracking_uri)
        if exp is None:
            location = None
            if _is_local_store(tracking_uri) and artifact_root is not None:
                location = (Path(artifact_root) / name).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(name, artifact_location=location)
        else:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            self.experiment_id = exp.experiment_id
        # older studies get the tag too, so every study opens on its runs
        self.client.set_experiment_tag(self.experiment_id, TAG_KIND, KIND_TRAINING)
        self.run_id: str | None = None

    def find_study_run(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_ROLE}` = '{ROLE_STUDY}'",
            order_by=["attributes.start_time ASC"],
            max_results=10,
        )
        return runs[0].info.run_id if runs else None

    def start(
        self,
        *,
        tags: Mapping[str, str],
        params: Mapping[str, Any] = (),
        spec_text: str | None = None,
    ) -> str:
        """Create the study run, or reuse the existing one (a resumed study)."""
        run_id = self.find_study_run()
        all_tags = {TAG_ROLE: ROLE_STUDY, TAG_NAME: self.name, TAG_STATUS: "running", **tags}
        if run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=self.name, tags=all_tags)
            run_id = run.info.run_id
            if params:
                self.client.log_batch(
                    run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()]
                )
            if spec_text is not None:
                self.client.log_text(run_id, spec_text, ARTIFACT_SPEC)
        else:
            self.client.update_run(run_id, status="RUNNING")
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in all_tags.items()])
        self.run_id = run_id
        swept = json.loads(all_tags.get(TAG_SWEPT, "[]"))
        objectives = json.loads(all_tags.get(TAG_OBJECTIVES, "[]"))
        self.describe(
            swept,
            [o["metric"] for o in objectives],
            ascending=bool(objectives) and objectives[0]["direction"] == "minimize",
        )
        return run_id

    def describe(
        self, swept: Sequence[str], objectives: Sequence[str] = (), *, ascending: bool = False
    ) -> None:
        """What the MLflow UI shows without any set-up: the experiment's description with links
        to a saved "Trials" view (one row per trial: swept parameters, summary metrics, status)
        and to the report, and the study run's description linking the report artifact."""
        eid, rid = self.experiment_id, self.run_id
        # `workflowType=machine_learning`: MLflow 3.17 picks GenAI or training views from a
        # browser-wide switch (default GenAI), not from the experiment's kind tag
        ml = "workflowType=machine_learning"
        view = f"#/experiments/{eid}/runs?{ml}&viewStateShareKey={TRIALS_VIEW}"
        run = f"#/experiments/{eid}/runs/{rid}"
        report = f"{run}/artifacts/{REPORT_ARTIFACT}?{ml}"
        self.client.set_experiment_tag(
            eid, TAG_VIEW_PREFIX + TRIALS_VIEW, trials_view(swept, objectives, ascending=ascending)
        )
        sweeps = ", ".join(f"`{k}`" for k in swept) or "nothing"
        self.client.set_experiment_tag(
            eid,
            TAG_NOTE,
            (
                f"Study **{self.name}**: [trials table]({view}) · [study run]({run}?{ml}) · "
                f"[report]({report})\n\n"
                f"Sweeps {sweeps}. The trials table (also under *Views*) has one row per trial: "
                "swept parameters, `final.q_func`, `final.q_struct`, `final.success_rate`, "
                "emergence epochs `t_func`, `t_struct`, `lag` and `study.status`. The report is "
                f"written by `python -m analysis report {self.name}`."
            ),
        )
        self.client.set_tag(
            rid,
            TAG_NOTE,
            (
                f"Study run of **{self.name}**: [open the report]({report}) (artifacts `report/`: "
                f"HTML, PNG, CSV; written by `python -m analysis report {self.name}`) · "
                f"[trials table]({view}). The trials are this run's child runs."
            ),
        )

    def trial_runs(self) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_ROLE}` = '{ROLE_TRIAL}'",
            max_results=50000,
        )

    def close_orphans(self, reasons: Mapping[str, str] = {}) -> int:
        """End the trial runs still RUNNING once the study's Tuner has returned (no trial of the
        study runs any more); returns how many.

        Each is marked KILLED with status `stopped` and the reason REASONS gives for its trial
        id (default: it was no longer running), so the UI never shows a trial as running
        forever after a scheduler stopped it or its process crashed.
        """
        n = 0
        for run in self.trial_runs():
            if run.info.status != "RUNNING":
                continue
            reason = reasons.get(
                run.data.tags.get(TAG_TRIAL, ""),
                "closed by the driver: the trial was no longer running",
            )
            self.client.set_tag(run.info.run_id, TAG_STATUS, "stopped")
            self.client.set_tag(run.info.run_id, TAG_MESSAGE, reason)
            self.client.set_terminated(run.info.run_id, "KILLED")
            n += 1
        return n

    def complete_summaries(self, trials_dir: Path) -> int:
        """Log, once, the provisional summary (TRIALS_DIR/<trial id>/summary.json) of every trial
        run that holds no summary metric: trials a scheduler stopped (killed, no `finally` ran)
        and trials that failed for good. Returns how many runs got one."""
        n = 0
        for run in self.trial_runs():
            if any(k.startswith("final.") for k in run.data.metrics):
                continue
            trial_id = run.data.tags.get(TAG_TRIAL, "")
            saved = read_summary(Path(trials_dir) / trial_id) if trial_id else None
            if saved is None:
                continue
            step, metrics = saved
            batch = _finite_metrics(metrics, step, int(time.time() * 1000))
            for chunk in _chunks(batch, 1000):
                self.client.log_batch(run.info.run_id, metrics=chunk)
            n += 1
        return n

    def finish(self, status: str = "finished", message: str = "") -> None:
        if self.run_id is None:
            return
        self.client.set_tag(self.run_id, TAG_STATUS, status)
        if message:
            self.client.set_tag(self.run_id, TAG_MESSAGE, message[:5000])
        self.client.set_terminated(self.run_id, _RUN_STATUS.get(status, "FINISHED"))


def trials_view(
    swept: Sequence[str], objectives: Sequence[str] = (), *, ascending: bool = False
) -> str:
    """A saved runs-table view (the JSON envelope the MLflow 3.17 UI stores in an experiment tag
    `mlflow.sharedViewState.<id>`): trial runs only (a filter also lists them flat instead of
    folded under the study run), sorted by the first objective, with the swept parameters, the
    summary metrics and the trial's status as columns (`ascending` for a minimised objective)."""
    metrics = list(
        dict.fromkeys(
            [
                *objectives,
                "final.q_func",
                "final.q_struct",
                "final.success_rate",
                "t_func",
                "t_struct",
                "lag",
            ]
        )
    )
    columns = (
        [f"params.`{k}`" for k in swept]
        + [f"metrics.`{m}`" for m in metrics]
        + [f"tags.`{TAG_STATUS}`"]
    )
    state = {
        "searchFilter": f"tags.`{TAG_ROLE}` = '{ROLE_TRIAL}'",
        "orderByKey": f"metrics.`{metrics[0]}`",
        "orderByAsc": ascending,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": {},
        "runsHiddenMode": "SHOW_ALL",
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": False,
        "groupBy": None,
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "globalLineChartConfig": {
            "xAxisKey": "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": "",
        },
    }
    now = int(time.time() * 1000)
    return json.dumps(
        {"name": "Trials", "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    )


def trial_run_name(trial_id: str, swept: Mapping[str, Any]) -> str:
    """A trial run's name: its swept values first (the runs table always shows the name column),
    then the trial id, e.g. `mi.weight=0.1 partition.groups=2 · 3f2a1_00004`."""
    values = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in swept.items()
    )
    return f"{values} · {trial_id}" if values else trial_id


class TrialTracker:
    """Worker side: one trial's child run, found again by its trial id when a trial resumes."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str | None,
        trial_id: str,
        *,
        study_name: str,
        task: str,
        params: Mapping[str, Any],
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ):
        self.client = _client(tracking_uri)
        self.trial_id = trial_id
        existing = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_TRIAL}` = {filter_literal(trial_id)}",
            order_by=["attributes.start_time DESC"],
            max_results=10,
        )
        self.resumed = bool(existing)
        if existing:
            self.run_id = existing[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, TAG_STATUS, "running")
            for dup in existing[1:]:  # never leave duplicates open
                if dup.info.status == "RUNNING":
                    self.client.set_tag(dup.info.run_id, TAG_STATUS, "stopped")
                    self.client.set_terminated(dup.info.run_id, "KILLED")
        else:
            run_tags = {
                TAG_ROLE: ROLE_TRIAL,
                TAG_NAME: study_name,
                TAG_TRIAL: trial_id,
                TAG_STATUS: "running",
                TAG_TASK: task,
                **(tags or {}),
            }
            if parent_run_id:
                run_tags[TAG_PARENT] = parent_run_id
            run = self.client.create_run(
                experiment_id, run_name=run_name or trial_id, tags=run_tags
            )
            self.run_id = run.info.run_id
            plist = [
                Param(k, json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v))
                for k, v in params.items()
            ]
            for chunk in _chunks(plist, 100):
                self.client.log_batch(self.run_id, params=chunk)
        self.last_step = self._last_logged_step() if self.resumed else -1

    def _last_logged_step(self) -> int:
        hist = self.client.get_metric_history(self.run_id, "task_loss")
        return max((m.step for m in hist), default=-1)

    def log_eval(self, epoch: int, means: Mapping[str, float]) -> None:
        """Across-seed means at one evaluation (step = epoch); epochs already logged are skipped,
        so a trial resumed from an older checkpoint does not write points twice."""
        if epoch <= self.last_step:
            return
        metrics = _finite_metrics(means, epoch, int(time.time() * 1000))
        for chunk in _chunks(metrics, 1000):
            self.client.log_batch(self.run_id, metrics=chunk)
        self.last_step = epoch

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_outputs(self, outputs: Sequence[Path], root: Path | None) -> None:
        for path in outputs:
            rel = path.parent.relative_to(root) if root is not None else None
            self.client.log_artifact(
                self.run_id, str(path), None if rel in (None, Path(".")) else str(rel)
            )

    def log_progress(
        self, epoch: int, summary: Mapping[str, float], outputs: Sequence[Path], root: Path | None
    ) -> None:
        """The current trial outputs as artifacts, and the provisional summary written to
        ROOT/summary.json (not to MLflow: summary metrics are logged once, by `finish`, or by
        the driver's `StudyTracker.complete_summaries` for a trial that never finished)."""
        if root is not None:
            write_summary(Path(root), epoch, summary)
        self.log_outputs(outputs, root)

    def log_summary(
        self, step: int, summary: Mapping[str, float], tags: Mapping[str, str] = {}
    ) -> int:
        """Log the summary metrics at `step` (and TAGS, in the same request), skipping every
        metric the run already holds with the same value (a resumed run that ends where it ended
        before logs nothing twice; a run this tracker created holds none, so it is not read).
        Returns how many metrics were logged."""
        have = self.client.get_run(self.run_id).data.metrics if self.resumed and summary else {}
        fresh = {k: v for k, v in summary.items() if k not in have or have[k] != float(v)}
        metrics = _finite_metrics(fresh, step, int(time.time() * 1000))
        batches = list(_chunks(metrics, 1000)) or [[]]
        for i, chunk in enumerate(batches):
            extra = [RunTag(k, v) for k, v in tags.items()] if i == len(batches) - 1 else []
            if chunk or extra:
                self.client.log_batch(self.run_id, metrics=chunk, tags=extra)
        return len(metrics)

    def finish(
        self,
        status: str,
        *,
        summary: Mapping[str, float] = (),
        step: int = 0,
        outputs: Sequence[Path] = (),
        root: Path | None = None,
        message: str = "",
    ) -> None:
        """Summary metrics (once), artifacts, status tag and the run's end state. A `failed`
        run keeps its summary in ROOT/summary.json only: a retry of the trial logs the real one.
        The status and message tags go with the last batch of summary metrics, so a reader
        never sees a final status without the summary."""
        self.log_progress(step, summary, outputs, root)
        tags = {TAG_STATUS: status, TAG_MESSAGE: message[:5000]}
        self.log_summary(step, summary if status != "failed" else {}, tags)
        self.client.set_terminated(self.run_id, _RUN_STATUS.get(status, "FAILED"))
