"""The training layer: one trial, from its config to its evaluation history.

- `loop`: `Trainer` (networks, critics, critic rounds, network steps) and `train()`;
- `evaluation`: the metrics of each evaluation (`Evaluation`, `metric_names`);
- `schedule`: when a trial evaluates, and which evaluations are light (`EvalSchedule`);
- `checkpoint`: the state dict, reading and writing it, the resume and fork checks;
- `interventions`: what changes from `intervention.at` on, and the structure penalty;
- `reporting`: what the loop hands out (`EvalRecord`, the `Reporter` hooks, `TrainResult`);
- `streams`: the table of the trial's random-number streams;
- `device`: the torch device of a config, and an allocator setting.

Uses `study.core` and reports through the Reporter hooks; no Ray, Optuna or MLflow here.
"""

from __future__ import annotations

from study.training.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    check_fork,
    check_resumable,
    read_checkpoint,
    records_from_state,
)
from study.training.evaluation import Evaluation, metric_names
from study.training.interventions import inherited_records
from study.training.loop import Diverged, Trainer, train
from study.training.reporting import (
    EvalRecord,
    NullReporter,
    RecordingReporter,
    Reporter,
    TrainResult,
)
from study.training.schedule import EvalSchedule

__all__ = [
    "train",
    "Trainer",
    "Diverged",
    "EvalRecord",
    "Reporter",
    "NullReporter",
    "RecordingReporter",
    "TrainResult",
    "Evaluation",
    "metric_names",
    "EvalSchedule",
    "CHECKPOINT_FILE",
    "CheckpointError",
    "read_checkpoint",
    "check_resumable",
    "check_fork",
    "records_from_state",
    "inherited_records",
]
