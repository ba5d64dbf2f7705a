"""Read one study back from MLflow into tidy pandas tables (docs/run-data.md is the contract).

Every MLflow tag, param, metric and artifact name analysis reads comes from ``study.contract``,
the names' one owner that ``study`` writes by too, and is listed in :data:`READ_NAMES`;
``test_contract_roundtrip.py`` proves by a round trip that ``study`` writes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.contract import names, settings
from study.contract.artifacts import ARTIFACT_CURVES, ARTIFACT_SEEDS, ARTIFACT_SPEC, ARTIFACTS
from study.contract.outcomes import (
    DEFAULT_FINAL_WINDOW,
    DEFAULT_RUN,
    DEFAULT_Z,
    SUCCESS_THRESHOLD,
    TASK_METRIC,
    chance_modularity,
    seed_table,
)
from study.contract.params import (
    PARAM_FINAL_WINDOW,
    PARAM_GROUPS,
    PARAM_HIDDEN,
    PARAM_RUN,
    PARAM_SEED,
    PARAM_SIZES,
    PARAM_Z,
    PARAMS,
)
from study.contract.rise import seed_onset_columns
from study.contract.tags import (
    ROLE_STUDY,
    ROLE_TRIAL,
    STATUSES,
    TAG_MESSAGE,
    TAG_OBJECTIVES,
    TAG_PARENT,
    TAG_ROLE,
    TAG_STATUS,
    TAG_SWEPT,
    TAG_TASK,
    TAG_TRIAL,
    TAG_VERSIONS,
    TAGS,
)

__all__ = [
    "AnalysisInputError",
    "READ_NAMES",
    "StudyData",
    "StudyNotFoundError",
    "analysed_seeds",
    "load_study",
    "resolve_study_home",
    "resolve_tracking_uri",
]

_log = logging.getLogger(__name__)

# ---- run-data contract: every name analysis reads (docs/run-data.md) ---------------------------
# Each name is spelled once, in study.contract (tags, params, artifacts; the curve metrics in
# names), which study writes by; READ_NAMES lists the ones analysis reads.
# Task → (success metric, success if final value > threshold), from study.contract.outcomes (their
# one owner; run-data.md "Who computes what").
TASKS = {task: (m, SUCCESS_THRESHOLD[m]) for task, m in TASK_METRIC.items()}

# The null-referenced and partition-free curve metrics (the MI measurements with their nulls, the
# modularity z-scores, NMIs and found communities), added after the first studies: read when a
# study has them; the report says "not measured in this study" when it does not.
NEW_CURVE_METRICS = (*names.MI_METRICS[2:], *names.MODULARITY_METRICS[4:])
# The curve metrics every study has, in logging order (the task's loss and both task scores,
# the training critic's MI and the plug-in, raw and normalised Q, specialisation).
CURVE_METRICS = tuple(
    m
    for m in (
        names.TASK_LOSS,
        *names.TASK_SCORES,
        *names.MI_METRICS,
        *names.MODULARITY_METRICS,
        *names.SPECIALISATION_METRICS,
    )
    if m not in NEW_CURVE_METRICS
)
SUMMARY_METRICS = (
    "final.success_rate",
    "final.differentiated_rate",
    "t_func",
    "t_struct",
    "lag",
    "t_func_half",
    "t_struct_half",
    "n_seeds",
    "n_func_emerged",
    "n_struct_emerged",
    "n_func_first",
    "n_struct_first",
    "n_tie",
    "n_neither",
    *(f"final.{m}" for m in CURVE_METRICS),
)

CURVE_KEYS = ("seed", "seed_value", "epoch")  # + CURVE_METRICS present
SEED_COLUMNS = (
    "seed",
    "seed_value",
    "success",
    "differentiated",
    "t_func",
    "t_struct",
    "lag",
    "func_emerged",
    "struct_emerged",
    "t_func_censor",
    "t_struct_censor",
    "t_func_half",
    "t_struct_half",
    "first",
    "onsets_measured",
    *seed_onset_columns(),  # the timing onsets (study.contract.rise)
)  # + final.<metric>

READ_NAMES: Mapping[str, tuple[str, ...]] = {
    "tags": TAGS,
    "tag_values": (ROLE_STUDY, ROLE_TRIAL, *STATUSES, *TASKS),
    "params": PARAMS,
    "metrics": CURVE_METRICS + SUMMARY_METRICS,
    "artifacts": ARTIFACTS,
    "curve_columns": CURVE_KEYS + CURVE_METRICS,
    "seed_columns": SEED_COLUMNS + tuple(f"final.{m}" for m in CURVE_METRICS),
    "new_metrics": NEW_CURVE_METRICS,
}
# -----------------------------------------------------------------------------------------------

BASE_SEED_COLUMN = "base_seed"
_MLFLOW_TO_STATUS = {
    "RUNNING": "running",
    "SCHEDULED": "running",
    "FINISHED": "finished",
    "FAILED": "failed",
    "KILLED": "stopped",
}


class AnalysisInputError(ValueError):
    """Bad input to the analysis CLI (a study name, a store): `python -m analysis` exits 2 with
    one line, whereas any other exception is a run-time failure (exit 1)."""


class StudyNotFoundError(AnalysisInputError):
    """The tracking store or the study's experiment does not exist."""


