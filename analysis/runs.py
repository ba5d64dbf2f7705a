"""Read one study back from MLflow into tidy pandas tables (docs/run-data.md is the contract).

Every MLflow tag, param, metric and artifact name analysis reads is declared in the block below and
nowhere else; ``tests/test_contract.py`` compares it with what ``study`` writes.
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

from analysis.emergence import chance_modularity, seed_onsets

__all__ = [
    "READ_NAMES",
    "StudyData",
    "StudyNotFoundError",
    "load_study",
    "resolve_study_home",
    "resolve_tracking_uri",
]

_log = logging.getLogger(__name__)

# ---- run-data contract: every name analysis reads (docs/run-data.md) ---------------------------
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own parent/child link
TAG_ROLE = "study.role"
ROLE_STUDY, ROLE_TRIAL = "study", "trial"
TAG_NAME = "study.name"
TAG_TRIAL_ID = "study.trial_id"
TAG_STATUS = "study.status"
STATUSES = ("running", "finished", "diverged", "failed", "stopped")
TAG_TASK = "study.task"
TAG_SWEPT = "study.swept"  # JSON list of dotted keys
TAG_OBJECTIVES = "study.objectives"  # JSON list of {"metric", "direction"}
TAG_GIT_COMMIT = "study.git_commit"
TAG_VERSIONS = "study.versions"  # JSON object
TAG_MESSAGE = "study.message"
# Task → (success metric, success if final value > threshold); run-data.md "Summary".
TASKS = {"working_memory": ("accuracy", 0.9), "chaos_separation": ("r2", 0.96)}
DIFFERENTIATED_Q_STRUCT = 0.1  # differentiated = success and final q_struct > 0.1 (method.md §11)

PARAM_HIDDEN = "network.hidden"  # N
PARAM_GROUPS = "partition.groups"  # K
PARAM_SIZES = "partition.sizes"  # optional JSON list of group sizes
PARAM_MI_WEIGHT = "mi.weight"  # λ
PARAM_SEEDS = "seeds"  # S, networks per trial
PARAM_SEED = "seed"  # base seed; its column is renamed BASE_SEED_COLUMN (clashes with `seed`)
PARAM_FINAL_WINDOW = "train.final_window"  # evaluations averaged into a final value, default 3
PARAM_EPOCHS = "train.epochs"
DEFAULT_FINAL_WINDOW = 3

CURVE_METRICS = ("task_loss", "accuracy", "r2", "mi", "mi_gauss", "q_func", "q_struct",
                 "q_func_norm", "q_struct_norm", "d_in", "d_out", "d_corr")
CURVE_METRICS += ("mi_gauss_null", "mi_heldout", "mi_heldout_null")  # MI audit (issue 8)
SUMMARY_METRICS = ("final.success_rate", "final.differentiated_rate", "t_func", "t_struct", "lag",
                   "n_seeds", "n_func_emerged", "n_struct_emerged", "n_lag_positive",
                   *(f"final.{m}" for m in CURVE_METRICS))

ARTIFACT_CURVES = "curves.parquet"
ARTIFACT_SEEDS = "seeds.parquet"
ARTIFACT_SPEC = "spec.yaml"  # on the study run
ARTIFACT_REPORT = "report"  # folder on the study run that analysis writes
CURVE_KEYS = ("seed", "seed_value", "epoch")  # + CURVE_METRICS present
SEED_COLUMNS = ("seed", "seed_value", "success", "differentiated", "t_func", "t_struct", "lag",
                "func_emerged", "struct_emerged")  # + final.<metric>

READ_NAMES: Mapping[str, tuple[str, ...]] = {
    "tags": (TAG_PARENT, TAG_ROLE, TAG_NAME, TAG_TRIAL_ID, TAG_STATUS, TAG_TASK, TAG_SWEPT,
             TAG_OBJECTIVES, TAG_GIT_COMMIT, TAG_VERSIONS, TAG_MESSAGE),
    "tag_values": (ROLE_STUDY, ROLE_TRIAL, *STATUSES, *TASKS),
    "params": (PARAM_HIDDEN, PARAM_GROUPS, PARAM_SIZES, PARAM_MI_WEIGHT, PARAM_SEEDS, PARAM_SEED,
               PARAM_FINAL_WINDOW, PARAM_EPOCHS),
    "metrics": CURVE_METRICS + SUMMARY_METRICS,
    "artifacts": (ARTIFACT_CURVES, ARTIFACT_SEEDS, ARTIFACT_SPEC, ARTIFACT_REPORT),
    "curve_columns": CURVE_KEYS + CURVE_METRICS,
    "seed_columns": SEED_COLUMNS + tuple(f"final.{m}" for m in CURVE_METRICS),
}
# -----------------------------------------------------------------------------------------------

BASE_SEED_COLUMN = "base_seed"
_MLFLOW_TO_STATUS = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished",
                     "FAILED": "failed", "KILLED": "stopped"}


class StudyNotFoundError(ValueError):
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
    emergence columns of :func:`analysis.emergence.seed_onsets` (recomputed from the curves).
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


def resolve_study_home(study_home: str | os.PathLike[str] | None = None) -> Path:
    """``study_home``, else ``$STUDY_HOME``, else ``./studies``, made absolute."""
    home = study_home if study_home is not None else os.environ.get("STUDY_HOME", "studies")
    return Path(home).expanduser().resolve()


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The argument, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///$STUDY_HOME/mlflow.db``."""
    if tracking_uri:
        return tracking_uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{resolve_study_home() / 'mlflow.db'}"


