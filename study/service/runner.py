"""The one trial runner: config → MLflow run → `train()` through a fan-out of reporters →
summary → outputs → final status. `python -m study train` (`train_command`) and the Ray Tune
trainable (`study.service.worker.trial`) both run a trial through `run_trial`; they differ only in
the reporters they add (a progress bar; Tune's session report) and in where the run and its
checkpoint live.

Every exit path ends the trial's MLflow run exactly once with a status of the run-data contract
(docs/run-data.md): `finished` or `diverged` as `train()` returns them; `stopped` when the trial
is ended from outside (Ctrl-C raises KeyboardInterrupt; a Tune scheduler stopping a trial, or
the end of a study, raises SystemExit inside `tune.report`); `failed` for any other exception.
The exception itself always propagates. Every reporter is closed exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from study.contract.artifacts import CHECKPOINT_DIR
from study.contract.text import redact_url
from study.core.tasks import task_metric
from study.service.summary import Summary, summarize, write_outputs, write_snapshot
from study.service.tracking import (
    TAG_COMMIT,
    TAG_SWEPT,
    TAG_TASK,
    StudyTracker,
    TrialTracker,
    default_tracking_uri,
    git_commit,
    study_home,
)
from study.spec import TrialConfig
from study.training import (
    EvalRecord,
    NullReporter,
    TrainResult,
    inherited_records,
    records_from_state,
    train,
)

__all__ = [
    "TrialRun",
    "StageReporter",
    "FanOut",
    "MlflowReporter",
    "ProgressBar",
    "run_trial",
    "train_command",
    "train_trial_id",
    "means_of",
]

log = logging.getLogger("study.service.runner")

# a Tune trial's provisional outputs (at its checkpoints) redraw the figure at most this often;
# the tables are rewritten at every checkpoint, and the final outputs always have the figure
PROVISIONAL_FIGURE_S = 60.0


def _stop_message(e: BaseException) -> str:
    """Why a trial ended early (status `stopped`), from the exception that ended it."""
    if isinstance(e, KeyboardInterrupt):
        return "stopped: interrupted (Ctrl-C)"
    return "stopped: ended from outside (in a study: by the Tune scheduler)"


def means_of(record: EvalRecord) -> dict[str, float]:
    """The across-seed mean of every metric of one evaluation."""
    return {k: record.mean(k) for k in record.metrics}


class TrialRun:
    """What the reporters of one trial share: its config, output folder, MLflow run (None when
    untracked), the full evaluation history (including what a resumed checkpoint held), the
    snapshot files written so far and which outputs are already on disk for that history.

    Args:
        cfg: the trial config.
        out_dir: where outputs and snapshots go (created if missing).
        tracker: the trial's MLflow run, or None (`study train --no-track`).
        resume_state: the state dict of the checkpoint the trial resumes from, if any; or, with
            `inherited`, of the checkpoint of another trial it forks from (`train.init_from`).
        inherited: the history in `resume_state` is another trial's: a fork logs it into its
            own fresh MLflow run before it trains on.
    """

    def __init__(
        self,
        cfg: TrialConfig,
        out_dir: Path,
        tracker: TrialTracker | None = None,
        resume_state: Mapping[str, Any] | None = None,
        inherited: bool = False,
    ):
        self.cfg, self.out_dir, self.tracker = cfg, Path(out_dir), tracker
        self.inherited = inherited and resume_state is not None
        self.history: list[EvalRecord] = (
            records_from_state(resume_state) if resume_state is not None else []
        )
        if self.inherited:  # the parent's evaluations, under this trial's metric names
            self.history = inherited_records(self.history, cfg)
        self.start_epoch = int(resume_state["epoch"]) if resume_state is not None else 0
        self.seed_values = [cfg.seed + i for i in range(cfg.seeds)]
        self.snapshots: dict[int, Path] = {}
        self._summary: tuple[int, Summary | None] = (-1, None)
        # the history length the tables / the figure were last written for; config.yaml once
        self._tables_for, self._figure_for, self._config_written = -1, -1, False
        self.figure_time = time.monotonic()  # when the figure was last drawn (or the run began)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def summary(self) -> Summary:
        """`summarize` of the history so far; computed once per evaluation, however many
        reporters ask for it."""
        n, cached = self._summary
        if cached is None or n != len(self.history):
            cached = summarize(self.cfg, self.history, self.seed_values)
            self._summary = (len(self.history), cached)
        return cached

    def write_outputs(self, *, figure: bool) -> list[Path]:
        """`summary.write_outputs` of the history so far, writing only what is not on disk for
        it yet: the tables unless they were written at this evaluation, config.yaml the first
        time, the figure when FIGURE and not yet drawn at this evaluation. Returns the files
        written (the ones to log)."""
        n = len(self.history)
        paths = write_outputs(
            self.out_dir,
            self.cfg,
            self.summary(),
            tables=self._tables_for != n,
            config=not self._config_written,
            figure=figure and self._figure_for != n,
        )
        if figure and self._figure_for != n:
            self._figure_for, self.figure_time = n, time.monotonic()
        self._tables_for, self._config_written = n, True
        return paths


class StageReporter(NullReporter):
    """A `study.training.Reporter` with the two hooks the runner adds: `done` (the trial's result
    and summary, before its run is closed) and `close` (called exactly once, on every path).
    Every hook does nothing unless overridden."""

    def done(self, result: TrainResult, summary: Summary) -> None:
        pass

    def close(self) -> None:
        pass


class FanOut(StageReporter):
    """Forwards every hook to several reporters, in the order given (later ones may read what
    earlier ones recorded in the shared TrialRun); `close` reaches each reporter once."""

    def __init__(self, *reporters: StageReporter):
        self.reporters = list(reporters)
        self._closed = False

    def report(self, record: EvalRecord, checkpoint: Path | None) -> None:
        for r in self.reporters:
            r.report(record, checkpoint)

    def snapshot(self, epoch: int, weights: Mapping[str, np.ndarray]) -> None:
        for r in self.reporters:
            r.snapshot(epoch, weights)

    def on_epoch(self, epoch: int) -> None:
        for r in self.reporters:
            r.on_epoch(epoch)

    def done(self, result: TrainResult, summary: Summary) -> None:
        for r in self.reporters:
            r.done(result, summary)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for r in self.reporters:
            r.close()


class _Recorder(StageReporter):
    """First stage: keeps the history and writes weight snapshots to OUT/weights (the one place
    snapshots are written; the MLflow stage logs the file written here)."""

    def __init__(self, run: TrialRun):
        self.run = run

    def report(self, record: EvalRecord, checkpoint: Path | None) -> None:
        self.run.history.append(record)

    def snapshot(self, epoch: int, weights: Mapping[str, np.ndarray]) -> None:
        self.run.snapshots[epoch] = write_snapshot(self.run.out_dir, epoch, weights)


class MlflowReporter(StageReporter):
    """Each evaluation's means and each snapshot into the trial's MLflow run. With `provisional`
    (Tune trials), also the outputs and provisional summary at every checkpoint, so a trial a
    scheduler kills (no `finally` runs) still has its curves in MLflow."""

    def __init__(self, run: TrialRun, *, provisional: bool = False):
        if run.tracker is None:
            raise ValueError("MlflowReporter needs a tracked TrialRun")
        self.run, self.tracker, self.provisional = run, run.tracker, provisional

    def report(self, record: EvalRecord, checkpoint: Path | None) -> None:
        self.tracker.log_eval(record.epoch, means_of(record))
        if self.provisional and checkpoint is not None:
            stale = time.monotonic() - self.run.figure_time >= PROVISIONAL_FIGURE_S
            outputs = self.run.write_outputs(figure=stale)
            self.tracker.log_progress(
                record.epoch, self.run.summary().metrics, outputs, self.run.out_dir
            )

    def snapshot(self, epoch: int, weights: Mapping[str, np.ndarray]) -> None:
        # logged at once (the file the recorder just wrote): survives a killed trial
        self.tracker.log_artifact(self.run.snapshots[epoch], "weights")


class ProgressBar(StageReporter):
    """A tqdm bar over epochs (stderr) with the latest task metric, MI, q_func and q_struct."""

    def __init__(self, cfg: TrialConfig, *, quiet: bool = False, start: int = 0):
        self.task_metric = task_metric(cfg)
        self.bar = tqdm(
            total=cfg.train.epochs,
            initial=start,
            unit="epoch",
            disable=quiet,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def on_epoch(self, epoch: int) -> None:
        self.bar.update(epoch - self.bar.n)

    def report(self, record: EvalRecord, checkpoint: Path | None) -> None:
        means = means_of(record)
        shown = {
            self.task_metric[:3]: self.task_metric,
            "mi": "mi",
            "q_func": "q_func",
            "q_struct": "q_struct",
        }
        self.bar.set_postfix(
            {label: f"{means[k]:.3f}" for label, k in shown.items()}, refresh=True
        )

    def close(self) -> None:
        self.bar.close()


def run_trial(
    run: TrialRun,
    reporters: Sequence[StageReporter] = (),
    *,
    checkpoint_dir: Path | None,
    resume_from: Path | None = None,
    device: str | None = None,
    provisional: bool = False,
) -> tuple[TrainResult, Summary]:
    """Train one trial and close its MLflow run with the right status on every exit path.

    The reporters see each hook after the runner's own stages (history and snapshots, then
    MLflow when the run is tracked). Exceptions are never swallowed: a Tune trial that raises
    is marked ERROR by Ray (and retried from its checkpoint), the CLI turns them into its exit
    status.

    The outputs are written once per evaluation: the final ones reuse what a provisional
    checkpoint wrote for the same history (then only the figure is added and logged).

    Returns:
        the TrainResult (status `finished` or `diverged`) and its summary.
    """
    stages: list[StageReporter] = [_Recorder(run)]
    if run.tracker is not None:
        stages.append(MlflowReporter(run, provisional=provisional))
    fan = FanOut(*stages, *reporters)
    status, message, closed = "failed", "", False
    try:
        if run.inherited and run.tracker is not None:  # a fork's past, in its own run
            for record in run.history:
                run.tracker.log_eval(record.epoch, means_of(record))
        result = train(
            run.cfg,
            reporter=fan,
            checkpoint_dir=checkpoint_dir,
            resume_from=resume_from,
            device=device,
            keep_dir=run.out_dir / CHECKPOINT_DIR,
        )
        if len(result.history) != len(run.history):  # the result's history is the truth
            run.history = list(result.history)
        summary = run.summary()
        fan.done(result, summary)
        outputs = run.write_outputs(figure=True)
        if run.tracker is not None:
            run.tracker.finish(
                result.status,
                summary=summary.metrics,
                step=result.epochs_done,
                outputs=outputs,
                root=run.out_dir,
                message=result.message,
            )
        closed = True
        return result, summary
    except (KeyboardInterrupt, SystemExit) as e:
        status, message = "stopped", _stop_message(e)
        raise
    except BaseException as e:
        message = redact_url(f"{type(e).__name__}: {e}")
        raise
    finally:
        fan.close()
        if not closed:
            _close_unfinished(run, status, message)


def _close_unfinished(run: TrialRun, status: str, message: str) -> None:
    """A trial that crashed or was stopped: write what exists (outputs of the history so far)
    and end its MLflow run as `status`. A failure here is logged with its traceback, never
    raised, so the trial's own exception is the one that propagates."""
    try:
        summary = run.summary() if run.history else None
        outputs = run.write_outputs(figure=True) if summary is not None else []
        if run.tracker is not None:
            run.tracker.finish(
                status,
                summary=summary.metrics if summary is not None else {},
                step=run.history[-1].epoch if run.history else 0,
                outputs=outputs,
                root=run.out_dir,
                message=message,
            )
    except Exception:
        log.exception(
            "could not close the MLflow run of trial %s",
            run.tracker.trial_id if run.tracker is not None else run.out_dir,
        )