@dataclass(frozen=True)
class StudyData:
    """One study read from MLflow. Tables are tidy; params use their dotted keys as columns.

    ``trials``: one row per kept trial run: ``trial_id``, ``run_id``, ``status`` (the
    ``study.status`` tag, else derived from the MLflow status), ``run_status`` (MLflow),
    ``message``, flags ``diverged``/``failed``/``running``, ``has_curves``, ``has_seeds``,
    ``n_seeds``, ``q_chance``, every param, and the logged summary metrics.
    ``seeds``: one row per (trial, seed): ``trial_id``, ``run_id``, ``seed``, ``seed_value``, the
    trial's status/flags/params, ``final.<metric>``, ``success``, ``differentiated`` and the
    outcome columns of :func:`study.contract.outcomes.seed_table` (recomputed from the curves where
    the logged seeds.parquet predates them).
    ``curves``: one row per (trial, seed, evaluation epoch) with every metric as a column.
    ``dropped``: the duplicate or orphaned runs left out, with the reason.
    """

    name: str
    tracking_uri: str
    experiment_id: str
    study_run_id: str | None
    status: str  # the study run's study.status (or derived), "unknown" without a study run
    tags: dict[str, str]  # the study run's tags
    task: str | None
    swept: list[str]
    trials: pd.DataFrame
    seeds: pd.DataFrame
    curves: pd.DataFrame
    dropped: pd.DataFrame
    spec_text: str | None = None
    notes: list[str] = field(default_factory=list)  # data problems the report should state

    @property
    def success_metric(self) -> str:
        """``accuracy`` (working memory) or ``r2`` (separation)."""
        return TASKS.get(self.task or "", TASKS["working_memory"])[0]

    @property
    def success_threshold(self) -> float:
        """Final success metric must exceed this (0.9 or 0.96)."""
        return TASKS.get(self.task or "", TASKS["working_memory"])[1]

    @property
    def versions(self) -> dict[str, Any]:
        """The ``study.versions`` tag, parsed ({} when absent or malformed)."""
        return _json_or(self.tags.get(TAG_VERSIONS), {})

    @property
    def objectives(self) -> list[Any]:
        """The ``study.objectives`` tag, parsed ([] when absent or malformed)."""
        return _json_or(self.tags.get(TAG_OBJECTIVES), [])


def analysed_seeds(study: StudyData) -> pd.DataFrame:
    """Seeds of trials that are not running any more (running trials have partial curves)."""
    s = study.seeds
    return s[~s["running"].astype(bool)] if "running" in s.columns else s


