"""The training loop: critic pre-training, then per epoch critic updates and one network update.

docs/method.md §5 (WM) and §9 (separation). `train(config, reporter=...)` trains S seeds
at once and reports every evaluation through the Reporter protocol with plain floats
(reporting); the metrics are computed by evaluation, the seeds come from the table of streams,
and the loop's only I/O is the checkpoint file (checkpoint). No Ray, Optuna or MLflow here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from study.contract.artifacts import kept_checkpoint_file
from study.core._native import draws
from study.core.mi import SubgroupMI
from study.core.networks import build_network
from study.core.optim import ReplicaOptimizer
from study.core.partition import groups
from study.core.tasks import build_task
from study.spec import TrialConfig, checkpoint_file
from study.training import streams
from study.training.checkpoint import (
    CheckpointError,
    check_fork,
    check_resumable,
    load_modules,
    read_checkpoint,
    records_from_state,
    trial_state,
    write_checkpoint,
)
from study.training.device import keep_freed_memory, resolve_device
from study.training.evaluation import Evaluation, metric_names, recurrent_blocks
from study.training.interventions import Interventions, PenaltyPlan, inherited_records
from study.training.reporting import EvalRecord, NullReporter, Reporter, TrainResult
from study.training.schedule import EvalSchedule
from study.training.streams import TrialStreams

__all__ = ["Trainer", "Diverged", "train"]

log = logging.getLogger("study.training.loop")


class Diverged(FloatingPointError):
    """A loss or MI estimate became non-finite."""


# ----------------------------------------------------------------------------------------------
# Trainer


class Trainer:
    """Holds the networks, critics, optimisers, random streams and history of one trial.

    Trains (critic rounds, network steps, finiteness checks, `train_epoch`) and delegates the
    rest: the metrics to `evaluation.Evaluation`, the state dict to `checkpoint`, the seeds to
    the table of `streams`.
    """

    def __init__(self, cfg: TrialConfig, device: torch.device | str | None = None):
        self.cfg = cfg
        self.device = (
            torch.device(device) if device is not None else resolve_device(cfg.train.device)
        )
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.task = build_task(cfg)
        s, n = cfg.seeds, cfg.network.hidden
        self.n_seeds = s
        self.labels = groups(n, cfg.partition.groups, cfg.partition.sizes)
        self.net = build_network(
            cfg.network.kind,
            s,
            self.task.n_inputs,
            n,
            self.task.n_outputs,
            alpha=cfg.network.alpha,
            gain=cfg.network.gain,
            seed=cfg.seed,
        ).to(self.device)
        o = cfg.optim
        self.optimizer = ReplicaOptimizer.from_config(self.net.parameters(), o)
        self.mi: SubgroupMI | None = None
        if cfg.partition.groups >= 2:
            # the critics' optimiser state follows them to the device (optim.py)
            self.mi = SubgroupMI.from_config(cfg, self.labels).to(self.device)
        # training and evaluation draw from separate streams, so eval_every never changes training
        self.streams = TrialStreams(cfg.seed, self.device)
        self.epoch = 0
        self.history: list[EvalRecord] = []
        self.elapsed = 0.0
        self.timings = {"data": 0.0, "critic": 0.0, "network": 0.0, "eval": 0.0}
        self.metric_names = metric_names(cfg)
        # W_rec(0) for q_struct_delta (also in checkpoints); the evaluation draws the null
        # partitions of the z-scores once, from their own stream
        self.w_rec0 = self.net.recurrent_weights().detach().clone()
        # every recurrent block at epoch 0 (the GRU's gates too) for the per-block changes and
        # the lesions; rebuilt from the seed on resume (W_rec's entry is w_rec0, checkpointed)
        self.rec0 = {
            k: v.detach().clone() for k, v in recurrent_blocks(self.net, cfg.network.kind).items()
        }
        self.evaluation = Evaluation(cfg, self.task, self.labels, self.device, self.timings)
        self._eval_batch: tuple[Tensor, Tensor, Tensor, Tensor | None] | None = None
        # what changes from `intervention.at` on, and the structure penalty (interventions)
        self.interventions = Interventions(self)
        self.metric_names = self.metric_names + self.interventions.metric_names
        # finiteness checks once per epoch on CUDA (no host sync per step); eager on the CPU
        self.lazy_checks = self.device.type == "cuda"
        self._pending: list[tuple[str, Tensor]] = []

    @property
    def seed_values(self) -> list[int]:
        return streams.member_seeds(self.cfg.seed, self.n_seeds)

    @property
    def null_partitions(self) -> np.ndarray:
        """(R, N) random partitions of the z-scores, fixed for the trial (Evaluation)."""
        return self.evaluation.null_partitions

    # -- data -----------------------------------------------------------------------------------
    def _batch(self, purpose: str) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """inputs (S, T, B, I), targets (S, T', B, O), x0 (S, B, N), noise (S, T, B, N) or None.

        Tasks produce (S, B, T, ·); the networks run seed-major then time-major (networks.py).
        """
        t0 = time.perf_counter()
        s, n, cfg = self.n_seeds, self.cfg.network.hidden, self.cfg
        evaluating = purpose == "eval"
        # eval_fixed: a fresh FIXED_EVAL pair, so the same batch at every evaluation
        rng, gen = self.streams.for_batch(evaluating, fixed=cfg.train.eval_fixed)
        batch = cfg.train.eval_batch if evaluating else cfg.task.batch
        if evaluating and self.task.fixed_eval_pool:
            x, y = self.task.test_set(batch)  # the fixed test pool (docs/method.md §6.5)
            inputs, targets = self._to_device(
                np.broadcast_to(x, (s, *x.shape)), np.broadcast_to(y, (s, *y.shape))
            )
        elif self.task.device_sampling:  # generated on the training device
            inputs, targets = self.task.sample_tensors(gen, s, batch, self.device)
        else:
            inputs, targets = self._to_device(*self.task.sample([rng] * s, batch))
        t_len, b = inputs.shape[1], inputs.shape[2]
        if cfg.network.kind == "gru" or (purpose == "critic" and cfg.train.critic_x0_zero):
            x0 = torch.zeros(s, b, n, device=self.device)  # GRU: Keras zero state
        else:
            x0 = cfg.train.x0_std * draws.randn((s, b, n), gen, device=self.device)
        noise = None
        if cfg.network.noise > 0:  # torch.randn's values (draws: faster on the CPU)
            noise = draws.randn((s, t_len, b, n), gen, device=self.device)
            noise.mul_(cfg.network.noise)
        self.timings["data"] += time.perf_counter() - t0
        return inputs, targets, x0, noise

    def _to_device(self, x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor]:
        """Task arrays (S, B, T, ·) -> seed-major, time-major tensors (S, T, B, ·)."""
        return tuple(
            torch.as_tensor(np.ascontiguousarray(a.transpose(0, 2, 1, 3)), device=self.device)
            for a in (x, y)
        )

    # -- critic ---------------------------------------------------------------------------------
    def _critic_round(self, n_steps: int) -> Tensor | None:
        """n_steps critic updates on fresh no-grad batches (one batch if critic.reuse_batch)."""
        if self.mi is None or n_steps == 0:
            return None
        t0 = time.perf_counter()
        value = None
        act = None
        for _ in range(n_steps):
            if act is None or not self.cfg.critic.reuse_batch:
                inputs, _, x0, noise = self._batch("critic")
                with torch.no_grad():
                    out = self.net(
                        inputs, x0, noise, n_transient=self.task.transient, outputs=False
                    )
                act = out.rows()  # every (step, sequence) is one sample (docs/method.md §1)
            value = self.mi.critic_step(act, self.streams.train_gen, transform=out.mi_transform)
            self._check_finite("MI estimate (critic step)", value)
        self.timings["critic"] += time.perf_counter() - t0
        return value

    def pretrain_critic(self) -> None:
        """Critic updates against the untrained networks (docs/method.md §5.2 step 2)."""
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

    def network_loss(self, out, targets: Tensor, plan: PenaltyPlan | None = None) -> Tensor:
        """(S,) the loss of one network step: the task's MSE + the L2/L1 regulariser + λ·the MI
        penalty (λ = mi.weight, or per seed what the intervention asks, `interventions`) + the
        structure penalty. Draws the penalty's sampling from its stream, as the step does;
        when `out.sampled` holds the penalty's rows (drawn by the step before the forward pass
        from `plan.gen`, the same draws), the penalty takes them without a second sample."""
        w = self.task.washout
        err = out.outputs[:, w:] - targets[:, w:]
        task_loss = err.square().mean(dim=(1, 2, 3))  # (S,) MSE per seed
        loss = task_loss + self._regulariser()
        if plan is None:
            plan = self.interventions.penalty_plan(self.streams.train_gen)
        if self.mi is not None and plan is not None:
            with torch.set_grad_enabled(plan.grad and torch.is_grad_enabled()):
                if out.sampled is not None:  # already the sampled rows' rates
                    penalty, _ = self.mi.penalty(out.sampled, plan.gen, transform=None)
                else:
                    penalty, _ = self.mi.penalty(out.rows(), plan.gen, transform=out.mi_transform)
            if plan.grad:
                self._check_finite("MI penalty (network step)", penalty)
                loss = loss + plan.weight * penalty
        structure = self.interventions.structure_loss(self.net)
        if structure is not None:
            loss = loss + structure
        return loss

    def _network_step(self) -> None:
        t0 = time.perf_counter()
        inputs, targets, x0, noise = self._batch("network")
        plan = self.interventions.penalty_plan(self.streams.train_gen)
        sample = None
        if self.mi is not None and plan is not None:
            # the penalty's rows, drawn here rather than inside the penalty: nothing in between
            # draws from the stream, so it is the same sample; the network then hands over the
            # rates of these rows only, and BPTT takes their gradient row by row
            rows = (inputs.shape[1] - self.task.transient) * inputs.shape[2]
            sample = self.mi.row_sample(self.n_seeds, rows, plan.gen, self.device)
        out = self.net(inputs, x0, noise, n_transient=self.task.transient, sample=sample)
        loss = self.network_loss(out, targets, plan)
        self._check_finite("network loss", loss)
        self.optimizer.zero_grad()
        loss.sum().backward()  # members are independent: the sum gives each its own gradient
        self.interventions.mask_gradients(self.net)
        self.optimizer.step()
        self.interventions.restore(self.net)
        self.timings["network"] += time.perf_counter() - t0

    def _where(self, term: str, bad: Tensor) -> str:
        seeds = torch.nonzero(bad).flatten().tolist()
        return (
            f"train: {term} is not finite at epoch {self.epoch + 1} for seed(s) {seeds} "
            f"of {self.n_seeds} (mi.weight={self.cfg.mi.weight}, "
            f"optim.lr={self.cfg.optim.lr})"
        )

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
        self.interventions.begin_epoch(self)  # one due now acts from this epoch's updates on
        for _ in range(self.cfg.train.updates_per_epoch):
            self._critic_round(self.cfg.critic.steps)
            self._network_step()
        self._flush_checks()
        self.epoch += 1

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        """Every logged metric for every seed, on the fixed (or a fresh) batch:
        name -> (S,) float64, in `metric_names` order (evaluation.Evaluation).

        The fixed batch (`train.eval_fixed`) is drawn from fresh FIXED_EVAL generators, so it is
        the same tensors every time: built at the first evaluation and kept.
        """
        t0 = time.perf_counter()
        if not self.cfg.train.eval_fixed:
            batch = self._batch("eval")
        else:
            if self._eval_batch is None:
                self._eval_batch = self._batch("eval")
            batch = self._eval_batch
        res = self.evaluation.run(
            self.net,
            batch,
            mi=self.mi,
            gen=self.streams.eval_gen,
            w_rec0=self.w_rec0,
            epoch=self.epoch,
            rec0=self.rec0,
        )
        res.update(self.interventions.evaluate(self, batch, res))
        self.timings["eval"] += time.perf_counter() - t0
        return {name: res[name].double().cpu().numpy() for name in self.metric_names}

    def record(self, values: Mapping[str, np.ndarray]) -> EvalRecord:
        rec = EvalRecord(
            self.epoch, {k: tuple(float(x) for x in v) for k, v in values.items()}, self.elapsed
        )
        self.history.append(rec)
        return rec

    def weights(self) -> dict[str, np.ndarray]:
        """The weights now, as arrays the caller owns (copies, also on the CPU, where a view
        would follow the training)."""
        return {k: v.detach().to("cpu", copy=True).numpy() for k, v in self.net.snapshot().items()}

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return trial_state(
            self.cfg,
            epoch=self.epoch,
            elapsed=self.elapsed,
            net=self.net,
            optimizer=self.optimizer,
            mi=self.mi,
            w_rec0=self.w_rec0,
            streams=self.streams,
            history=self.history,
            intervention=self.interventions.state(),
        )

    def load_state_dict(self, state: Mapping[str, Any], *, fork: bool = False) -> None:
        """Continue from `state`: a resume of this trial (the same config up to the budget), or
        with `fork` the state of another trial this one forks from (checkpoint.check_fork: its
        config differs at most in the intervention, the structure penalty and the budget, and
        its own intervention never acted; this trial's starts afresh)."""
        if fork:
            check_fork(state, self.cfg)
        else:
            check_resumable(state, self.cfg)
            self.interventions.load_state(state.get("intervention"), self)
        self.epoch = int(state["epoch"])
        self.elapsed = float(state["elapsed"])
        load_modules(
            state, net=self.net, optimizer=self.optimizer, mi=self.mi, streams=self.streams
        )
        if "w_rec0" in state:  # older checkpoints: the seeded initialisation already rebuilt it
            self.w_rec0 = state["w_rec0"].to(self.device)
        self.history = records_from_state(state)
        if fork:  # the parent's evaluations, under this trial's metric names
            self.history = inherited_records(self.history, self.cfg)

    def save(self, directory: Path) -> Path:
        return write_checkpoint(self.state_dict(), directory)

    def load(self, path: Path, *, fork: bool = False) -> None:
        try:
            self.load_state_dict(read_checkpoint(path), fork=fork)  # tensors move there
        except CheckpointError as e:
            if e.source is not None:
                raise
            raise CheckpointError(e.detail, source=str(path), key=e.key) from None


# ----------------------------------------------------------------------------------------------
# Entry point


def train(
    cfg: TrialConfig,
    *,
    reporter: Reporter | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    device: str | torch.device | None = None,
    keep_dir: str | Path | None = None,
) -> TrainResult:
    """Train `cfg.seeds` networks with the subgroup-MI penalty.

    Args:
        cfg: the trial config.
        reporter: receives every evaluation (epoch 0 after critic pre-training, then every
            `train.eval_every` epochs, every `train.dense_every` up to `train.dense_until`,
            and at the end: schedule.EvalSchedule), with the checkpoint path when one was
            written at that evaluation, and weight snapshots every `train.snapshot_every` epochs.
        checkpoint_dir: where `checkpoint.pt` is (over)written every `train.checkpoint_every`
            epochs and at the end; None writes no checkpoints.
        resume_from: a checkpoint file or directory; training continues exactly where it stopped
            (same curves as an uninterrupted run). Without one, a config with `train.init_from`
            forks from that checkpoint (another trial's: its state and history up to then),
            and any other starts from scratch.
        device: overrides `train.device`.
        keep_dir: where the checkpoints of `train.keep_checkpoints` are written as
            checkpoint_<epoch>.pt (default: `checkpoint_dir`); never replaced by later epochs.

    Returns:
        TrainResult with status "finished" or "diverged" (then `message` says at which epoch and
        for which seeds); the history recorded before a divergence is kept.
    """
    reporter = reporter or NullReporter()
    trainer = Trainer(cfg, device)
    tc = cfg.train
    schedule = EvalSchedule.of(tc)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    kept_dir = Path(keep_dir) if keep_dir is not None else ckpt_dir
    if tc.keep_checkpoints and kept_dir is None:
        log.warning("train.keep_checkpoints is set but no checkpoint folder was given: none kept")
    status, message = "finished", ""
    start = time.perf_counter()
    base_elapsed = 0.0

    def checkpoint_due(epoch: int) -> bool:
        return ckpt_dir is not None and (epoch % tc.checkpoint_every == 0 or epoch == tc.epochs)

    def evaluate_and_report() -> None:
        trainer.elapsed = base_elapsed + time.perf_counter() - start
        rec = trainer.record(trainer.evaluate())
        if tc.snapshot_every and (
            trainer.epoch % tc.snapshot_every == 0 or trainer.epoch == tc.epochs
        ):
            reporter.snapshot(trainer.epoch, trainer.weights())
        keep = kept_dir is not None and trainer.epoch in tc.keep_checkpoints
        state = trainer.state_dict() if keep or checkpoint_due(trainer.epoch) else None
        if keep:
            write_checkpoint(state, kept_dir, name=kept_checkpoint_file(trainer.epoch))
        path = write_checkpoint(state, ckpt_dir) if checkpoint_due(trainer.epoch) else None
        reporter.report(rec, path)

    try:
        if resume_from is not None:
            trainer.load(Path(resume_from))
            base_elapsed = trainer.elapsed
            log.info("resumed at epoch %d from %s", trainer.epoch, resume_from)
        elif tc.init_from is not None:
            parent = checkpoint_file(tc.init_from)
            if parent is None:
                raise CheckpointError(
                    f"no checkpoint at {tc.init_from!r}", source="config", key="train.init_from"
                )
            ours = {d.resolve() for d in (ckpt_dir, kept_dir) if d is not None}
            if parent.parent.resolve() in ours:
                raise CheckpointError(
                    f"the fork would write its checkpoints into the folder it forks from "
                    f"({parent.parent}); give it a folder of its own",
                    source=str(parent),
                    key="train.init_from",
                )
            trainer.load(parent, fork=True)
            base_elapsed = trainer.elapsed
            log.info("forked at epoch %d from %s", trainer.epoch, parent)
        else:
            trainer.pretrain_critic()
            evaluate_and_report()
        while trainer.epoch < tc.epochs:
            trainer.train_epoch()
            reporter.on_epoch(trainer.epoch)
            if schedule.due(trainer.epoch):
                evaluate_and_report()
    except Diverged as e:
        status, message = "diverged", str(e)
        log.warning("%s", message)
    trainer.elapsed = base_elapsed + time.perf_counter() - start
    return TrainResult(
        status,
        message,
        cfg,
        trainer.history,
        trainer.seed_values,
        trainer.epoch,
        trainer.elapsed,
        dict(trainer.timings),
    )
