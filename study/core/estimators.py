"""MI lower bounds as small registered objects, and the row sampling they share.

An estimator turns the critics' scores on the two sides (a, b) of every (seed, term) replica
into a bound and the surrogate its gradients follow; `study.core.mi.SubgroupMI` owns the critics,
the noise on their inputs and the optimiser, and calls `estimator.bound(mi, a, b, gen, ...)`.
A new estimator is one class here with `@register_estimator` and its name in
`study.contract.names.ESTIMATOR_NAMES` (the list config.py validates `mi.estimator` against; a test
checks both agree). Its options are `mi.*` config keys named in `options`.

Every bound consumes the torch generator in a fixed order (permutations, then the noise on a,
then on b), which keeps runs bit-for-bit reproducible from their seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from study.core.mi import SubgroupMI

__all__ = ["Estimator", "ESTIMATORS", "register_estimator", "make_estimator",
           "estimator_from_config", "DV", "MINE", "InfoNCE", "random_permutations",
           "take_rows", "log_mean_exp"]


def random_permutations(rows: int, m: int, gen: torch.Generator, device: torch.device) -> Tensor:
    """(rows, m) independent uniform permutations of range(m).

    On CPU, one O(m) randperm per row beats sorting random keys; on a GPU one argsort is a single
    kernel while per-row calls would each pay a launch.
    """
    if torch.device(device).type == "cpu":
        return torch.stack([torch.randperm(m, generator=gen) for _ in range(rows)])
    return torch.rand(rows, m, generator=gen, device=device).argsort(dim=1)


def take_rows(x: Tensor, index: Tensor) -> Tensor:
    """x (R, M, d), index (R, M') -> (R, M', d) with out[r, j] = x[r, index[r, j]].

    One index_select over the flattened rows: several times faster than gather on CPU.
    """
    r, m, d = x.shape
    offsets = torch.arange(r, device=x.device).unsqueeze(1) * m
    flat = x.reshape(r * m, d).index_select(0, (index + offsets).flatten())
    return flat.view(r, index.shape[1], d)


def log_mean_exp(x: Tensor) -> Tensor:
    """log mean e^x over the last axis, always in (at least) float32: bf16 scores would lose
    the few nats of the bound in the exponentials' rounding."""
    if x.dtype in (torch.bfloat16, torch.float16):
        x = x.float()
    return torch.logsumexp(x, dim=-1) - math.log(x.shape[-1])


class Estimator:
    """One MI lower bound. Subclasses set `name` and `options` and implement `bound`.

    `options` are the `mi.*` config keys (and `SubgroupMI` keywords) the estimator reads; they
    become its constructor's keyword arguments.
    """

    name: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, mi_cfg: Any) -> Estimator:
        """The estimator with its options read from an `MIConfig`."""
        return cls(**{key: getattr(mi_cfg, key) for key in cls.options})

    def bound(self, mi: SubgroupMI, a: Tensor, b: Tensor, gen: torch.Generator, *,
              update_ema: bool) -> tuple[Tensor, Tensor]:
        """(value, surrogate), each (R,): the bound, and what the critics' gradients follow.

        a (R, M, da), b (R, M, db) are the sampled sides; `update_ema` is True only in a
        critic update (a bound with running statistics advances them then).
        """
        raise NotImplementedError(f"{type(self).__name__} must define bound()")

    def network_penalty(self, value: Tensor, surrogate: Tensor) -> Tensor:
        """The differentiable (S,) penalty the network minimises, from the (S,) sums over terms
        of the value and the surrogate. By default the bound itself."""
        return value


