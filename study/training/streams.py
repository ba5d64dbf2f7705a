"""Every random-number stream of a trial, in one table.

A trial draws random numbers for several jobs. Each job has a stream of its own, derived from the
trial's `seed` and a fixed key, so that how much one job draws never shifts what another draws:

- evaluation never perturbs training: evaluating more or less often (`train.eval_every`), on a
  fixed batch (`train.eval_fixed`) or with a held-out critic (`train.heldout_mi_every`) leaves
  the training curves bit for bit as they were;
- member i of a population starts from the same weights whatever S is;
- a resumed run continues the live streams where its checkpoint left them
  (`TrialStreams.state`), so it gives the curves of an uninterrupted run.

The keys are part of the recorded behaviour: changing one changes every curve.

=================  =========================  ======================  ===========================
stream             NumPy generator            torch generator         feeds
=================  =========================  ======================  ===========================
TRAIN              default_rng([seed, 1])     seed·7919 + 1           training and critic batches
                                                                      (task sampling; x0, state
                                                                      noise and device-sampled
                                                                      tasks), the critics' and
                                                                      the penalty's sampling
EVAL               default_rng([seed, 2])     seed·7919 + 2           evaluation batches and the
                                                                      training critic's `mi`
NULL_PARTITIONS    default_rng([seed, 3])     --                      the R random partitions of
                                                                      the z-scores, drawn once
FIXED_EVAL         default_rng([seed, 4])     seed·7919 + 4           the fixed evaluation batch,
                                                                      rebuilt at each evaluation
SWAP_PARTITION     default_rng([seed, 5])     --                      the partition the penalty
                                                                      moves to (intervention.
                                                                      swap_partition)
LATE_PENALTY       --                         seed·7919 + 6           the sampling of an MI
                                                                      penalty an intervention
                                                                      switches on (base λ = 0)
heldout_mi_seed    SeedSequence([seed, epoch, 0x686F]) -> uint32      the held-out critic of the
                                                                      evaluation at `epoch`
member_seeds       seed + i                                           member i's initial weights
critic replicas    SeedSequence([seed + s, p, 0x6D69]) -> uint32      initial weights of the
                                                                      critic of member s, term p
=================  =========================  ======================  ===========================

The last two are derived where they are used, in the science core (which does not import the
training layer): `study.core.networks.member_generators` seeds member i with `seed + i` (the
same integers as `member_seeds`, which the loop and the community detection use), and
`study.core.mi.SubgroupMI` seeds its critics from `SeedSequence([seed + s, p, 0x6D69])`. Not a
trial stream: the chaos task's sequence pools come from `task.chaos.data_seed`, shared by all
trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "Stream",
    "TRAIN",
    "EVAL",
    "NULL_PARTITIONS",
    "FIXED_EVAL",
    "SWAP_PARTITION",
    "LATE_PENALTY",
    "STREAMS",
    "HELDOUT_MI_KEY",
    "heldout_mi_seed",
    "member_seeds",
    "TrialStreams",
]

# torch seed of stream k: seed·7919 + k; the stride exceeds every key, so no two (seed, stream)
# pairs share a torch seed
TORCH_STRIDE = 7919


@dataclass(frozen=True)
class Stream:
    """One row of the table: a key that, with the trial seed, gives a NumPy and a torch stream.

    Attributes:
        name: what the stream is called in messages and tests.
        key: the fixed key; NumPy entropy [seed, key], torch seed seed·TORCH_STRIDE + key.
        feeds: what draws from it.
    """

    name: str
    key: int
    feeds: str

    def entropy(self, seed: int) -> list[int]:
        """The NumPy seed sequence [seed, key] (what `np.random.default_rng` is given)."""
        return [seed, self.key]

    def rng(self, seed: int) -> np.random.Generator:
        """A fresh NumPy generator (PCG64) of this stream."""
        return np.random.default_rng(self.entropy(seed))

    def generator(self, seed: int, device: torch.device | str) -> torch.Generator:
        """A fresh torch generator of this stream on `device`."""
        return torch.Generator(device=device).manual_seed(seed * TORCH_STRIDE + self.key)


TRAIN = Stream("train", 1, "training and critic batches; the critics' and the penalty's sampling")
EVAL = Stream("eval", 2, "evaluation batches; the training critic's measurement `mi`")
NULL_PARTITIONS = Stream("null_partitions", 3, "the random partitions of the z-scores")
FIXED_EVAL = Stream("fixed_eval", 4, "the fixed evaluation batch (train.eval_fixed)")
SWAP_PARTITION = Stream(
    "swap_partition", 5, "the partition the penalty moves to (intervention.swap_partition)"
)
LATE_PENALTY = Stream(
    "late_penalty", 6, "the row sampling and critic noise of a penalty switched on late"
)
STREAMS = (TRAIN, EVAL, NULL_PARTITIONS, FIXED_EVAL, SWAP_PARTITION, LATE_PENALTY)

HELDOUT_MI_KEY = 0x686F  # "ho": the held-out critic's stream


def heldout_mi_seed(seed: int, epoch: int) -> int:
    """The seed of the held-out MI critic of the evaluation at `epoch` (its initialisation, the
    train/test split, minibatches and noise): one uint32 of SeedSequence([seed, epoch, 0x686F]),
    so each evaluation gets an independent critic that a resumed run draws again identically."""
    return int(np.random.SeedSequence([seed, epoch, HELDOUT_MI_KEY]).generate_state(1)[0])


def member_seeds(seed: int, n_seeds: int) -> list[int]:
    """The integer seed of each population member: seed + i, whatever S is (the networks'
    initialisation, `study.core.networks.member_generators`, uses the same integers)."""
    return [seed + i for i in range(n_seeds)]


class TrialStreams:
    """The live streams of one trial: TRAIN and EVAL, each as a NumPy and a torch generator.

    Args:
        seed: the trial's seed.
        device: where the torch generators draw (the training device).
    """

    def __init__(self, seed: int, device: torch.device | str):
        self.seed, self.device = seed, device
        self.train_rng = TRAIN.rng(seed)
        self.eval_rng = EVAL.rng(seed)
        self.train_gen = TRAIN.generator(seed, device)
        self.eval_gen = EVAL.generator(seed, device)

    def for_batch(
        self, evaluating: bool, fixed: bool
    ) -> tuple[np.random.Generator, torch.Generator]:
        """The (NumPy, torch) generators of a batch: training, evaluation, or (evaluating with
        `fixed`) a fresh FIXED_EVAL pair, so every evaluation sees the same batch."""
        if evaluating and fixed:
            return FIXED_EVAL.rng(self.seed), FIXED_EVAL.generator(self.seed, self.device)
        if evaluating:
            return self.eval_rng, self.eval_gen
        return self.train_rng, self.train_gen

    def state(self) -> dict[str, Any]:
        """The generators' states as plain data and CPU tensors (a checkpoint's "rng")."""
        return {
            "data": self.train_rng.bit_generator.state,
            "eval": self.eval_rng.bit_generator.state,
            "gen": self.train_gen.get_state(),
            "eval_gen": self.eval_gen.get_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue every stream where `state` (from `state()`) left it."""
        self.train_rng.bit_generator.state = state["data"]
        self.eval_rng.bit_generator.state = state["eval"]
        self.train_gen.set_state(state["gen"])
        self.eval_gen.set_state(state["eval_gen"])
