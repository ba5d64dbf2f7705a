"""The training loop: critic pre-training, then per epoch critic updates and one network update.

method.md §5 (working memory) and §9 (separation). `train(config, reporter=...)` trains S seeds at
once and reports every evaluation through the Reporter protocol with plain floats; the loop's only
I/O is the checkpoint file. No Ray, Optuna or MLflow here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from study.core import communities, metrics
from study.spec import ConfigError, TrialConfig, trial_config_from_dict
from study.training.device import keep_freed_memory, resolve_device
from study.core.mi import SubgroupMI, heldout_mi
# the metric-name sections (MI_METRICS, ...) stay importable from here (tests read them)
from study.contract.names import MI_METRICS, MODULARITY_METRICS, SPECIALISATION_METRICS, curve_metrics
from study.core.networks import build_network
from study.core.optim import ReplicaOptimizer
from study.core.partition import groups
from study.core.tasks import build_task, task_metric

__all__ = [
    "EvalRecord",
    "Reporter",
    "NullReporter",
    "RecordingReporter",
    "TrainResult",
    "Trainer",
    "Diverged",
    "train",
    "build_task",
    "metric_names",
    "CHECKPOINT_FILE",
    "keep_freed_memory",
    "read_checkpoint",
    "records_from_state",
    "check_resumable",
    "CheckpointError",
]

log = logging.getLogger("study.training.loop")

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1
# config keys that may differ between a checkpoint and the run resuming it
_RESUMABLE_CHANGES = ("train.epochs", "train.device", "train.threads")


# ----------------------------------------------------------------------------------------------
# Reporting


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


class Diverged(FloatingPointError):
    """A loss or MI estimate became non-finite."""


# ----------------------------------------------------------------------------------------------
# Construction


def metric_names(cfg: TrialConfig) -> tuple[str, ...]:
    """Per-evaluation metric keys, in logging order (docs/run-data.md; study.contract.names)."""
    return curve_metrics(task_metric(cfg))


def _abs_cross_corr(x: Tensor, y: Tensor) -> Tensor:
    """|Pearson corr| between columns of x (S, M, N) and y (S, M, C) -> (S, N, C)."""
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    cov = torch.bmm(x.transpose(1, 2), y)
    norm = x.norm(dim=1).unsqueeze(2) * y.norm(dim=1).unsqueeze(1)
    return (cov / norm.clamp_min(1e-12)).abs()


# ----------------------------------------------------------------------------------------------
# Trainer


class Trainer:
    """Holds the networks, critics, optimisers, RNG streams and history of one trial."""

    def __init__(self, cfg: TrialConfig, device: torch.device | str | None = None):
        self.cfg = cfg
        self.device = (torch.device(device) if device is not None
                       else resolve_device(cfg.train.device))
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.task = build_task(cfg)
        s, n = cfg.seeds, cfg.network.hidden
        self.n_seeds = s
        self.labels = groups(n, cfg.partition.groups, cfg.partition.sizes)
        self.net = build_network(
            cfg.network.kind, s, self.task.n_inputs, n, self.task.n_outputs,
            alpha=cfg.network.alpha, gain=cfg.network.gain, seed=cfg.seed,
        ).to(self.device)
        o = cfg.optim
        self.optimizer = ReplicaOptimizer.from_config(self.net.parameters(), o)
        self.mi: SubgroupMI | None = None
        if cfg.partition.groups >= 2:
            # the critics' optimiser state follows them to the device (optim.py)
            self.mi = SubgroupMI.from_config(cfg, self.labels).to(self.device)
        # data streams: training and evaluation are separate, so eval_every never changes training
        self.data_rng = np.random.default_rng([cfg.seed, 1])
        self.eval_rng = np.random.default_rng([cfg.seed, 2])
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 7919 + 1)
        self.eval_gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 7919 + 2)
        self.epoch = 0
        self.history: list[EvalRecord] = []
        self.elapsed = 0.0
        self.timings = {"data": 0.0, "critic": 0.0, "network": 0.0, "eval": 0.0}
        self.metric_names = metric_names(cfg)
        self._labels_t = torch.as_tensor(self.labels)
        # W_rec(0) for q_struct_delta (also in checkpoints), and the null partitions of the
        # z-scores: drawn once from their own stream, so every evaluation uses the same R
        self.w_rec0 = self.net.recurrent_weights().detach().clone()
        self.null_partitions = metrics.random_partitions(
            self.labels, cfg.train.null_partitions, seed=[cfg.seed, 3])
        # finiteness checks once per epoch on CUDA (no host sync per step); eager on the CPU
        self.lazy_checks = self.device.type == "cuda"
        self._pending: list[tuple[str, Tensor]] = []

    @property
    def seed_values(self) -> list[int]:
        return [self.cfg.seed + i for i in range(self.n_seeds)]

    # -- data -----------------------------------------------------------------------------------
    def _batch(self, purpose: str) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """inputs (S, T, B, I), targets (S, T', B, O), x0 (S, B, N), noise (S, T, B, N) or None.

        Tasks produce (S, B, T, ·); the networks run seed-major then time-major (networks.py).
        """
        t0 = time.perf_counter()
        s, n, cfg = self.n_seeds, self.cfg.network.hidden, self.cfg
        evaluating = purpose == "eval"
        rng = self.eval_rng if evaluating else self.data_rng
        gen = self.eval_gen if evaluating else self.gen
        if evaluating and cfg.train.eval_fixed:  # the same batch at every evaluation
            rng = np.random.default_rng([cfg.seed, 4])
            gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 7919 + 4)
        batch = cfg.train.eval_batch if evaluating else cfg.task.batch
        if evaluating and self.task.fixed_eval_pool:
            x, y = self.task.test_set(batch)  # the fixed test pool (method.md §6.5)
            inputs, targets = self._to_device(np.broadcast_to(x, (s, *x.shape)),
                                              np.broadcast_to(y, (s, *y.shape)))
        elif self.task.device_sampling:  # generated on the training device
            inputs, targets = self.task.sample_tensors(gen, s, batch, self.device)
        else:
            inputs, targets = self._to_device(*self.task.sample([rng] * s, batch))
        t_len, b = inputs.shape[1], inputs.shape[2]
        if cfg.network.kind == "gru" or (purpose == "critic" and cfg.train.critic_x0_zero):
            x0 = torch.zeros(s, b, n, device=self.device)  # GRU: Keras zero state
        else:
            x0 = cfg.train.x0_std * torch.randn(s, b, n, generator=gen, device=self.device)
        noise = None
        if cfg.network.noise > 0:
            noise = torch.randn(s, t_len, b, n, generator=gen, device=self.device)
            noise.mul_(cfg.network.noise)
        self.timings["data"] += time.perf_counter() - t0
        return inputs, targets, x0, noise

    def _to_device(self, x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor]:
        """Task arrays (S, B, T, ·) -> seed-major, time-major tensors (S, T, B, ·)."""
        return tuple(torch.as_tensor(np.ascontiguousarray(a.transpose(0, 2, 1, 3)),
                                     device=self.device) for a in (x, y))

    # -- critic ---------------------------------------------------------------------------------
    def _critic_round(self, n_steps: int) -> Tensor | None:
        """n_steps critic updates on fresh no-grad batches (one batch if critic.reuse_batch)."""
        if self.mi is None or n_steps == 0:
            return None
        t0 = time.perf_counter()
        value = None
        act = None
        for i in range(n_steps):
            if act is None or not self.cfg.critic.reuse_batch:
                inputs, _, x0, noise = self._batch("critic")
                with torch.no_grad():
                    out = self.net(inputs, x0, noise, n_transient=self.task.transient,
                                   outputs=False)
                act = out.rows()  # every (step, sequence) is one sample (method.md §1)
            value = self.mi.critic_step(act, self.gen, transform=out.mi_transform)
            self._check_finite("MI estimate (critic step)", value)
        self.timings["critic"] += time.perf_counter() - t0
        return value

    def pretrain_critic(self) -> None:
        """Critic updates against the untrained networks (method.md §5.2 step 2)."""
        steps = self.cfg.critic.pretrain_steps
        critic = self.cfg.critic
        chunk = critic.steps if critic.reuse_batch and critic.steps else 1
        while steps > 0:
            self._critic_round(min(chunk, steps))
            steps -= chunk
        self._flush_checks()

    # -- network --------------------------------------------------------------------------------
    def _regulariser(self) -> Tensor:
        o = self.cfg.optim
        weight = {"in": o.reg_in, "rec": o.reg_rec, "out": o.reg_out}
        total = torch.zeros(self.n_seeds, device=self.device)
        for role, w in self.net.regularised().items():
            c = weight[role]
            if c:
                term = w.square() if o.reg == "l2" else w.abs()
                total = total + c * term.flatten(1).sum(dim=1)  # Keras l2(c): c·Σw² (no ½)
        return total

    def _network_step(self) -> None:
        t0 = time.perf_counter()
        cfg = self.cfg
        inputs, targets, x0, noise = self._batch("network")
        out = self.net(inputs, x0, noise, n_transient=self.task.transient)
        w = self.task.washout
        err = out.outputs[:, w:] - targets[:, w:]
        task_loss = err.square().mean(dim=(1, 2, 3))  # (S,) MSE per seed
        loss = task_loss + self._regulariser()
        if self.mi is not None and cfg.mi.weight > 0:
            penalty, _ = self.mi.penalty(out.rows(), self.gen, transform=out.mi_transform)
            self._check_finite("MI penalty (network step)", penalty)
            loss = loss + cfg.mi.weight * penalty
        self._check_finite("network loss", loss)
        self.optimizer.zero_grad()
        loss.sum().backward()  # members are independent: the sum gives each its own gradient
        self.optimizer.step()
        self.timings["network"] += time.perf_counter() - t0

    def _where(self, term: str, bad: Tensor) -> str:
        seeds = torch.nonzero(bad).flatten().tolist()
        return (f"train: {term} is not finite at epoch {self.epoch + 1} for seed(s) {seeds} "
                f"of {self.n_seeds} (mi.weight={self.cfg.mi.weight}, "
                f"optim.lr={self.cfg.optim.lr})")

    def _check_finite(self, term: str, values: Tensor) -> None:
        """Raise Diverged when any seed's (S,) `values` is not finite.

        Eager (a host sync per call) unless `lazy_checks`, where the check is queued and
        `_flush_checks` does all of an epoch's at once: on a GPU each eager check stalls the
        launch queue, 12 times per paper-wm epoch. The message is the same either way; lazily,
        the rest of the epoch has run on the non-finite values before it is raised.
        """
        if self.lazy_checks:
            self._pending.append((term, values.detach()))
            return
        bad = ~torch.isfinite(values)
        if bad.any():
            raise Diverged(self._where(term, bad))

    def _flush_checks(self) -> None:
        """The queued checks in one host sync; raises for the first non-finite one."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        finite = torch.stack([torch.isfinite(v).all() for _, v in pending]).cpu()
        if not bool(finite.all()):
            term, values = pending[int(torch.nonzero(~finite)[0])]
            raise Diverged(self._where(term, ~torch.isfinite(values)))

    def train_epoch(self) -> None:
        for _ in range(self.cfg.train.updates_per_epoch):
            self._critic_round(self.cfg.critic.steps)
            self._network_step()
        self._flush_checks()
        self.epoch += 1

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        """Every metric of DESIGN.md §3 for every seed, on a fresh (or the fixed test) batch.

        One section per family of metrics, each filling `res` with (S,) tensors: task, MI
        (training critic and independent measurements), modularity, specialisation.
        """
        t0 = time.perf_counter()
        inputs, targets, x0, noise = self._batch("eval")
        out = self.net(inputs, x0, noise, n_transient=self.task.transient)
        w = self.task.washout
        pred, tgt = out.outputs[:, w:], targets[:, w:]
        res: dict[str, Tensor] = {}
        sections = (("task", lambda: self._eval_task(out, targets, pred, tgt, res)),
                    ("mi", lambda: self._eval_mi(out, res)),
                    ("modularity", lambda: self._eval_modularity(out, res)),
                    ("specialisation", lambda: self._eval_specialisation(out, pred, tgt, res)))
        for name, section in sections:
            ts = time.perf_counter()
            section()
            key = f"eval.{name}"  # per-section cost, for the benchmark's breakdown
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - ts
        self.timings["eval"] += time.perf_counter() - t0
        return {name: res[name].double().cpu().numpy() for name in self.metric_names}

    def _nan(self) -> Tensor:
        return torch.full((self.n_seeds,), float("nan"), device=self.device)

    def _eval_task(self, out, targets: Tensor, pred: Tensor, tgt: Tensor,
                   res: dict[str, Tensor]) -> None:
        res["task_loss"] = (pred - tgt).square().mean(dim=(1, 2, 3))
        if self.task.metric == "accuracy":
            res["accuracy"] = metrics.accuracy(pred, tgt)
        else:
            res["r2"] = metrics.r2(out.outputs, targets).mean(dim=-1)  # over all steps, §6.6

    def _eval_mi(self, out, res: dict[str, Tensor]) -> None:
        """MI_METRICS: the training critic's value, and measurements each with its null floor.

        `mi` is the training critic's objective right after the network's update (in
        clean_partner mode it includes a KL term, so it is not an MI estimate). `mi_gauss` is the
        Gaussian plug-in of the penalty on the noisy activity the penalty sees (σ² =
        `mi.input_noise`² on the covariance diagonal); `mi_heldout` a fresh critic scored on
        held-out sequences (every `train.heldout_mi_every` evaluations and at the last, else
        NaN). Each `*_null` is the same estimator on the sequence-shuffled pairing
        (`metrics.sequence_null`), its floor for independent groups with the same
        autocorrelation.
        """
        cfg = self.cfg
        nan = self._nan
        res["mi"] = (self.mi.measure(out.rows(), self.eval_gen, transform=out.mi_transform)
                     if self.mi is not None else nan())
        if cfg.partition.groups < 2:
            res.update(mi_gauss=nan(), mi_gauss_null=nan(), mi_heldout=nan(),
                       mi_heldout_null=nan())
            return
        sigma, kind = cfg.mi.input_noise, cfg.mi.penalty
        seqs = out.mi_transform(out.states)  # (S, T, B, N) rates
        flat = seqs.reshape(self.n_seeds, -1, seqs.shape[-1])
        res["mi_gauss"] = metrics.gaussian_penalty(flat, self.labels, kind, noise=sigma)
        null = metrics.sequence_null(seqs, self.labels)
        res["mi_gauss_null"] = (nan() if null is None else metrics.gaussian_penalty(
            null.reshape(flat.shape), self.labels, kind, noise=sigma))
        res["mi_heldout"], res["mi_heldout_null"] = nan(), nan()
        if self._heldout_due():
            t0 = time.perf_counter()
            h = cfg.mi.heldout
            res["mi_heldout"], res["mi_heldout_null"] = heldout_mi(
                seqs, self.labels, penalty=kind, noise=sigma, width=h.width, depth=h.depth,
                steps=h.steps, batch=h.batch, lr=h.lr, test_fraction=h.test_fraction,
                seed=int(np.random.SeedSequence([cfg.seed, self.epoch, 0x686F]
                                                ).generate_state(1)[0]))
            self.timings["eval.mi.heldout"] = (self.timings.get("eval.mi.heldout", 0.0)
                                               + time.perf_counter() - t0)

    def _heldout_due(self) -> bool:
        """Every `train.heldout_mi_every`-th evaluation (the first is 0) and the last one."""
        every = self.cfg.train.heldout_mi_every
        if every == 0:
            return False
        return len(self.history) % every == 0 or self.epoch >= self.cfg.train.epochs

    def _eval_modularity(self, out, res: dict[str, Tensor]) -> None:
        """MODULARITY_METRICS: Q of the designed partition, null-referenced and partition-free.

        For |corr| (func) and |W_rec| + |W_rec|ᵀ (struct): Q, Q/Q_max, the z-score of Q
        against the trial's random partitions, and Leiden communities (their own Q and their
        NMI with the design); Q and z of the weight change ΔW = W_rec − W_rec(0); for the GRU
        the z-scored Q of the update- and reset-gate recurrent blocks.
        """
        labels, parts = self.labels, self.null_partitions
        if self.cfg.train.corr_pooling == "pooled":
            func = metrics.functional_adjacency(out.rows())
        else:  # mean |corr| over sequences (separation reference, method.md §10.2)
            func = metrics.functional_adjacency(out.states.transpose(1, 2)).mean(dim=1)
        w_rec = self.net.recurrent_weights()
        graphs = {"func": func, "struct": metrics.structural_adjacency(w_rec)}
        for name, adj in graphs.items():
            q = metrics.modularity(adj, labels)
            res[f"q_{name}"] = q
            res[f"q_{name}_norm"] = q / metrics.modularity_max(adj, labels)
            res[f"q_{name}_z"] = metrics.modularity_zscore(adj, labels, parts)
        delta = metrics.weight_change(w_rec, self.w_rec0)
        res["q_struct_delta"] = metrics.modularity(delta, labels)
        res["q_struct_delta_z"] = metrics.modularity_zscore(delta, labels, parts)
        for name, adj in graphs.items():
            if self.cfg.train.communities and self.cfg.partition.groups >= 2:
                found = communities.leiden(adj, self.seed_values)
                res[f"q_{name}_found"] = communities.found_modularity(adj, found)
                res[f"nmi_{name}"] = communities.partition_nmi(found, labels)
            else:
                res[f"q_{name}_found"] = res[f"nmi_{name}"] = self._nan()
        gates = (self.net.gate_recurrent_weights() if self.cfg.network.kind == "gru" else {})
        for gate in ("update", "reset"):
            res[f"q_{gate}_z"] = (
                metrics.modularity_zscore(metrics.structural_adjacency(gates[gate]), labels, parts)
                if gate in gates else self._nan())

    def _eval_specialisation(self, out, pred: Tensor, tgt: Tensor,
                             res: dict[str, Tensor]) -> None:
        task, labels = self.task, self.labels
        if task.input_channels is not None:
            strength = self.net.input_weights().abs().transpose(1, 2)  # (S, N, I)
            res["d_in"] = metrics.specialization(strength, labels, task.input_channels)
        else:
            res["d_in"] = self._nan()
        res["d_out"] = metrics.specialization(self.net.output_weights().abs(), labels,
                                              task.output_channels)
        # D_corr: unit–target correlations (WM) or unit–prediction correlations (separation)
        reference = tgt if task.metric == "accuracy" else pred
        cross = _abs_cross_corr(out.rows(self.task.washout),
                                reference.reshape(self.n_seeds, -1, reference.shape[-1]))
        res["d_corr"] = metrics.specialization(cross, labels, task.output_channels)

    def record(self, values: Mapping[str, np.ndarray]) -> EvalRecord:
        rec = EvalRecord(self.epoch, {k: tuple(float(x) for x in v) for k, v in values.items()},
                         self.elapsed)
        self.history.append(rec)
        return rec

    def weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.net.snapshot().items()}

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "config": self.cfg.model_dump(mode="json"),
            "epoch": self.epoch,
            "elapsed": self.elapsed,
            "network": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "mi": self.mi.state() if self.mi is not None else None,
            "w_rec0": self.w_rec0.cpu(),
            "rng": {
                "data": self.data_rng.bit_generator.state,
                "eval": self.eval_rng.bit_generator.state,
                "gen": self.gen.get_state(),
                "eval_gen": self.eval_gen.get_state(),
            },
            "history": [asdict(r) for r in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_resumable(state, self.cfg)
        self.epoch = int(state["epoch"])
        self.elapsed = float(state["elapsed"])
        self.net.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.mi is not None:
            self.mi.load_state(state["mi"])
        if "w_rec0" in state:  # older checkpoints: the seeded initialisation already rebuilt it
            self.w_rec0 = state["w_rec0"].to(self.device)
        rng = state["rng"]
        self.data_rng.bit_generator.state = rng["data"]
        self.eval_rng.bit_generator.state = rng["eval"]
        self.gen.set_state(rng["gen"])
        self.eval_gen.set_state(rng["eval_gen"])
        self.history = records_from_state(state)

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CHECKPOINT_FILE
        tmp = directory / (CHECKPOINT_FILE + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)  # never leave a half-written checkpoint behind
        return path

    def load(self, path: Path) -> None:
        self.load_state_dict(read_checkpoint(path))  # tensors move in load_state_dict


# ----------------------------------------------------------------------------------------------
# Entry point


def train(
    cfg: TrialConfig,
    *,
    reporter: Reporter | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train `cfg.seeds` networks with the subgroup-MI penalty.

    Args:
        cfg: the trial config.
        reporter: receives every evaluation (epoch 0 after critic pre-training, then every
            `train.eval_every` epochs and at the end), with the checkpoint path when one was
            written at that evaluation, and weight snapshots every `train.snapshot_every` epochs.
        checkpoint_dir: where `checkpoint.pt` is (over)written every `train.checkpoint_every`
            epochs and at the end; None writes no checkpoints.
        resume_from: a checkpoint file or directory; training continues exactly where it stopped
            (same curves as an uninterrupted run).
        device: overrides `train.device`.

    Returns:
        TrainResult with status "finished" or "diverged" (then `message` says at which epoch and
        for which seeds); the history recorded before a divergence is kept.
    """
    reporter = reporter or NullReporter()
    trainer = Trainer(cfg, device)
    tc = cfg.train
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    status, message = "finished", ""
    start = time.perf_counter()
    base_elapsed = 0.0

    def checkpoint_due(epoch: int) -> bool:
        return ckpt_dir is not None and (epoch % tc.checkpoint_every == 0 or epoch == tc.epochs)

    def evaluate_and_report() -> None:
        trainer.elapsed = base_elapsed + time.perf_counter() - start
        rec = trainer.record(trainer.evaluate())
        if tc.snapshot_every and (trainer.epoch % tc.snapshot_every == 0
                                  or trainer.epoch == tc.epochs):
            reporter.snapshot(trainer.epoch, trainer.weights())
        path = trainer.save(ckpt_dir) if checkpoint_due(trainer.epoch) else None
        reporter.report(rec, path)

    try:
        if resume_from is not None:
            trainer.load(Path(resume_from))
            base_elapsed = trainer.elapsed
            log.info("resumed at epoch %d from %s", trainer.epoch, resume_from)
        else:
            trainer.pretrain_critic()
            evaluate_and_report()
        while trainer.epoch < tc.epochs:
            trainer.train_epoch()
            reporter.on_epoch(trainer.epoch)
            if trainer.epoch % tc.eval_every == 0 or trainer.epoch == tc.epochs:
                evaluate_and_report()
    except Diverged as e:
        status, message = "diverged", str(e)
        log.warning("%s", message)
    trainer.elapsed = base_elapsed + time.perf_counter() - start
    return TrainResult(status, message, cfg, trainer.history, trainer.seed_values,
                       trainer.epoch, trainer.elapsed, dict(trainer.timings))


def records_from_state(state: Mapping[str, Any]) -> list[EvalRecord]:
    """The evaluation history stored in a checkpoint's state dict."""
    return [EvalRecord(r["epoch"], {k: tuple(v) for k, v in r["metrics"].items()}, r["elapsed"])
            for r in state["history"]]


class CheckpointError(ConfigError):
    """A checkpoint that cannot be resumed from: unreadable, not ours, or written with another
    config. A ConfigError, so the CLI refuses it with one line and status 2."""


_STATE_KEYS = ("version", "config", "epoch", "elapsed", "network", "optimizer", "mi", "rng",
               "history")


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
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        kind = ("it holds objects other than tensors and plain data (refused: only "
                "weights_only loading is allowed)" if "weights_only" in str(e) or
                "Unsupported global" in str(e) else f"{type(e).__name__}: "
                                                     f"{' '.join(str(e).split())[:200]}")
        raise CheckpointError(f"cannot read checkpoint: {kind}", source=str(path),
                              key="checkpoint") from None
    missing = [k for k in _STATE_KEYS if not isinstance(state, Mapping) or k not in state]
    if missing:
        raise CheckpointError(f"not a mistudy checkpoint (missing {', '.join(missing)})",
                              source=str(path), key="checkpoint")
    return state


def check_resumable(state: Mapping[str, Any], cfg: TrialConfig, *,
                    source: str = "checkpoint") -> None:
    """CheckpointError unless `state` was written by this code version with `cfg` (up to the
    keys a resume may change: _RESUMABLE_CHANGES)."""
    version = state.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint version {version!r} is newer than this code "
                              f"({CHECKPOINT_VERSION}); update mistudy", source=source,
                              key="version")
    try:
        saved = trial_config_from_dict(state["config"], source=source).flat()
    except ConfigError as e:
        raise CheckpointError(f"the checkpoint's config is invalid: {e.detail}", source=source,
                              key="config") from None
    mine = cfg.flat()
    differ = [k for k in mine if k not in _RESUMABLE_CHANGES and saved.get(k) != mine[k]]
    if differ:
        pairs = ", ".join(f"{k}: {saved.get(k)!r} -> {mine[k]!r}" for k in differ[:6])
        raise CheckpointError(f"checkpoint was written with a different config ({pairs}); "
                              f"start a fresh run instead of resuming", source=source,
                              key=differ[0])