def resolve_study_home(study_home: str | os.PathLike[str] | None = None) -> Path:
    """``study_home``, else ``$STUDY_HOME``, else ``./studies``, made absolute."""
    if study_home is None:
        return settings.study_home()
    return Path(study_home).expanduser().resolve()


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The argument, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///$STUDY_HOME/mlflow.db``."""
    if tracking_uri:
        return tracking_uri
    env = settings.tracking_uri()
    if env:
        return env
    return f"sqlite:///{resolve_study_home() / 'mlflow.db'}"


def load_study(name: str, tracking_uri: str | None = None) -> StudyData:
    """Read a study's runs, curves and per-seed results from MLflow.

    Trial runs are grouped by ``study.trial_id``; of several runs of one trial (a resume, a
    restore) the FINISHED one is kept, else the latest started, and the rest are dropped as
    duplicates. Trial runs without a trial id, or whose parent is not a study run of this
    experiment, are dropped as orphans. Diverged, failed and still running trials are kept and
    flagged. Per-seed outcomes (finals, onsets, which came first) come from ``seeds.parquet``
    when it is current, else from ``curves.parquet`` through ``study.contract.outcomes``.

    Args:
        name: the study name (= MLflow experiment name).
        tracking_uri: MLflow tracking URI; default from :func:`resolve_tracking_uri`.

    Returns:
        The :class:`StudyData`.

    Raises:
        StudyNotFoundError: when the SQLite store or the experiment does not exist.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"load_study(): name must be a non-empty str, but got {name!r}.")
    uri = resolve_tracking_uri(tracking_uri)
    client, exp = _open_experiment(name, uri)
    runs = _all_runs(client, exp.experiment_id)
    notes: list[str] = []

    study, study_ids = _study_run(runs, notes)
    tags = dict(study["tags"]) if study else {}
    trial_runs = [r for r in runs if r["tags"].get(TAG_ROLE) == ROLE_TRIAL]
    kept, dropped = _dedupe(trial_runs, study_ids)
    task = tags.get(TAG_TASK) or next(
        (r["tags"][TAG_TASK] for r in kept if TAG_TASK in r["tags"]), None
    )
    swept = [str(k) for k in _json_or(tags.get(TAG_SWEPT), [])]

    spec_text, trial_rows, seed_frames, curve_frames = _download(client, study, kept, notes)
    trials = _trials_frame(trial_rows)
    curves = (
        pd.concat(curve_frames, ignore_index=True)
        if curve_frames
        else pd.DataFrame(columns=["trial_id", "run_id", *CURVE_KEYS])
    )
    seeds = _seeds_frame(trials, seed_frames, curves, task)
    status = "unknown"
    if study is not None:
        status = _status(study["tags"].get(TAG_STATUS), study["status"])
    for dotted in swept:
        if _column(dotted) not in trials.columns and len(trials):
            notes.append(f"Swept key {dotted!r} is not a param of the trial runs.")
    return StudyData(
        name=name,
        tracking_uri=uri,
        experiment_id=exp.experiment_id,
        study_run_id=study["run_id"] if study else None,
        status=status,
        tags=tags,
        task=task,
        swept=swept,
        trials=trials,
        seeds=seeds,
        curves=curves,
        dropped=pd.DataFrame(dropped, columns=["run_id", "trial_id", "run_status", "reason"]),
        spec_text=spec_text,
        notes=notes,
    )


def _open_experiment(name: str, uri: str) -> tuple[Any, Any]:
    """An MlflowClient on `uri` and the study's experiment; StudyNotFoundError when the SQLite
    store or the experiment does not exist."""
    from mlflow import MlflowClient  # MLflow only once a study is read

    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if not db.is_file():
            # Opening a missing SQLite store would silently create an empty one.
            raise StudyNotFoundError(
                f"load_study(): no MLflow store at {uri} (file {db} missing)."
            )
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments())
        raise StudyNotFoundError(
            f"load_study(): no study {name!r} in {uri} "
            f"(studies there: {', '.join(known) or 'none'})."
        )
    return client, exp


def _study_run(
    runs: list[dict[str, Any]], notes: list[str]
) -> tuple[dict[str, Any] | None, set[str]]:
    """The latest study run (None without one, noted; several noted) and the ids of all."""
    study_runs = [r for r in runs if r["tags"].get(TAG_ROLE) == ROLE_STUDY]
    study_runs.sort(key=lambda r: r["start_time"])
    study = study_runs[-1] if study_runs else None
    if study is None:
        notes.append("The experiment has no study run (tag study.role = study).")
    elif len(study_runs) > 1:
        notes.append(
            f"{len(study_runs)} study runs found; the latest ({study['run_id']}) is used."
        )
    return study, {r["run_id"] for r in study_runs}


def _download(
    client: Any, study: dict[str, Any] | None, kept: list[dict[str, Any]], notes: list[str]
) -> tuple[str | None, list, list, list]:
    """The spec text of the study run, and per kept trial its row, seeds and curves frames."""
    with tempfile.TemporaryDirectory(prefix="analysis-") as tmp, _quiet_downloads():
        spec_text = None
        if study is not None and _has_artifact(client, study["run_id"], ARTIFACT_SPEC):
            local = client.download_artifacts(study["run_id"], ARTIFACT_SPEC, tmp)
            spec_text = Path(local).read_text()
        trial_rows, seed_frames, curve_frames = [], [], []
        for r in kept:
            row, seeds_df, curves_df = _read_trial(client, r, tmp, notes)
            trial_rows.append(row)
            if seeds_df is not None:
                seed_frames.append(seeds_df)
            if curves_df is not None:
                curve_frames.append(curves_df)
    return spec_text, trial_rows, seed_frames, curve_frames


@contextlib.contextmanager
def _quiet_downloads():
    """Turn off MLflow's per-file download progress bar for the duration (one per artifact)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _all_runs(client: Any, experiment_id: str) -> list[dict[str, Any]]:
    """Every active run of the experiment as a plain dict (search_runs is paged)."""
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            out.append(
                {
                    "run_id": run.info.run_id,
                    "status": run.info.status,
                    "start_time": run.info.start_time or 0,
                    "end_time": run.info.end_time,
                    "tags": dict(run.data.tags),
                    "params": dict(run.data.params),
                    "metrics": dict(run.data.metrics),
                }
            )
        token = page.token
        if not token:
            return out