def load_study(name: str, tracking_uri: str | None = None) -> StudyData:
    """Read a study's runs, curves and per-seed results from MLflow.

    Trial runs are grouped by ``study.trial_id``; of several runs of one trial (a resume, a
    restore) the FINISHED one is kept, else the latest started, and the rest are dropped as
    duplicates. Trial runs without a trial id, or whose parent is not a study run of this
    experiment, are dropped as orphans. Diverged, failed and still running trials are kept and
    flagged. Emergence epochs are recomputed from ``curves.parquet`` with the chance level of each
    trial's partition; final values come from ``seeds.parquet`` (else the curves).

    Args:
        name: the study name (= MLflow experiment name).
        tracking_uri: MLflow tracking URI; default from :func:`resolve_tracking_uri`.

    Returns:
        The :class:`StudyData`.

    Raises:
        StudyNotFoundError: when the SQLite store or the experiment does not exist.
    """
    from mlflow import MlflowClient

    if not isinstance(name, str) or not name:
        raise TypeError(f"load_study(): name must be a non-empty str, but got {name!r}.")
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.is_file():
            # Opening a missing SQLite store would silently create an empty one.
            raise StudyNotFoundError(
                f"load_study(): no MLflow store at {uri} (file {db} missing).")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments())
        raise StudyNotFoundError(
            f"load_study(): no study {name!r} in {uri} "
            f"(studies there: {', '.join(known) or 'none'})."
        )
    runs = _all_runs(client, exp.experiment_id)
    notes: list[str] = []

    study_runs = [r for r in runs if r["tags"].get(TAG_ROLE) == ROLE_STUDY]
    study_runs.sort(key=lambda r: r["start_time"])
    study = study_runs[-1] if study_runs else None
    if study is None:
        notes.append("The experiment has no study run (tag study.role = study).")
    elif len(study_runs) > 1:
        notes.append(
            f"{len(study_runs)} study runs found; the latest ({study['run_id']}) is used.")
    tags = dict(study["tags"]) if study else {}
    study_ids = {r["run_id"] for r in study_runs}

    trial_runs = [r for r in runs if r["tags"].get(TAG_ROLE) == ROLE_TRIAL]
    kept, dropped = _dedupe(trial_runs, study_ids)
    task = tags.get(TAG_TASK) or next(
        (r["tags"][TAG_TASK] for r in kept if TAG_TASK in r["tags"]), None)
    swept = [str(k) for k in _json_or(tags.get(TAG_SWEPT), [])]
    metric, threshold = TASKS.get(task or "", TASKS["working_memory"])

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

    trials = _trials_frame(trial_rows)
    curves = (pd.concat(curve_frames, ignore_index=True) if curve_frames
              else pd.DataFrame(columns=["trial_id", "run_id", *CURVE_KEYS]))
    seeds = _seeds_frame(trials, seed_frames, curves, metric, threshold)
    status = "unknown"
    if study is not None:
        status = _status(study["tags"].get(TAG_STATUS), study["status"])
    for dotted in swept:
        if _column(dotted) not in trials.columns and len(trials):
            notes.append(f"Swept key {dotted!r} is not a param of the trial runs.")
    return StudyData(
        name=name, tracking_uri=uri, experiment_id=exp.experiment_id,
        study_run_id=study["run_id"] if study else None, status=status, tags=tags, task=task,
        swept=swept, trials=trials, seeds=seeds, curves=curves,
        dropped=pd.DataFrame(dropped, columns=["run_id", "trial_id", "run_status", "reason"]),
        spec_text=spec_text, notes=notes,
    )


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
            out.append({"run_id": run.info.run_id, "status": run.info.status,
                        "start_time": run.info.start_time or 0, "end_time": run.info.end_time,
                        "tags": dict(run.data.tags), "params": dict(run.data.params),
                        "metrics": dict(run.data.metrics)})
        token = page.token
        if not token:
            return out