ESTIMATORS: dict[str, type[Estimator]] = {}


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make `cls` available as `mi.estimator: <cls.name>`."""
    if not cls.name:
        raise ValueError(f"register_estimator(): {cls.__name__} has no name")
    ESTIMATORS[cls.name] = cls
    return cls


def _lookup(name: str, where: str) -> type[Estimator]:
    if name not in ESTIMATORS:
        raise ValueError(f"{where}: estimator must be one of {tuple(ESTIMATORS)}, but got "
                         f"{name!r}")
    return ESTIMATORS[name]


def make_estimator(name: str, options: Mapping[str, Any], *,
                   where: str = "SubgroupMI") -> Estimator:
    """The estimator `name` with the options it reads taken from `options`.

    Options of other estimators are ignored (callers pass every estimator's options, as a
    config does); a key that no registered estimator reads is a TypeError.
    """
    cls = _lookup(name, where)
    known = {key for c in ESTIMATORS.values() for key in c.options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"{where}: unexpected estimator option(s) {', '.join(unknown)}")
    return cls(**{key: options[key] for key in cls.options if key in options})


def estimator_from_config(mi_cfg: Any) -> Estimator:
    """The estimator an `MIConfig` names, with its options."""
    return _lookup(mi_cfg.estimator, "SubgroupMI").from_config(mi_cfg)


def shuffled_scores(mi: SubgroupMI, a: Tensor, b: Tensor, gen: torch.Generator
                    ) -> tuple[Tensor, Tensor]:
    """Critic scores on joint pairs and on shuffled (product-of-marginals) pairs, (R, M) each.

    The shuffled partner is a fresh permutation of b: of the noise-free b in clean_partner mode,
    of the noisy b in noisy_partner mode (see SubgroupMI).
    """
    r, m, _ = a.shape
    perm = random_permutations(r, m, gen, a.device)  # fresh each call
    if mi.input_noise > 0:
        a = mi.add_noise(a, "a", gen)
        b_noisy = mi.add_noise(b, "b", gen)
    else:
        b_noisy = b
    partner_source = b if mi.noise_mode == "clean_partner" else b_noisy
    b_shuf = take_rows(partner_source, perm)
    # a's projection is shared by both branches (the first layer is a sum of two dense maps)
    ha = mi.critic.project_a(a)  # (R, M, H)
    joint = mi.critic.head(ha + mi.critic.project_b(b_noisy))
    shuffled = mi.critic.head(ha + mi.critic.project_b(b_shuf))
    return joint, shuffled


@register_estimator
class DV(Estimator):
    """The plain Donsker–Varadhan bound with shuffled marginals (the paper's, method.md §4.4)."""

    name = "dv"

    def bound(self, mi, a, b, gen, *, update_ema):
        joint, shuffled = shuffled_scores(mi, a, b, gen)
        value = joint.mean(dim=1) - log_mean_exp(shuffled)
        return value, value


@register_estimator
class MINE(Estimator):
    """DV with the moving-average gradient correction of Belghazi et al. 2018.

    The gradient of log E[e^T] is replaced by ∇E[e^T] / EMA(E[e^T]) to remove the minibatch
    bias; the EMA (in log space) is `mi.log_ema`, part of the checkpointed state, advanced by
    `ema_rate` in critic updates. The value reported is still the DV bound.
    """

    name = "mine"
    options = ("ema_rate",)

    def __init__(self, ema_rate: float = 0.01):
        self.ema_rate = ema_rate

    def bound(self, mi, a, b, gen, *, update_ema):
        joint, shuffled = shuffled_scores(mi, a, b, gen)
        log_m = log_mean_exp(shuffled)  # log mean e^T over shuffled pairs
        value = joint.mean(dim=1) - log_m
        log_ema = mi.log_ema
        current = log_m.detach()
        if update_ema:
            rate = self.ema_rate
            fresh = torch.isnan(log_ema)
            mixed = torch.logaddexp(log_ema + math.log1p(-rate), current + math.log(rate))
            log_ema = torch.where(fresh, current, mixed)
            mi.log_ema.copy_(log_ema)
        log_ema = torch.where(torch.isnan(log_ema), current, log_ema)
        surrogate = joint.mean(dim=1) - torch.exp(log_m - log_ema)
        return value, surrogate

    def network_penalty(self, value, surrogate):
        # gradient of the corrected surrogate, value of the DV bound
        return surrogate - surrogate.detach() + value.detach()


@register_estimator
class InfoNCE(Estimator):
    """InfoNCE: each row against the other rows of its block of `nce_block` (≤ ln nce_block)."""

    name = "infonce"
    options = ("nce_block",)

    def __init__(self, nce_block: int = 128):
        self.nce_block = nce_block

    def bound(self, mi, a, b, gen, *, update_ema):
        r, m, _ = a.shape
        k = self.nce_block
        n_blocks = m // k
        order = random_permutations(r, m, gen, a.device)[:, : n_blocks * k]
        a = take_rows(a, order)
        b = take_rows(b, order)
        if mi.input_noise > 0:
            a = mi.add_noise(a, "a", gen)
            b = mi.add_noise(b, "b", gen)
        ha = mi.critic.project_a(a).view(r, n_blocks, k, 1, -1)
        hb = mi.critic.project_b(b).view(r, n_blocks, 1, k, -1)
        pre = (ha + hb).reshape(r, n_blocks * k * k, -1)  # every (i, j) within a block
        scores = mi.critic.head(pre).view(r, n_blocks, k, k)
        diag = scores.diagonal(dim1=2, dim2=3)
        value = (diag - torch.logsumexp(scores, dim=3) + math.log(k)).mean(dim=(1, 2))
        return value, value
