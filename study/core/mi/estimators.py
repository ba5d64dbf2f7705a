"""MI lower bounds as small registered objects, and the row sampling they share.

An estimator turns the critic's scores on the two sides (a, b) of every (seed, term) replica
into a bound and the surrogate its gradients follow. It is handed everything it uses: the critic
(`study.core.mi.critic.Critic`), the input-noise policy (`NoisePolicy`; `SubgroupMI` passes its
`InputNoise`) and the generator. An estimator with running statistics (MINE's moving average)
owns them: `reset` sizes them for R replicas, `state_dict`/`load_state_dict` checkpoint them.

A new estimator is one class here with `@register_estimator` and its name in
`study.contract.names.ESTIMATOR_NAMES` (the list config.py validates `mi.estimator` against; a
test checks both agree). Its options are `mi.*` config keys named in `options`.

Every bound consumes the torch generator in a fixed order (permutations, then the noise on a,
then on b), which keeps runs bit-for-bit reproducible from their seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from study.core import _critic
from study.core.mi.critic import Critic

__all__ = [
    "Estimator",
    "ESTIMATORS",
    "register_estimator",
    "make_estimator",
    "estimator_from_config",
    "DV",
    "MINE",
    "InfoNCE",
    "NoisePolicy",
    "shuffled_scores",
    "shuffled_stats",
    "random_permutations",
    "take_rows",
    "log_mean_exp",
]


class NoisePolicy(Protocol):
    """The noise on the critic's inputs, as an estimator sees it (`penalty.InputNoise`)."""

    def noisy(self, a: Tensor, b: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(a + ε, b + ε′, partner): the noisy sides, each shaped like its input, and the b the
        shuffled partner is drawn from (the noise-free or the noisy one). Draws ε before ε′,
        nothing when there is no noise."""
        ...


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
    become its constructor's keyword arguments. An estimator with running state overrides
    `reset`, `state_dict` and `load_state_dict`; the others keep none.
    """

    name: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, mi_cfg: Any) -> Estimator:
        """The estimator with its options read from an `MIConfig`."""
        return cls(**{key: getattr(mi_cfg, key) for key in cls.options})

    def bound(
        self,
        critic: Critic,
        noise: NoisePolicy,
        a: Tensor,
        b: Tensor,
        gen: torch.Generator,
        *,
        update_state: bool,
    ) -> tuple[Tensor, Tensor]:
        """(value, surrogate), each (R,): the bound, and what the critic's gradients follow.

        a (R, M, da), b (R, M, db) are the sampled sides, before noise; `noise` adds it;
        `update_state` is True only in a critic update (a bound with running statistics
        advances them then).
        """
        raise NotImplementedError(f"{type(self).__name__} must define bound()")

    def network_penalty(self, value: Tensor, surrogate: Tensor) -> Tensor:
        """The differentiable (S,) penalty the network minimises, from the (S,) sums over terms
        of the value and the surrogate. By default the bound itself."""
        return value

    def reset(self, n_replicas: int) -> None:
        """Start the running state afresh for R = n_replicas replicas (none by default)."""

    def state_dict(self) -> dict[str, Tensor]:
        """The running state, as tensors (empty by default)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore `state_dict()`'s output; ValueError when it does not fit this estimator."""
        if state:
            raise ValueError(
                f"estimator {self.name!r} keeps no state, but the saved state "
                f"holds {', '.join(sorted(state))}"
            )


ESTIMATORS: dict[str, type[Estimator]] = {}


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make `cls` available as `mi.estimator: <cls.name>`."""
    if not cls.name:
        raise ValueError(f"register_estimator(): {cls.__name__} has no name")
    ESTIMATORS[cls.name] = cls
    return cls


def _lookup(name: str, where: str) -> type[Estimator]:
    if name not in ESTIMATORS:
        raise ValueError(
            f"{where}: estimator must be one of {tuple(ESTIMATORS)}, but got {name!r}"
        )
    return ESTIMATORS[name]


def make_estimator(
    name: str, options: Mapping[str, Any], *, where: str = "SubgroupMI"
) -> Estimator:
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


def shuffled_scores(
    critic: Critic, noise: NoisePolicy, a: Tensor, b: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Critic scores on joint pairs and on shuffled (product-of-marginals) pairs, (R, M) each.

    The shuffled partner is a fresh permutation of the b `noise` names as the partner: the
    noise-free b in clean_partner mode, the noisy b in noisy_partner mode (see SubgroupMI).
    """
    r, m, _ = a.shape
    perm = random_permutations(r, m, gen, a.device)  # fresh each call
    a, b_noisy, partner_source = noise.noisy(a, b, gen)
    if _critic.usable(critic, a):
        # the compiled pass (study/core/_critic.py): both branches together; a noisy partner
        # is b_noisy's rows permuted, so b's projection is computed once
        if partner_source is b_noisy:
            scores = _critic.critic_scores(critic, a, b_noisy, perm=perm)
        else:
            scores = _critic.critic_scores(critic, a, b_noisy, take_rows(partner_source, perm))
        return scores[:, :m], scores[:, m:]
    b_shuf = take_rows(partner_source, perm)
    # a's projection is shared by both branches (the first layer is a sum of two dense maps)
    ha = critic.project_a(a)  # (R, M, H)
    joint = critic.head(ha + critic.project_b(b_noisy))
    shuffled = critic.head(ha + critic.project_b(b_shuf))
    return joint, shuffled


