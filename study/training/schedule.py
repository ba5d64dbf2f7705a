"""When a trial evaluates: a regular cadence, an optional dense start, light evaluations.

The regular evaluations are epoch 0, every multiple of `train.eval_every` and the last epoch;
checkpoints, snapshots and the held-out MI run on them only. With `train.dense_until` = D > 0 the
trial also evaluates every `train.dense_every` epochs up to epoch D, where the onsets happen. The
schedule is a pure function of the config and the epoch, so a resumed run evaluates where an
uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from study.spec import TrainConfig

__all__ = ["EvalSchedule"]


def _multiples_below(bound: int, step: int) -> int:
    """#{e in [0, bound): e % step == 0} for bound >= 0."""
    return (bound + step - 1) // step if bound > 0 else 0


@dataclass(frozen=True)
class EvalSchedule:
    """The evaluation epochs of a trial of `epochs` epochs.

    Attributes:
        epochs: the last epoch (`train.epochs`).
        every: the regular interval (`train.eval_every`).
        dense_until: the last epoch of the dense phase (`train.dense_until`; 0 = none).
        dense_every: the interval in the dense phase (`train.dense_every`).
        light: whether dense evaluations off the regular cadence are light
            (`train.dense_light`).
    """

    epochs: int
    every: int
    dense_until: int = 0
    dense_every: int = 1
    light: bool = True

    @classmethod
    def of(cls, train: TrainConfig) -> EvalSchedule:
        return cls(
            train.epochs, train.eval_every, train.dense_until, train.dense_every, train.dense_light
        )

    def regular(self, epoch: int) -> bool:
        """Epoch 0, a multiple of `every`, or the last epoch."""
        return epoch % self.every == 0 or epoch == self.epochs

    def dense(self, epoch: int) -> bool:
        """In the dense phase: a multiple of `dense_every` no later than `dense_until`."""
        return epoch <= self.dense_until and epoch % self.dense_every == 0

    def due(self, epoch: int) -> bool:
        """Whether the trial evaluates at `epoch` (0 <= epoch <= epochs)."""
        return 0 <= epoch <= self.epochs and (self.regular(epoch) or self.dense(epoch))

    def is_light(self, epoch: int) -> bool:
        """A dense evaluation off the regular cadence, with `light` on."""
        return self.light and self.dense(epoch) and not self.regular(epoch)

    def index(self, epoch: int) -> int:
        """How many evaluations the schedule has before `epoch` (the position of `epoch`'s
        evaluation when it is due), by counting, never by listing them."""
        bound = min(epoch, self.epochs + 1)
        if bound <= 0:
            return 0
        dense_bound = min(bound, self.dense_until + 1)
        both = self.every * self.dense_every // math.gcd(self.every, self.dense_every)
        count = (
            _multiples_below(bound, self.every)
            + _multiples_below(dense_bound, self.dense_every)
            - _multiples_below(dense_bound, both)
        )
        last = self.epochs
        if last < epoch and last % self.every and not self.dense(last):
            count += 1
        return count

    def count(self) -> int:
        """The number of evaluations of the whole trial."""
        return self.index(self.epochs + 1)

    def dense_extra(self) -> int:
        """How many evaluations the dense phase adds to the regular ones."""
        return self.count() - EvalSchedule(self.epochs, self.every).count()
