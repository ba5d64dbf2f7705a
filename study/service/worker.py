"""The Tune-worker side of a study: what runs inside a trial process.

`trial` is the trainable, a thin adapter from Tune to the one trial runner
(`study.service.runner`):
Tune's config and checkpoint in, Tune's session report out. Also here: the study constants
shipped to every trial (`StudyContext`), the objective values reported to Optuna, and the sweep
of scratch folders left by killed trials. Light at import (the driver imports it through
study.service.driver); Ray and the training stack are imported inside the functions that run
in a trial.
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.contract.params import PARAM_ARM
from study.contract.tags import TAG_ARM
from study.service.tracking import TrialTracker, trial_run_name
from study.spec import checkpoint_file, parse_constraint, point_tree, trial_config_from_dict

__all__ = [
    "StudyContext",
    "trial",
    "objective_values",
    "objective_keys",
    "sweep_work_dirs",
    "WORK_PREFIX",
    "WORST",
    "PENALTY",
]

WORK_PREFIX = "mistudy-"  # a trial's scratch folder: /tmp/mistudy-<trial id>-<pid>-XXXX

# an objective a trial never reached (diverged, or no evaluation): far below / above any real one
WORST = 1e6
# constraint-violating trials rank below every feasible one: objective ∓ PENALTY·(1 + violation)
PENALTY = 1e3

# how long Tune's reuse of a trial process waits for the previous trial's thread (Ray's setting)
REUSE_WAIT_ENV = "TUNE_FUNCTION_THREAD_TIMEOUT_S"
REUSE_WAIT_S = 300


@dataclass(frozen=True)
class StudyContext:
    """Constants every trial of a study needs, shipped once through the object store."""

    name: str
    base: dict[str, Any]  # the base trial config (nested)
    spec_path: str
    objectives: tuple[tuple[str, str], ...]  # (metric, direction)
    constraints: tuple[str, ...]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    home: str
    cpus_per_trial: float
    task: str
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> dotted overrides


# ----------------------------------------------------------------------------------------------
# Objectives


def objective_values(
    summary: Mapping[str, float], objectives, constraints, *, diverged: bool = False
) -> list[float]:
    """The value(s) reported to Optuna: the objective metrics, penalised when a constraint fails.

    Always finite (Optuna rejects NaN, docs/stack.md §3.8): a missing metric or a diverged trial
    gets the worst value for its direction.
    """
    violation = 0.0
    for text in constraints:
        metric, op, bound = parse_constraint(text)
        value = summary.get(metric, math.nan)
        if not math.isfinite(value):
            violation += 1.0
        elif op == ">=" and value < bound:
            violation += bound - value
        elif op == "<=" and value > bound:
            violation += value - bound
    out = []
    for metric, direction in objectives:
        sign = 1.0 if direction == "maximize" else -1.0
        value = summary.get(metric, math.nan)
        if diverged or not math.isfinite(value):
            out.append(-sign * WORST)
            continue
        if violation > 0:
            value -= sign * PENALTY * (1.0 + violation)
        out.append(float(value))
    return out


def objective_keys(n: int) -> list[str]:
    """The result keys the objective values are reported under."""
    return ["objective"] if n == 1 else [f"objective_{i}" for i in range(n)]


def tune_result(
    ctx: StudyContext,
    epoch: int,
    means: Mapping[str, float],
    summary: Mapping[str, float],
    *,
    diverged: bool,
) -> dict[str, float]:
    """One Tune result: the evaluation's means, the finite summary metrics, the objectives."""
    result: dict[str, float] = {"epoch": epoch, "diverged": float(diverged)}
    result.update({k: (v if math.isfinite(v) else float("nan")) for k, v in means.items()})
    result.update({k: v for k, v in summary.items() if math.isfinite(v)})
    values = objective_values(summary, ctx.objectives, ctx.constraints, diverged=diverged)
    result.update(zip(objective_keys(len(values)), values))
    return result


# ----------------------------------------------------------------------------------------------
# Trainable