def _dedupe(trial_runs: list[dict[str, Any]], study_ids: set[str]) -> tuple[list, list]:
    """Keep one run per trial id (FINISHED first, then latest started); the rest are dropped."""
    dropped, by_trial = [], {}
    for r in trial_runs:
        trial_id = r["tags"].get(TAG_TRIAL_ID)
        parent = r["tags"].get(TAG_PARENT)
        if not trial_id:
            dropped.append((r["run_id"], None, r["status"], "orphan: no study.trial_id tag"))
        elif study_ids and parent not in study_ids:
            dropped.append((r["run_id"], trial_id, r["status"],
                            f"orphan: parent {parent} is not a study run"))
        else:
            by_trial.setdefault(trial_id, []).append(r)
    kept = []
    for trial_id, group in by_trial.items():
        group.sort(key=lambda r: (r["status"] == "FINISHED", r["start_time"]), reverse=True)
        kept.append(group[0])
        dropped += [(r["run_id"], trial_id, r["status"], f"duplicate of run {group[0]['run_id']}")
                    for r in group[1:]]
    kept.sort(key=lambda r: (r["start_time"], r["tags"][TAG_TRIAL_ID]))
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
    except Exception as e:  # noqa: BLE001 - an unreachable artifact store only loses this file
        _log.warning("Cannot list artifacts of run %s: %s", run_id, e)
        return False