def _dedupe(trial_runs: list[dict[str, Any]], study_ids: set[str]) -> tuple[list, list]:
    """Keep one run per trial id (FINISHED first, then latest started); the rest are dropped."""
    dropped, by_trial = [], {}
    for r in trial_runs:
        trial_id = r["tags"].get(TAG_TRIAL)
        parent = r["tags"].get(TAG_PARENT)
        if not trial_id:
            dropped.append((r["run_id"], None, r["status"], "orphan: no study.trial_id tag"))
        elif study_ids and parent not in study_ids:
            dropped.append(
                (r["run_id"], trial_id, r["status"], f"orphan: parent {parent} is not a study run")
            )
        else:
            by_trial.setdefault(trial_id, []).append(r)
    kept = []
    for trial_id, group in by_trial.items():
        group.sort(key=lambda r: (r["status"] == "FINISHED", r["start_time"]), reverse=True)
        kept.append(group[0])
        dropped += [
            (r["run_id"], trial_id, r["status"], f"duplicate of run {group[0]['run_id']}")
            for r in group[1:]
        ]
    kept.sort(key=lambda r: (r["start_time"], r["tags"][TAG_TRIAL]))
    return kept, dropped


def _status(tag: str | None, run_status: str) -> str:
    """study.status when it is a known value, else the MLflow run status mapped onto it."""
    derived = _MLFLOW_TO_STATUS.get(run_status, "failed")
    if tag in STATUSES:
        # A run that ended while its tag still says running was killed before it could say why.
        return derived if tag == "running" and derived in ("failed", "stopped") else tag
    return derived