def trial(config: dict[str, Any], ctx: StudyContext) -> None:
    """One trial: its arm's overrides (in a study with arms) and the searched values (dotted
    keys) on top of the study's base config, run by `study.service.runner.run_trial` with Tune's
    report added; its MLflow run is found again on resume. A trial with `train.init_from` and
    no checkpoint of its own forks from that one.
    Exceptions propagate, so Ray marks the trial ERROR and retries it from its checkpoint (up to
    `max_failures`)."""
    from ray import tune  # a trial process: Ray and the training stack are loaded here only

    from study.service.runner import TrialRun, run_trial
    from study.training import read_checkpoint

    cfg = _trial_config(config, ctx)
    trial_id = tune.get_context().get_trial_id()
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{trial_id}-{os.getpid()}-"))
    try:
        resume_from = _restored_checkpoint(tune.get_checkpoint(), work)
        state = read_checkpoint(resume_from) if resume_from else None
        parent = None
        if state is None and cfg.train.init_from is not None:
            parent = checkpoint_file(cfg.train.init_from)
            state = read_checkpoint(parent) if parent is not None else None
        arm = config.get(PARAM_ARM) if ctx.arms else None
        tracker = TrialTracker(
            ctx.tracking_uri,
            ctx.experiment_id,
            ctx.parent_run_id,
            trial_id,
            study_name=ctx.name,
            task=ctx.task,
            params={**cfg.flat(), **({PARAM_ARM: arm} if arm is not None else {})},
            run_name=trial_run_name(trial_id, config),
            tags={TAG_ARM: arm} if arm is not None else None,
        )
        run = TrialRun(
            cfg,
            Path(ctx.home) / "trials" / ctx.name / trial_id,
            tracker,
            resume_state=state,
            inherited=parent is not None,
        )
        run_trial(
            run,
            [TuneReporter(ctx, run)],
            checkpoint_dir=work / "ckpt",
            resume_from=resume_from,
            provisional=True,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        _release_device_memory()


def _release_device_memory() -> None:
    """Hand the CUDA memory this trial's tensors held back to the device: the process may run
    the next trial (reused), and trials sharing a GPU must not wait on each other's caches."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _trial_config(config: Mapping[str, Any], ctx: StudyContext):
    """The trial process set up (quiet Ray loggers, private files, stale scratch swept, torch
    threads) and the trial's config, converted once, strictly."""
    import torch  # a trial process only

    for noisy in ("ray.tune", "ray.train"):  # per-checkpoint INFO lines drown the live table
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # a reused trial process waits this long for the previous trial's thread to end (a trial
    # the scheduler stopped closes its outputs and MLflow run first); Ray's default of 2 s
    # would fail the next trial when closing takes longer (docs/stack.md §2.5)
    os.environ.setdefault(REUSE_WAIT_ENV, str(REUSE_WAIT_S))
    os.umask(0o077)  # trial outputs and checkpoints: 0600 files, 0700 folders
    sweep_work_dirs()  # scratch folders of trials killed on this node (no `finally` ran)
    cfg = trial_config_from_dict(
        point_tree(ctx.base, ctx.arms, config, source=ctx.spec_path), source=ctx.spec_path
    )
    if cfg.train.threads == 0:
        torch.set_num_threads(max(1, int(ctx.cpus_per_trial)))  # the CPUs Ray gave this trial
    return cfg


def _restored_checkpoint(ckpt, work: Path) -> Path | None:
    """The checkpoint file Tune restored this trial from, copied into WORK; None for a new
    trial."""
    from study.training import CHECKPOINT_FILE  # torch: a trial process only

    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        path = work / "resume" / CHECKPOINT_FILE
        path.parent.mkdir(parents=True)
        shutil.copy(Path(d) / CHECKPOINT_FILE, path)
    return path


class TuneReporter:
    """The Tune stage of the runner's fan-out: each evaluation (with its checkpoint, when one
    was written) as a Tune result, and a diverged trial's last result with the worst
    objective. Runs after the MLflow stage, so MLflow is as current as the checkpoint."""

    def __init__(self, ctx: StudyContext, run):
        self.ctx, self.run = ctx, run

    def on_epoch(self, epoch: int) -> None:
        pass

    def snapshot(self, epoch: int, weights) -> None:
        pass

    def close(self) -> None:
        pass

    def report(self, record, checkpoint: Path | None) -> None:
        import ray
        from ray import tune

        from study.service.runner import means_of

        result = tune_result(
            self.ctx, record.epoch, means_of(record), self.run.summary().metrics, diverged=False
        )
        result["node_id"] = ray.get_runtime_context().get_node_id()  # result.json: which node
        ckpt = tune.Checkpoint.from_directory(str(checkpoint.parent)) if checkpoint else None
        tune.report(result, checkpoint=ckpt)

    def done(self, result, summary) -> None:
        from ray import tune

        from study.service.runner import means_of

        if result.status != "diverged":
            return
        means = means_of(result.history[-1]) if result.history else {}
        tune.report(
            tune_result(self.ctx, result.epochs_done, means, summary.metrics, diverged=True)
        )


# ----------------------------------------------------------------------------------------------
# Scratch folders


def sweep_work_dirs(tmp: str | Path | None = None) -> list[Path]:
    """Remove the scratch folders (TMP/mistudy-<trial>-<pid>-*) of trial processes that are gone:
    a trial killed by a scheduler or a crash never reaches its `finally`. Folders of live
    processes are left alone. Returns the folders removed."""
    removed = []
    for d in Path(tmp or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*-*-*"):
        m = re.fullmatch(rf"{WORK_PREFIX}(.+)-(\d+)-[A-Za-z0-9_]+", d.name)
        if m is None or not d.is_dir() or d.is_symlink() or d.owner() != getpass.getuser():
            continue
        try:
            os.kill(int(m.group(2)), 0)
            continue  # alive (or not ours to signal): keep
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed
