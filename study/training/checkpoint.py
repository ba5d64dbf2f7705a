"""A trial's checkpoint: the state dict, writing and reading it, and the resume checks.

A checkpoint holds everything a resume needs to continue bit for bit (the curves of an
uninterrupted run): weights, critics, optimiser states, W_rec(0), the live random streams
(streams.TrialStreams) and the evaluation history, as tensors and plain data only, so it loads
with `weights_only=True`. It is the loop's only I/O.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from study.contract.artifacts import CHECKPOINT_FILE
from study.core.mi import SubgroupMI
from study.core.optim import ReplicaOptimizer
from study.spec import ConfigError, TrialConfig, trial_config_from_dict
from study.training.reporting import EvalRecord
from study.training.streams import TrialStreams

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "trial_state",
    "load_modules",
    "write_checkpoint",
    "read_checkpoint",
    "check_resumable",
    "check_fork",
    "FORK_CHANGES",
    "records_from_state",
]

# 2: MINE's moving average is the estimator's own state (`mi.estimator`), no longer a buffer of
# the critics' module; version-1 checkpoints still load (SubgroupMI.load_state reads both)
CHECKPOINT_VERSION = 2
# config keys that may differ between a checkpoint and the run resuming it
_RESUMABLE_CHANGES = ("train.epochs", "train.device", "train.threads")
# what a fork (`train.init_from`) may change from the trial it forks from: its intervention, its
# structure penalty (from the fork on) and the budget; every other key is the parent's
FORK_SECTIONS = ("intervention.", "structure_penalty.")
FORK_CHANGES = (
    *_RESUMABLE_CHANGES,
    "train.init_from",
    "train.keep_checkpoints",
    "train.checkpoint_every",
    "train.snapshot_every",
)
_STATE_KEYS = (
    "version",
    "config",
    "epoch",
    "elapsed",
    "network",
    "optimizer",
    "mi",
    "rng",
    "history",
)


class CheckpointError(ConfigError):
    """A checkpoint that cannot be resumed from: unreadable, not ours, or written with another
    config. A ConfigError, so the CLI refuses it with one line and status 2."""


def trial_state(
    cfg: TrialConfig,
    *,
    epoch: int,
    elapsed: float,
    net: torch.nn.Module,
    optimizer: ReplicaOptimizer,
    mi: SubgroupMI | None,
    w_rec0: Tensor,
    streams: TrialStreams,
    history: Sequence[EvalRecord],
    intervention: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The state dict of a trial after `epoch` epochs (`elapsed` seconds of training); with an
    intervention, its state (interventions.Interventions.state) as "intervention"."""
    state = {
        "version": CHECKPOINT_VERSION,
        "config": cfg.model_dump(mode="json"),
        "epoch": epoch,
        "elapsed": elapsed,
        "network": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "mi": mi.state() if mi is not None else None,
        "w_rec0": w_rec0.cpu(),
        "rng": streams.state(),
        "history": [asdict(r) for r in history],
    }
    if intervention is not None:
        state["intervention"] = dict(intervention)
    return state


def load_modules(
    state: Mapping[str, Any],
    *,
    net: torch.nn.Module,
    optimizer: ReplicaOptimizer,
    mi: SubgroupMI | None,
    streams: TrialStreams,
) -> None:
    """Load the networks, optimiser, critics and random streams of `state` in place (tensors
    move to the devices of `net` and `mi`). The caller checks `check_resumable` first."""
    net.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    if mi is not None:
        try:
            mi.load_state(state["mi"])
        except ValueError as e:  # a state of the critics this code cannot read: one line, exit 2
            raise CheckpointError(f"cannot resume the MI critics: {e}", key="mi") from None
    streams.load_state(state["rng"])


def records_from_state(state: Mapping[str, Any]) -> list[EvalRecord]:
    """The evaluation history stored in a checkpoint's state dict."""
    return [
        EvalRecord(r["epoch"], {k: tuple(v) for k, v in r["metrics"].items()}, r["elapsed"])
        for r in state["history"]
    ]