# ----------------------------------------------------------------------------------------------
# `python -m study train`: a study of one trial


def train_trial_id(out: Path) -> str:
    """The trial id of a `study train` run: `train-<output folder name>`, so `--resume` into the
    same folder finds its MLflow run again. Letters, digits and `_.-` only (a quote or a space
    in --out is replaced, and a hash of the real name keeps two such folders apart), so the id
    is safe in an MLflow filter and a file name."""
    real = Path(out).resolve().name
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", real)[:80]
    if safe != real:
        safe += "-" + hashlib.sha1(real.encode()).hexdigest()[:8]
    return f"train-{safe}"


def _open_train_tracking(
    cfg: TrialConfig, name: str, out: Path, spec_text: str
) -> tuple[StudyTracker, TrialTracker]:
    """The experiment NAME, its study run (parent) and the trial's child run."""
    uri = default_tracking_uri()
    study = StudyTracker(uri, name, artifact_root=study_home() / "mlartifacts")
    parent = study.start(
        tags={TAG_SWEPT: "[]", TAG_TASK: cfg.task.name, TAG_COMMIT: git_commit()},
        spec_text=spec_text,
    )
    tracker = TrialTracker(
        uri,
        study.experiment_id,
        parent,
        train_trial_id(out),
        study_name=name,
        task=cfg.task.name,
        params=cfg.flat(),
    )
    return study, tracker