def _read_trial(client: Any, r: dict[str, Any], tmp: str, notes: list[str]):
    """The trial's row, its seeds.parquet and curves.parquet frames (None when absent)."""
    tags, run_id = r["tags"], r["run_id"]
    trial_id = tags[TAG_TRIAL_ID]
    status = _status(tags.get(TAG_STATUS), r["status"])
    frames: dict[str, pd.DataFrame | None] = {}
    listed = set()
    try:
        listed = {f.path for f in client.list_artifacts(run_id)}
    except Exception as e:  # noqa: BLE001 - see _has_artifact
        notes.append(f"Trial {trial_id}: cannot list artifacts ({e}).")
    for art in (ARTIFACT_SEEDS, ARTIFACT_CURVES):
        frames[art] = None
        if art in listed:
            try:
                local = client.download_artifacts(run_id, art, os.path.join(tmp, run_id))
                frames[art] = pd.read_parquet(local)
            except Exception as e:  # noqa: BLE001 - a corrupt artifact is reported, not fatal
                notes.append(f"Trial {trial_id}: cannot read {art} ({e}).")
        elif status in ("finished", "diverged"):
            notes.append(f"Trial {trial_id} ({status}) has no {art}.")
    row: dict[str, Any] = {
        "trial_id": trial_id, "run_id": run_id, "status": status, "run_status": r["status"],
        "message": tags.get(TAG_MESSAGE, ""), "start_time": r["start_time"],
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
    base = ["trial_id", "run_id", "status", "run_status", "message", "start_time", "end_time",
            "has_curves", "has_seeds"]
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


def _seeds_frame(trials: pd.DataFrame, seed_frames: list[pd.DataFrame], curves: pd.DataFrame,
                 metric: str, threshold: float) -> pd.DataFrame:
    """One row per (trial, seed): logged finals, recomputed onsets, and the trial's params."""
    keys = ["trial_id", "seed"]
    frames = list(seed_frames)
    have = {f["trial_id"].iloc[0] for f in seed_frames if len(f)}
    by_trial = trials.set_index("trial_id") if len(trials) else pd.DataFrame()
    windows = by_trial[PARAM_FINAL_WINDOW] if PARAM_FINAL_WINDOW in by_trial else None
    if len(curves):
        # No seeds.parquet yet (running, or ended before writing it): finals from the curves.
        rest = curves[~curves["trial_id"].isin(have)]
        if len(rest):
            frames.append(_finals_from_curves(rest, windows))
    base = (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=["trial_id", "run_id", "seed"]))
    base = base.drop_duplicates(keys, keep="first").set_index(keys)

    onset_cols = ["t_func", "thr_func", "func_emerged", "t_struct", "thr_struct", "struct_emerged"]
    for col in onset_cols:
        if col not in base:
            base[col] = np.nan
    if len(curves) and {"q_func", "q_struct"} <= set(curves.columns):
        chance = by_trial["q_chance"]
        onsets = seed_onsets(curves, chance, final_window=DEFAULT_FINAL_WINDOW if windows is None
                             else windows.fillna(DEFAULT_FINAL_WINDOW)).set_index(keys)
        # The curves are the source of truth for onsets; logged ones stay only where they are
        # absent.
        hit = base.index.isin(onsets.index)
        for col in onsets.columns:
            new = onsets[col].reindex(base.index)
            base[col] = new.where(hit, base[col]) if col in base else new
    base = base.reset_index()
    for col in ("func_emerged", "struct_emerged"):
        base[col] = base[col].astype("boolean").fillna(False).astype(bool)
    for col in ("t_func", "t_struct", f"final.{metric}", "final.q_struct"):
        if col not in base:
            base[col] = np.nan
    base["t_func"] = base["t_func"].where(base["func_emerged"])
    base["t_struct"] = base["t_struct"].where(base["struct_emerged"])
    base["lag"] = base["t_struct"] - base["t_func"]
    task = pd.to_numeric(base[f"final.{metric}"], errors="coerce")
    q_struct = pd.to_numeric(base["final.q_struct"], errors="coerce")
    success = _bool_or(base, "success", task > threshold)
    base["success"] = success
    base["differentiated"] = _bool_or(base, "differentiated",
                                      success & (q_struct > DIFFERENTIATED_Q_STRUCT))
    if not len(trials):
        return base
    trial_cols = ["trial_id"] + [c for c in trials.columns
                                 if c not in base.columns and c not in SUMMARY_METRICS]
    out = base.drop(columns=["run_id"], errors="ignore").merge(
        trials[trial_cols + ["run_id"]], on="trial_id", how="left")
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _bool_or(df: pd.DataFrame, col: str, derived: pd.Series) -> pd.Series:
    """The logged boolean column where present, else the derived one."""
    if col not in df:
        return derived.astype(bool)
    logged = df[col].astype("boolean")
    return logged.fillna(derived.astype("boolean")).astype(bool)


def _finals_from_curves(curves: pd.DataFrame, windows: Any) -> pd.DataFrame:
    """final.<metric> per (trial, seed) as the mean of its last `final_window` finite values."""
    rows = []
    metrics = [m for m in CURVE_METRICS if m in curves.columns]
    for (trial_id, seed), g in curves.sort_values("epoch").groupby(["trial_id", "seed"]):
        w = DEFAULT_FINAL_WINDOW
        if windows is not None and trial_id in windows.index and pd.notna(windows[trial_id]):
            w = int(windows[trial_id])
        row = {"trial_id": trial_id, "run_id": g["run_id"].iloc[0], "seed": seed}
        if "seed_value" in g:
            row["seed_value"] = g["seed_value"].iloc[0]
        for m in metrics:
            v = g[m].to_numpy(float)
            v = v[np.isfinite(v)]
            row[f"final.{m}"] = float(np.mean(v[-w:])) if v.size else math.nan
        rows.append(row)
    return pd.DataFrame(rows)