def write_checkpoint(
    state: Mapping[str, Any], directory: Path, *, name: str = CHECKPOINT_FILE
) -> Path:
    """DIRECTORY/NAME (default checkpoint.pt) holding `state`, replaced atomically; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = directory / (name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's state dict on the CPU (a file, or the folder holding checkpoint.pt).

    Loaded with `weights_only=True`: only tensors and plain data (dicts, lists, numbers,
    strings) are unpickled, so a planted checkpoint cannot run code. The state (NumPy RNG
    states included) is plain data by construction.

    Raises:
        CheckpointError: the file is unreadable, holds anything but tensors and plain data, or
            lacks the keys a mistudy checkpoint has.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        kind = (
            "it holds objects other than tensors and plain data (refused: only "
            "weights_only loading is allowed)"
            if "weights_only" in str(e) or "Unsupported global" in str(e)
            else f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        )
        raise CheckpointError(
            f"cannot read checkpoint: {kind}", source=str(path), key="checkpoint"
        ) from None
    missing = [k for k in _STATE_KEYS if not isinstance(state, Mapping) or k not in state]
    if missing:
        raise CheckpointError(
            f"not a mistudy checkpoint (missing {', '.join(missing)})",
            source=str(path),
            key="checkpoint",
        )
    return state


def _saved_config(state: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The flat config a checkpoint was written with, after checking its version and its
    critics' layout."""
    version = state.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint version {version!r} is newer than this code "
            f"({CHECKPOINT_VERSION}); update mistudy",
            source=source,
            key="version",
        )
    try:
        saved = trial_config_from_dict(state["config"], source=source).flat()
    except ConfigError as e:
        raise CheckpointError(
            f"the checkpoint's config is invalid: {e.detail}", source=source, key="config"
        ) from None
    critics = state.get("mi")
    if critics is not None and not (
        isinstance(critics, Mapping) and {"module", "optimizer"} <= set(critics)
    ):
        raise CheckpointError(
            "the MI critics' state is not one this code wrote (expected a "
            "mapping with 'module' and 'optimizer')",
            source=source,
            key="mi",
        )
    return saved


def check_resumable(
    state: Mapping[str, Any], cfg: TrialConfig, *, source: str = "checkpoint"
) -> None:
    """CheckpointError unless `state` was written by this code version with `cfg` (up to the
    keys a resume may change: _RESUMABLE_CHANGES)."""
    saved = _saved_config(state, source)
    mine = cfg.flat()
    differ = [k for k in mine if k not in _RESUMABLE_CHANGES and saved.get(k) != mine[k]]
    if differ:
        pairs = ", ".join(f"{k}: {saved.get(k)!r} -> {mine[k]!r}" for k in differ[:6])
        raise CheckpointError(
            f"checkpoint was written with a different config ({pairs}); "
            f"start a fresh run instead of resuming",
            source=source,
            key=differ[0],
        )


def check_fork(state: Mapping[str, Any], cfg: TrialConfig, *, source: str | None = None) -> None:
    """CheckpointError (a ConfigError: exit 2) unless a trial with `cfg` can fork from `state`,
    another trial's checkpoint (`train.init_from`, read from SOURCE).

    The fork continues the parent's state under its own config, which may differ from the
    parent's only in FORK_SECTIONS and FORK_CHANGES; the parent's own intervention must not
    have acted yet (the fork's past would not be the one its config describes); an intervention
    at an epoch starts at or after the fork; and the fork has epochs left to train. The error
    names the key at fault.
    """
    saved = _saved_config(state, source)
    mine = cfg.flat()
    differ = [
        k
        for k in mine
        if k not in FORK_CHANGES and not k.startswith(FORK_SECTIONS) and saved.get(k) != mine[k]
    ]
    if differ:
        pairs = ", ".join(f"{k}: {saved.get(k)!r} -> {mine[k]!r}" for k in differ[:6])
        raise CheckpointError(
            f"key '{differ[0]}': a fork (train.init_from) may differ from the trial it forks "
            f"from only in intervention.*, structure_penalty.* and the budget "
            f"({', '.join(FORK_CHANGES)}), but got {pairs}",
            source=source,
            key=differ[0],
        )
    epoch = int(state["epoch"])
    acted = state.get("intervention") or {}
    if any(acted.get("decided", [])):
        raise CheckpointError(
            f"key 'train.init_from': the checkpoint (epoch {epoch}) is past its own trial's "
            f"intervention, which this fork's config does not describe; fork from a checkpoint "
            f"before it",
            source=source,
            key="train.init_from",
        )
    at = cfg.intervention.at
    if isinstance(at, int) and at < epoch:
        raise CheckpointError(
            f"key 'intervention.at': a fork's intervention starts at or after the epoch it "
            f"forks at ({epoch}), but got at={at}",
            source=source,
            key="intervention.at",
        )
    if cfg.train.epochs <= epoch:
        raise CheckpointError(
            f"key 'train.epochs': a fork must train past the epoch it forks at ({epoch}), but "
            f"got train.epochs={cfg.train.epochs}",
            source=source,
            key="train.epochs",
        )