def train_command(
    cfg: TrialConfig,
    out: Path,
    *,
    name: str,
    spec_text: str,
    track: bool = True,
    quiet: bool = False,
    device: str | None = None,
    resume_from: Path | None = None,
    resume_state: Mapping[str, Any] | None = None,
    inherited: bool = False,
) -> tuple[TrainResult, Summary]:
    """Train one trial into OUT with a progress bar: OUT/checkpoint is (over)written, and unless
    `track` is false the trial is logged as a study of one trial (parent run + one child), whose
    study run ends with the trial's status. `resume_state` with `inherited`: the checkpoint of
    the trial this one forks from (`train.init_from`)."""
    run = TrialRun(cfg, out, resume_state=resume_state, inherited=inherited)
    study = None
    if track:
        study, run.tracker = _open_train_tracking(cfg, name, out, spec_text)
    status = "failed"
    try:
        result, summary = run_trial(
            run,
            [ProgressBar(cfg, quiet=quiet, start=run.start_epoch)],
            checkpoint_dir=out / CHECKPOINT_DIR,
            resume_from=resume_from,
            device=device,
        )
        status = result.status
        return result, summary
    except (KeyboardInterrupt, SystemExit):
        status = "stopped"
        raise
    finally:
        if study is not None:
            study.finish(status)
