"""The task registry: what the training loop needs of a task, and one entry per task.

A task is one module with a class satisfying `Task` and a `build(cfg)` function, plus one
`register_task` line below. Its config section (a `study.spec.TaskSettings` with its own
cross-checks) is declared in study/spec/trial.py, torch-free like all of study.spec;
`TASK_SECTIONS` there lists the task names, and a test checks that it, this registry and
`study.contract.outcomes` (TASK_METRIC / SUCCESS_THRESHOLD, the NumPy-only source the analysis
side reads) agree.

This module is light: a task's module (torch, SciPy) is imported on its first `build`.
`task_metric(cfg)` is the one place callers outside the tasks ask which metric scores a task.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from study.contract.outcomes import SUCCESS_THRESHOLD, TASK_METRIC

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Task", "TaskEntry", "TASKS", "register_task", "get_task", "build_task", "task_metric"]


class Task(Protocol):
    """What `study.training.loop.Trainer` reads of a task object.

    Arrays are (S, B, T, channels) from `sample`; the loop makes them seed-major, time-major.
    Two flags say which optional method the loop calls instead of `sample`:
    `device_sampling` -> `sample_tensors(gen, n_seeds, batch, device)` draws the batch on the
    training device with a torch generator, already (S, T, B, ·); `fixed_eval_pool` ->
    `test_set(batch)` gives the same (B, T, ·) evaluation sequences every time.
    """

    name: str
    metric: str  # the task score: "accuracy" (sign agreement) or "r2"
    n_inputs: int
    n_outputs: int
    transient: int  # leading steps run without gradient and without scoring
    washout: int  # scored steps excluded from the loss
    input_channels: np.ndarray | None  # channel of each input (None: no input specialisation)
    output_channels: np.ndarray  # channel of each output (the D indices)
    device_sampling: bool
    fixed_eval_pool: bool

    def sample(self, rngs: Sequence[Any], batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Fresh (inputs, targets) per population member, one NumPy generator each."""
        ...


@dataclass(frozen=True)
class TaskEntry:
    """One registered task: its name, where its builder lives, its score and success cut."""

    name: str
    builder: str  # "module:function"; function(cfg: TrialConfig) -> Task
    metric: str
    threshold: float  # success = final metric > threshold (study.contract.outcomes)

    def build(self, cfg: Any) -> Task:
        """The task object for cfg (imports the task's module on first use)."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)(cfg)


TASKS: dict[str, TaskEntry] = {}


def register_task(
    name: str, builder: str, *, metric: str | None = None, threshold: float | None = None
) -> TaskEntry:
    """Add a task to the registry and return its entry.

    `metric` and `threshold` default to study.contract.outcomes' TASK_METRIC[name] and
    SUCCESS_THRESHOLD[metric], so the training side and the reports cannot disagree; a task
    the analysis side does not know must name them (and then belongs in study.contract.outcomes).
    """
    if metric is None:
        if name not in TASK_METRIC:
            raise ValueError(
                f"register_task(): task {name!r} is not in study.contract.outcomes."
                f"TASK_METRIC; add it there or pass metric= and threshold="
            )
        metric = TASK_METRIC[name]
    if threshold is None:
        threshold = SUCCESS_THRESHOLD[metric]
    entry = TaskEntry(name, builder, metric, float(threshold))
    TASKS[name] = entry
    return entry


def get_task(name: str) -> TaskEntry:
    """The registered entry of a task name; ValueError naming the registered ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; registered tasks: {', '.join(TASKS)}") from None


def build_task(cfg: Any) -> Task:
    """The task object named by cfg.task, built by its registered builder."""
    return get_task(cfg.task.name).build(cfg)


def task_metric(cfg: Any) -> str:
    """The per-evaluation metric that scores cfg's task ("accuracy" or "r2")."""
    return get_task(cfg.task.name).metric


register_task("working_memory", "study.core.tasks.working_memory:build")
register_task("chaos_separation", "study.core.tasks.chaos:build")