def _has_artifact(client: Any, run_id: str, path: str) -> bool:
    """Whether the run's artifact root lists `path` (a missing artifact root lists nothing)."""
    try:
        return any(f.path == path for f in client.list_artifacts(run_id))
    except Exception as e:
        _log.warning("Cannot list artifacts of run %s: %s", run_id, e)
        return False


def _read_trial(client: Any, r: dict[str, Any], tmp: str, notes: list[str]):
    """The trial's row, its seeds.parquet and curves.parquet frames (None when absent)."""
    tags, run_id = r["tags"], r["run_id"]
    trial_id = tags[TAG_TRIAL]
    status = _status(tags.get(TAG_STATUS), r["status"])
    frames: dict[str, pd.DataFrame | None] = {}
    listed = set()
    try:
        listed = {f.path for f in client.list_artifacts(run_id)}
    except Exception as e:
        notes.append(f"Trial {trial_id}: cannot list artifacts ({e}).")
    for art in (ARTIFACT_SEEDS, ARTIFACT_CURVES):
        frames[art] = None
        if art in listed:
            try:
                local = client.download_artifacts(run_id, art, os.path.join(tmp, run_id))
                frames[art] = pd.read_parquet(local)
            except Exception as e:
                notes.append(f"Trial {trial_id}: cannot read {art} ({e}).")
        elif status in ("finished", "diverged"):
            notes.append(f"Trial {trial_id} ({status}) has no {art}.")
    row: dict[str, Any] = {
        "trial_id": trial_id,
        "run_id": run_id,
        "status": status,
        "run_status": r["status"],
        "message": tags.get(TAG_MESSAGE, ""),
        "start_time": r["start_time"],
        "end_time": r["end_time"],
        "has_curves": frames[ARTIFACT_CURVES] is not None,
        "has_seeds": frames[ARTIFACT_SEEDS] is not None,
        **{_column(k): v for k, v in r["params"].items()},
        **{k: v for k, v in r["metrics"].items() if k in SUMMARY_METRICS},
    }
    seeds_df, curves_df = frames[ARTIFACT_SEEDS], frames[ARTIFACT_CURVES]
    for df in (seeds_df, curves_df):
        if df is not None:
            df.insert(0, "run_id", run_id)
            df.insert(0, "trial_id", trial_id)
    return row, seeds_df, curves_df


def _column(key: str) -> str:
    """DataFrame column of a dotted param key (only `seed` is renamed, it clashes with members)."""
    return BASE_SEED_COLUMN if key == PARAM_SEED else key


def _trials_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Trial rows with numeric params converted and chance levels and flags added."""
    base = [
        "trial_id",
        "run_id",
        "status",
        "run_status",
        "message",
        "start_time",
        "end_time",
        "has_curves",
        "has_seeds",
    ]
    df = pd.DataFrame(rows, columns=None if rows else base)
    for col in df.columns:
        if col not in base and (df[col].dtype == object or pd.api.types.is_string_dtype(df[col])):
            df[col] = _maybe_numeric(df[col])
    df["diverged"] = df["status"].eq("diverged")
    df["failed"] = df["status"].eq("failed")
    df["running"] = df["status"].eq("running")
    df["q_chance"] = [_chance(r) for _, r in df.iterrows()] if len(df) else []
    return df


def _maybe_numeric(col: pd.Series) -> pd.Series:
    """The column as numbers when every present value parses (MLflow params are strings)."""
    try:
        return pd.to_numeric(col)
    except (ValueError, TypeError):
        return col


def _chance(row: pd.Series) -> float:
    """Q's chance level for the trial's partition, NaN when N or K is not logged."""
    n, k = row.get(PARAM_HIDDEN), row.get(PARAM_GROUPS)
    if n is None or k is None or pd.isna(n) or pd.isna(k):
        return math.nan
    sizes = row.get(PARAM_SIZES)
    sizes = _json_or(sizes, None) if isinstance(sizes, str) else None
    try:
        return chance_modularity(int(n), int(k), sizes)
    except ValueError:
        return math.nan


def _json_or(text: Any, default: Any) -> Any:
    """json.loads(text), or `default` when text is missing or not JSON."""
    if not isinstance(text, str) or not text.strip() or text.strip().lower() in ("none", "null"):
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default


def _seeds_frame(
    trials: pd.DataFrame, seed_frames: list[pd.DataFrame], curves: pd.DataFrame, task: str | None
) -> pd.DataFrame:
    """One row per (trial, seed): the logged seeds.parquet where it is current, else the outcomes
    recomputed from the curves by ``study.contract.outcomes.seed_table`` (the one owner), plus the
    trial's params and flags.

    A seeds.parquet is current when it has every column of SEED_COLUMNS (studies written before
    the null-referenced onsets lack ``first`` and the censoring epochs); a trial without one
    (running, or ended before writing it) is summarised from its curves, with the trial's own
    ``train.final_window``, ``emergence.z`` and ``emergence.run``.
    """
    keys = ["trial_id", "seed"]
    by_trial = trials.set_index("trial_id") if len(trials) else pd.DataFrame()
    logged = {f["trial_id"].iloc[0]: f for f in seed_frames if len(f)}
    frames = []
    curve_groups = dict(tuple(curves.groupby("trial_id", sort=False))) if len(curves) else {}
    for trial_id in dict.fromkeys([*logged, *curve_groups]):
        f = logged.get(trial_id)
        if f is not None and set(SEED_COLUMNS) <= set(f.columns):
            frames.append(f)
            continue
        c = curve_groups.get(trial_id)
        if c is None:
            if f is not None:
                frames.append(f)
            continue
        row = by_trial.loc[trial_id] if trial_id in by_trial.index else pd.Series(dtype=object)
        table = seed_table(
            c.drop(columns=["trial_id", "run_id"]),
            task=task,
            final_window=int(_param(row, PARAM_FINAL_WINDOW, DEFAULT_FINAL_WINDOW)),
            z=float(_param(row, PARAM_Z, DEFAULT_Z)),
            run=int(_param(row, PARAM_RUN, DEFAULT_RUN)),
            metrics=[m for m in c.columns if m not in ("trial_id", "run_id", *CURVE_KEYS)],
        )
        table.insert(0, "run_id", c["run_id"].iloc[0])
        table.insert(0, "trial_id", trial_id)
        frames.append(table)
    base = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["trial_id", "run_id", "seed"])
    )
    base = base.drop_duplicates(keys, keep="first").reset_index(drop=True)
    for col in ("func_emerged", "struct_emerged", "onsets_measured", "success", "differentiated"):
        base[col] = (
            base[col].astype("boolean").fillna(False).astype(bool) if col in base else False
        )
    for col in (
        "t_func",
        "t_struct",
        "lag",
        "t_func_censor",
        "t_struct_censor",
        "t_func_half",
        "t_struct_half",
    ):
        if col not in base:
            base[col] = np.nan
    if "first" not in base:
        base["first"] = "neither"
    for col in seed_onset_columns():  # a study without curves to recompute them from
        if col not in base:
            base[col] = None if col.endswith(".status") else np.nan
    if not len(trials):
        return base
    trial_cols = ["trial_id"] + [
        c for c in trials.columns if c not in base.columns and c not in SUMMARY_METRICS
    ]
    out = base.drop(columns=["run_id"], errors="ignore").merge(
        trials[trial_cols + ["run_id"]], on="trial_id", how="left"
    )
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _param(row: pd.Series, key: str, default: Any) -> Any:
    """A trial's param value, or `default` when it is not logged (older studies)."""
    v = row.get(key) if len(row) else None
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        return default