def shuffled_stats(
    critic: Critic, noise: NoisePolicy, a: Tensor, b: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(mean score on joint pairs, log mean e^score on shuffled pairs), each (R,): what DV and
    MINE read of `shuffled_scores`, drawn the same way.

    A critic update on the compiled path computes both, and their gradients, in one pass that
    never keeps the activations (`study.core._critic.critic_stats`); elsewhere the scores are
    computed and reduced (the same operations as before on the torch path).
    """
    updating = torch.is_grad_enabled() and critic.w_a.requires_grad
    if updating and _critic.usable(critic, a):
        r, m, _ = a.shape
        perm = random_permutations(r, m, gen, a.device)  # the same draws as shuffled_scores
        a, b_noisy, partner_source = noise.noisy(a, b, gen)
        if partner_source is b_noisy:
            return _critic.critic_stats(critic, a, b_noisy, perm=perm)
        return _critic.critic_stats(critic, a, b_noisy, take_rows(partner_source, perm))
    joint, shuffled = shuffled_scores(critic, noise, a, b, gen)
    return joint.mean(dim=1), log_mean_exp(shuffled)


@register_estimator
class DV(Estimator):
    """The plain Donsker–Varadhan bound with shuffled marginals (docs/method.md §4.4)."""

    name = "dv"

    def bound(self, critic, noise, a, b, gen, *, update_state):
        joint_mean, log_m = shuffled_stats(critic, noise, a, b, gen)
        value = joint_mean - log_m
        return value, value


@register_estimator
class MINE(Estimator):
    """DV with the moving-average gradient correction of Belghazi et al. 2018.

    The gradient of log E[e^T] is replaced by ∇E[e^T] / EMA(E[e^T]) to remove the minibatch
    bias. The EMA, in log space, is this object's `log_ema` (R,) — NaN until the first critic
    update, advanced by `ema_rate` in critic updates only, checkpointed through `state_dict`.
    The value reported is still the DV bound.
    """

    name = "mine"
    options = ("ema_rate",)

    def __init__(self, ema_rate: float = 0.01):
        self.ema_rate = ema_rate
        self.log_ema: Tensor | None = None  # (R,) float32, set by reset()

    def reset(self, n_replicas: int) -> None:
        self.log_ema = torch.full((n_replicas,), float("nan"))

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.log_ema is None else {"log_ema": self.log_ema.clone()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        saved = state.get("log_ema")
        if set(state) != {"log_ema"} or not isinstance(saved, Tensor) or saved.dim() != 1:
            raise ValueError(
                f"estimator 'mine' expects its state to be {{'log_ema': (R,) "
                f"tensor}}, but got keys {sorted(state)}"
            )
        if self.log_ema is None:
            self.reset(saved.shape[0])
        if saved.shape != self.log_ema.shape:
            raise ValueError(
                f"estimator 'mine': log_ema must have shape "
                f"{tuple(self.log_ema.shape)}, but got {tuple(saved.shape)}"
            )
        self.log_ema.copy_(saved)

    def _moving_average(self, like: Tensor) -> Tensor:
        """`log_ema` on the device of `like` (R,), created on first use without `reset`."""
        if self.log_ema is None:
            self.reset(like.shape[0])
        if self.log_ema.shape != like.shape:
            raise ValueError(
                f"estimator 'mine': its moving average covers "
                f"{self.log_ema.shape[0]} replicas, but the critic has "
                f"{like.shape[0]}; call reset(n_replicas)"
            )
        if self.log_ema.device != like.device:  # the penalty was moved with .to(device)
            self.log_ema = self.log_ema.to(like.device)
        return self.log_ema

    def bound(self, critic, noise, a, b, gen, *, update_state):
        # the mean score on joint pairs and log mean e^T over shuffled pairs
        joint_mean, log_m = shuffled_stats(critic, noise, a, b, gen)
        value = joint_mean - log_m
        current = log_m.detach()
        log_ema = self._moving_average(current)
        if update_state:
            rate = self.ema_rate
            fresh = torch.isnan(log_ema)
            mixed = torch.logaddexp(log_ema + math.log1p(-rate), current + math.log(rate))
            log_ema = torch.where(fresh, current, mixed)
            self.log_ema.copy_(log_ema)
        log_ema = torch.where(torch.isnan(log_ema), current, log_ema)
        surrogate = joint_mean - torch.exp(log_m - log_ema)
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

    def bound(self, critic, noise, a, b, gen, *, update_state):
        r, m, _ = a.shape
        k = self.nce_block
        n_blocks = m // k
        order = random_permutations(r, m, gen, a.device)[:, : n_blocks * k]
        a, b, _ = noise.noisy(take_rows(a, order), take_rows(b, order), gen)
        ha = critic.project_a(a).view(r, n_blocks, k, 1, -1)
        hb = critic.project_b(b).view(r, n_blocks, 1, k, -1)
        pre = (ha + hb).reshape(r, n_blocks * k * k, -1)  # every (i, j) within a block
        scores = critic.head(pre).view(r, n_blocks, k, k)
        diag = scores.diagonal(dim1=2, dim2=3)
        value = (diag - torch.logsumexp(scores, dim=3) + math.log(k)).mean(dim=(1, 2))
        return value, value
