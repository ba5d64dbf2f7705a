"""Interventions: what changes in a trial from epoch `intervention.at` on, and the structure-only
penalty (config sections `intervention`, `structure_penalty`; docs/run-data.md, "Interventions").

An intervention acts on every network update after the evaluation at epoch `at` (the updates of
epochs at + 1, at + 2, ...). Until then the trial is its control's network bit for bit: nothing
here draws from the trial's streams or changes a loss before it acts. With `at: func_onset`,
seed s switches on its own, at the evaluation that decides its functional timing onset
(`func_onset_confirmed`: study.contract.rise's online rule, from the evaluations so far only),
so λ and the frozen entries are per seed, (S,) and (S, ...).

What it does, each part from its key:

- `mi_weight`: λ_s of the penalty from then on. The penalty the base run computes (base λ > 0)
  is still computed with the same draws, only weighted by λ_s (0 where switched off; without a
  gradient when every λ_s is 0), so a seed not yet switched trains on exactly its control's
  batches. A penalty the base run does not compute (base λ = 0, switched on late) draws its row
  sampling and critic noise from its own stream (streams.LATE_PENALTY) for the same reason.
- `freeze`: the entries of each role stop moving. Their gradients are zeroed after the backward
  pass (so they take no part in per-tensor clipping either), the optimiser's state of those
  entries (RMSprop's v, Adam's m and v) is zeroed once when they freeze, so a step moves them by
  exactly lr·0 = 0, and their values are put back after each step as a guard. Roles (the
  designed partition `partition.*` decides between and within):

  ===============  ==========================================  ===============================
  role             leaky RNN                                   GRU
  ===============  ==========================================  ===============================
  w_rec            W_rec (S, N, N)                             U, all three gate blocks
                                                               (S, N, 3N)
  w_in             W_in (S, I, N)                              W, all three gate blocks
                                                               (S, I, 3N)
  w_out            W_out (S, N, O)                             W_out (S, N, O)
  w_rec_between    W_rec[i, j] with g(i) != g(j)               U[i, k·N + j] with g(i) != g(j),
                                                               k = update, reset, candidate
  w_rec_within     W_rec[i, j] with g(i) = g(j) (diagonal too) the same with g(i) = g(j)
  ===============  ==========================================  ===============================

  Biases (b, b_out; the GRU's b, b_rec) keep training.
- `swap_partition`: the penalty moves to another partition with the same group sizes, drawn once
  per trial by `swapped_partition`: a uniformly random relabelling of the units from the stream
  SWAP_PARTITION (seed, 5), redrawn until it is a different partition (not only the groups
  renamed); group g of the new partition shares n_g·n_h/N units with group h of the old one on
  average. The critics are rebuilt for its terms (initialised as at epoch 0) and pre-trained
  (`critic.pretrain_steps`) against the current networks; the evaluation's metrics follow the new
  labels; the null partitions stay (each is a uniform random partition with the same group sizes,
  which is the null of the new partition as much as of the old); the structure penalty acts on
  its between-group entries. The designed partition's metrics are measured too, as
  `<metric>_orig` (names.SWAP_TRACKED), so both can be followed.

`structure_penalty.weight` c adds c·Σ_{g(i) != g(j)} |W_rec[i, j]| per seed to the network loss
(the GRU: over the between-group entries of all three gate blocks of U), on the partition the
penalty acts on, from the first update.

The state (which seeds switched, and whether their switch was applied; the swap; the late
penalty's stream) is part of the checkpoint, so a resumed trial continues bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from study.contract.names import (
    FUNC_ONSET,
    INTERVENED,
    ORIG_SUFFIX,
    SWAP_TRACKED,
    intervention_metrics,
)
from study.contract.rise import confirm_online
from study.core.mi import SubgroupMI
from study.spec import TrialConfig
from study.training import streams
from study.training.evaluation import Evaluation, metric_names
from study.training.reporting import EvalRecord

# the loop's Trainer, which imports this module (named by its role, not imported: no circle)
Trainer = Any

__all__ = [
    "ROLE_PARAMS",
    "PenaltyPlan",
    "Interventions",
    "func_onset_confirmed",
    "same_partition",
    "swapped_partition",
    "between_mask",
    "inherited_records",
]

# role -> the network's parameter of that role, per network kind
ROLE_PARAMS = {
    "leaky": {"w_rec": "w_rec", "w_in": "w_in", "w_out": "w_out"},
    "gru": {"w_rec": "u", "w_in": "w", "w_out": "w_out"},
}
_BLOCK_ROLES = {"w_rec_between": True, "w_rec_within": False}  # role -> between (else within)


def func_onset_confirmed(
    epochs: Sequence[float], q_func_z: Sequence[Sequence[float]], emergence
) -> np.ndarray:
    """Which seeds' functional timing onsets the evaluations so far decide.

    The one place the online decision of `intervention.at: func_onset` is made, by the timing
    onset's owner, :func:`study.contract.rise.confirm_online`, from the past only: a seed's
    q_func_z must be detectable (>= `emergence.z` for `emergence.run` evaluations), its fitted
    logistic rise resolved (the onset: half-way from the first level to the plateau,
    amplitude-invariant), and the bounded window after
    that confirmation observed, so the onset the analysis later reports for the whole run is
    already fixed. Fewer than 3 evaluations decide nothing.

    Args:
        epochs: the evaluation epochs so far, (T,), strictly increasing.
        q_func_z: the seeds' q_func_z at them, (S, T); NaN is a missing evaluation.
        emergence: the trial's `emergence` section (z, run).

    Returns:
        bool array, (S,).
    """
    z = np.asarray(q_func_z, dtype=float)
    return confirm_online(epochs, z, threshold=emergence.z, run=emergence.run)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Labels renamed by order of first appearance: equal for two label vectors iff they are the
    same partition of the units."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label vectors (N,) group the units the same way (up to renaming groups)."""
    return bool(np.array_equal(_canonical(np.asarray(a)), _canonical(np.asarray(b))))


