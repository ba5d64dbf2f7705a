"""What the training loop hands out: evaluation records, the Reporter protocol, the result.

Hooks receive plain data (floats, NumPy arrays, paths), never live tensors, so a reporter can
log, store or forward them without knowing about torch or the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from study.spec import TrialConfig

__all__ = ["EvalRecord", "Reporter", "NullReporter", "RecordingReporter", "TrainResult"]


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation: every metric for every seed, as plain floats."""

    epoch: int
    metrics: Mapping[str, tuple[float, ...]]  # name -> (S,) values
    elapsed: float  # seconds of training so far (this process and the resumed ones)

    def mean(self, name: str) -> float:
        vals = [v for v in self.metrics[name] if math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")


class Reporter(Protocol):
    """What the loop calls; hooks receive plain data, never live tensors."""

    def report(self, record: EvalRecord, checkpoint: Path | None) -> None: ...

    def snapshot(self, epoch: int, weights: Mapping[str, np.ndarray]) -> None: ...

    def on_epoch(self, epoch: int) -> None:
        """Called after every training epoch (progress bars); must be cheap."""


class NullReporter:
    def report(self, record: EvalRecord, checkpoint: Path | None) -> None:
        pass

    def snapshot(self, epoch: int, weights: Mapping[str, np.ndarray]) -> None:
        pass

    def on_epoch(self, epoch: int) -> None:
        pass


@dataclass
class RecordingReporter:
    """Keeps everything it is given (tests, notebooks)."""

    records: list[EvalRecord] = field(default_factory=list)
    checkpoints: list[tuple[int, Path]] = field(default_factory=list)
    snapshots: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list)

    def report(self, record: EvalRecord, checkpoint: Path | None) -> None:
        self.records.append(record)
        if checkpoint is not None:
            self.checkpoints.append((record.epoch, checkpoint))

    def snapshot(self, epoch: int, weights: Mapping[str, np.ndarray]) -> None:
        self.snapshots.append((epoch, dict(weights)))

    def on_epoch(self, epoch: int) -> None:
        pass


@dataclass
class TrainResult:
    status: str  # "finished" or "diverged"
    message: str
    config: TrialConfig
    history: list[EvalRecord]
    seed_values: list[int]  # the integer seed of each member
    epochs_done: int
    elapsed: float
    timings: dict[str, float]