def swapped_partition(labels: np.ndarray, seed: int, max_draws: int = 10_000) -> np.ndarray:
    """The partition `intervention.swap_partition` moves the penalty to.

    A uniformly random permutation of `labels` (every group keeps its size) from the stream
    streams.SWAP_PARTITION of the trial seed, redrawn until it is not the same partition as
    `labels` (a renaming of equal-sized groups would change nothing).

    Args:
        labels: (N,) the designed partition, 2 <= K < N groups.
        seed: the trial seed.

    Raises:
        ValueError: no different partition in `max_draws` draws (K = 1 or K = N: there is none).
    """
    labels = np.asarray(labels)
    rng = streams.SWAP_PARTITION.rng(seed)
    for _ in range(max_draws):
        candidate = rng.permutation(labels)
        if not same_partition(candidate, labels):
            return candidate
    raise ValueError(
        f"swapped_partition(): no partition with group sizes "
        f"{np.bincount(labels).tolist()} differs from the designed one in {max_draws} draws"
    )


def between_mask(labels: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """(N, N) bool: True at [i, j] where units i and j are in different groups."""
    lab = torch.as_tensor(np.asarray(labels), device=device)
    return lab.unsqueeze(1) != lab.unsqueeze(0)


@dataclass(frozen=True)
class PenaltyPlan:
    """How one network step uses the MI penalty.

    Attributes:
        weight: λ, one float for every seed or (S,) per seed.
        gen: the torch generator the penalty samples from.
        grad: False when every λ is 0: the penalty is drawn (the same draws as the base run's)
            but neither differentiated nor added.
    """

    weight: float | Tensor
    gen: torch.Generator
    grad: bool = True


class Interventions:
    """The intervention and structure penalty of one trial (a no-op without either).

    Args:
        trainer: the trial's Trainer, fully built (networks, critics, evaluation).
    """

    def __init__(self, trainer: Trainer):
        cfg: TrialConfig = trainer.cfg
        self.cfg, self.iv = cfg, cfg.intervention
        self.n_seeds, self.device = trainer.n_seeds, trainer.device
        self.configured = self.iv.active
        self.per_seed = self.iv.at == FUNC_ONSET
        self.designed = np.asarray(trainer.labels)
        self.labels = self.designed  # the partition the penalty acts on
        self.swapped = False
        # decided: the intervention acts on the seed's updates from now on; applied: its effects
        # (masks, optimiser state, swap) are in place (a decision at an evaluation is applied at
        # the start of the next epoch, with gradients enabled)
        self.decided = np.zeros(self.n_seeds, dtype=bool)
        self.applied = np.zeros(self.n_seeds, dtype=bool)
        self.switch_epoch = np.full(self.n_seeds, -1, dtype=np.int64)
        self.late_gen: torch.Generator | None = None
        self._frozen: dict[str, Tensor] = {}  # parameter name -> (S, ...) bool, True = frozen
        self._saved: dict[str, Tensor] = {}  # parameter name -> its values to put back
        self._between: Tensor | None = None  # between-group mask of `labels`, cached
        self.metric_names = intervention_metrics(self.iv.swap_partition) if self.configured else ()
        self.orig_eval: Evaluation | None = None
        if self.configured and self.iv.swap_partition:
            # the designed partition's metrics: no communities (NMI of a partition-free
            # detection) and no held-out critic, which the main evaluation already has
            quiet = cfg.train.model_copy(
                update={"communities": False, "heldout_mi_every": 0, "lesion_every": 0}
            )
            self.orig_eval = Evaluation(
                cfg.model_copy(update={"train": quiet}),
                trainer.task,
                self.designed,
                self.device,
                {},
            )

    # -- when ----------------------------------------------------------------------------------
    def intervened(self, epoch: int) -> np.ndarray:
        """(S,) bool: the intervention acts on each seed's updates after the evaluation at
        `epoch` (decided; for an int `at`, from `at` on)."""
        if not self.configured:
            return np.zeros(self.n_seeds, dtype=bool)
        if self.per_seed:
            return self.decided.copy()
        return np.full(self.n_seeds, epoch >= self.iv.at)

    def begin_epoch(self, trainer: Trainer) -> None:
        """Before the updates of epoch trainer.epoch + 1: an int `at` reached switches every
        seed; decisions not applied yet take effect."""
        if not self.configured:
            return
        if not self.per_seed and trainer.epoch >= self.iv.at and not self.decided.all():
            self._decide(~self.decided, trainer.epoch)
        if (self.decided & ~self.applied).any():
            self._apply(trainer, restoring=False)

    def _decide(self, seeds: np.ndarray, epoch: int) -> None:
        self.decided |= seeds
        self.switch_epoch[seeds] = epoch

    def evaluate(
        self, trainer: Trainer, batch: Sequence[Tensor | None], res: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """The intervention's curve metrics at this evaluation (names.intervention_metrics),
        each (S,); with `func_onset`, the seeds whose onset this evaluation confirms switch.

        Args:
            trainer: the Trainer (its history holds the evaluations before this one).
            batch: the evaluation batch the metrics in `res` were computed on.
            res: this evaluation's metrics, name -> (S,).
        """
        if not self.configured:
            return {}
        out: dict[str, Tensor] = {}
        if self.orig_eval is not None:  # the designed partition's metrics
            if self.swapped:
                orig = self.orig_eval.run(
                    trainer.net,
                    batch,
                    mi=None,
                    gen=trainer.streams.eval_gen,  # unused without critics: nothing is drawn
                    w_rec0=trainer.w_rec0,
                    epoch=trainer.epoch,
                    rec0=trainer.rec0,
                )
            else:
                orig = res
            out.update({f"{m}{ORIG_SUFFIX}": orig[m].clone() for m in SWAP_TRACKED})
        if self.per_seed:
            epochs = [r.epoch for r in trainer.history] + [trainer.epoch]
            z = res["q_func_z"].double().cpu().numpy()
            todo = np.flatnonzero(~self.decided)
            past = np.array(
                [[r.metrics["q_func_z"][s] for r in trainer.history] + [z[s]] for s in todo],
                dtype=float,
            ).reshape(todo.size, len(epochs))
            if todo.size:
                now = todo[func_onset_confirmed(epochs, past, self.cfg.emergence)]
                if now.size:
                    self._decide(np.isin(np.arange(self.n_seeds), now), trainer.epoch)
        out[INTERVENED] = torch.as_tensor(
            self.intervened(trainer.epoch).astype(np.float32), device=self.device
        )
        return out

    # -- what ----------------------------------------------------------------------------------
    def _apply(self, trainer: Trainer, *, restoring: bool) -> None:
        """Put the effects of the decided seeds in place. `restoring` (a checkpoint load): the
        structure only (partition, critics' layout, masks); the optimiser state and the critics'
        weights come from the checkpoint, and nothing is drawn or trained."""
        seeds = self.decided & (~self.applied if not restoring else self.applied)
        if not seeds.any():
            return
        iv = self.iv
        if iv.swap_partition and not self.swapped:
            self._swap(trainer, pretrain=not restoring)
        if iv.freeze:
            self._freeze(trainer, seeds, clear=not restoring)
        late = self.cfg.mi.weight == 0 and iv.mi_weight is not None and iv.mi_weight > 0
        if late and self.late_gen is None:
            self.late_gen = streams.LATE_PENALTY.generator(self.cfg.seed, self.device)
        self.applied |= seeds

    def _swap(self, trainer: Trainer, *, pretrain: bool) -> None:
        """The penalty, its critics and the evaluation move to the swapped partition."""
        self.labels = swapped_partition(self.designed, self.cfg.seed)
        self._between = None
        self.swapped = True
        trainer.evaluation.labels = self.labels
        trainer.mi = SubgroupMI.from_config(self.cfg, self.labels).to(self.device)
        if pretrain:
            trainer.pretrain_critic()

    def _freeze(self, trainer: Trainer, seeds: np.ndarray, *, clear: bool) -> None:
        """Freeze the roles of `intervention.freeze` for `seeds` (S,) bool."""
        net, n = trainer.net, self.cfg.network.hidden
        names = ROLE_PARAMS[self.cfg.network.kind]
        by_seed = torch.as_tensor(seeds, device=self.device)
        for role in self.iv.freeze:
            name = names.get(role, names["w_rec"])
            p = getattr(net, name)
            if role in _BLOCK_ROLES:
                block = between_mask(self.designed, self.device)
                if not _BLOCK_ROLES[role]:
                    block = ~block
                entries = block.repeat(1, p.shape[-1] // n)  # the GRU's three gate blocks
            else:
                entries = torch.ones(p.shape[1:], dtype=torch.bool, device=self.device)
            mask = by_seed.view(-1, *([1] * entries.dim())) & entries.unsqueeze(0)
            old = self._frozen.get(name)
            new = mask if old is None else (old | mask)
            if clear:
                trainer.optimizer.clear_state(p, new if old is None else (new & ~old))
            self._frozen[name] = new
            self._saved.pop(name, None)  # re-taken before the next step

    # -- the network step -----------------------------------------------------------------------
    def penalty_plan(self, train_gen: torch.Generator) -> PenaltyPlan | None:
        """How the next network step uses the MI penalty; None: it does not compute it."""
        base = self.cfg.mi.weight
        new = self.iv.mi_weight if self.configured else None
        if new is None or new == base or not self.applied.any():
            return PenaltyPlan(base, train_gen) if base > 0 else None
        gen = train_gen if base > 0 else self.late_gen
        if self.applied.all():
            return PenaltyPlan(new, gen, grad=new > 0)
        weight = np.where(self.applied, new, base).astype(np.float32)
        return PenaltyPlan(torch.as_tensor(weight, device=self.device), gen)

    def structure_loss(self, net) -> Tensor | None:
        """(S,) c·Σ |W_rec| over the between-group entries of the penalised partition; None
        when `structure_penalty.weight` is 0."""
        c = self.cfg.structure_penalty.weight
        if c == 0:
            return None
        if self._between is None:
            self._between = between_mask(self.labels, self.device)
        w = getattr(net, ROLE_PARAMS[self.cfg.network.kind]["w_rec"])
        mask = self._between.repeat(1, w.shape[-1] // self.cfg.network.hidden)
        return c * (w.abs() * mask).flatten(1).sum(dim=1)

    def mask_gradients(self, net) -> None:
        """Zero the gradients of the frozen entries (after backward, before the step)."""
        for name, frozen in self._frozen.items():
            p = getattr(net, name)
            if name not in self._saved:
                self._saved[name] = p.detach().clone()
            if p.grad is not None:
                p.grad.masked_fill_(frozen, 0.0)

    @torch.no_grad()
    def restore(self, net) -> None:
        """Put the frozen entries' values back (after the step): a guard, they did not move."""
        for name, frozen in self._frozen.items():
            p = getattr(net, name)
            p.copy_(torch.where(frozen, self._saved[name], p))

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any] | None:
        """Plain data and CPU tensors: the decisions, which of them are applied, the swap and
        the late penalty's stream; None without an intervention."""
        if not self.configured:
            return None
        return {
            "decided": self.decided.tolist(),
            "applied": self.applied.tolist(),
            "switch_epoch": self.switch_epoch.tolist(),
            "swapped": self.swapped,
            "late_gen": self.late_gen.get_state() if self.late_gen is not None else None,
        }

    def load_state(self, state: Mapping[str, Any] | None, trainer: Trainer) -> None:
        """Restore `state()`'s output before the modules are loaded (a swap rebuilds the
        critics for the new partition, whose weights the checkpoint then fills in)."""
        if not self.configured or state is None:
            return
        self.decided = np.asarray(state["decided"], dtype=bool)
        self.applied = np.asarray(state["applied"], dtype=bool)
        self.switch_epoch = np.asarray(state["switch_epoch"], dtype=np.int64)
        if state["swapped"] and not self.swapped:
            self._swap(trainer, pretrain=False)
        self._apply(trainer, restoring=True)
        if state["late_gen"] is not None:
            if self.late_gen is None:
                self.late_gen = streams.LATE_PENALTY.generator(self.cfg.seed, self.device)
            self.late_gen.set_state(state["late_gen"])


def inherited_records(records: Sequence[EvalRecord], cfg: TrialConfig) -> list[EvalRecord]:
    """The evaluations a fork inherits from its parent, with the fork's metric names: the
    intervention's `intervened` is what it is in the unforked arm (0, or 1 at an `at` equal to
    the fork's epoch: it acts on the updates after it), a `<metric>_orig` is the metric
    itself (the partition was the designed one), and a metric the parent did not log is NaN."""
    swap = cfg.intervention.active and cfg.intervention.swap_partition
    wanted = metric_names(cfg) + (intervention_metrics(swap) if cfg.intervention.active else ())
    out = []
    for rec in records:
        n = len(next(iter(rec.metrics.values()), ()))
        metrics = {}
        for name in wanted:
            if name in rec.metrics:
                metrics[name] = rec.metrics[name]
            elif name == INTERVENED:  # from an int `at` on (a fork's starts at the fork)
                at = cfg.intervention.at
                metrics[name] = (float(isinstance(at, int) and rec.epoch >= at),) * n
            elif name.endswith(ORIG_SUFFIX) and name.removesuffix(ORIG_SUFFIX) in rec.metrics:
                metrics[name] = rec.metrics[name.removesuffix(ORIG_SUFFIX)]
            else:
                metrics[name] = (float("nan"),) * n
        out.append(EvalRecord(rec.epoch, metrics, rec.elapsed))
    return out
