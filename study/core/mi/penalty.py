"""The subgroup MI penalty of S networks: its terms, critics, input noise and optimiser.

A penalty over K groups is a sum of P terms I(A_p; B_p) (docs/method.md §1):
`pairwise` (all pairs i < j) or `total_correlation` (I(G_1..G_{i−1}; G_i), i ≥ 2); both are
I(G_1; G_2) at K = 2. Each (seed, term) pair has its own critic, so every critic weight has a
leading replica axis R = S·P and one batched matmul serves all of them. Estimates are in nats.
Shapes: activity (S, M, N) with M (time × batch) rows; critic inputs (R, M, d).
`SubgroupMI` samples the rows and the sides of every term, owns the critics (`critic.Critic`),
their optimiser and the input-noise policy (`InputNoise`), and asks its estimator
(`estimators`) for the bound, handing it the critic, the noise policy and the generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from study.contract.names import PENALTIES
from study.core._native import draws
from study.core.mi.critic import Critic
from study.core.mi.estimators import (
    Estimator,
    estimator_from_config,
    make_estimator,
    random_permutations,
    take_rows,
)
from study.core.optim import ReplicaOptimizer

__all__ = ["PENALTIES", "NOISE_MODES", "PenaltyTerms", "penalty_terms", "InputNoise", "SubgroupMI"]

NOISE_MODES = ("clean_partner", "noisy_partner")


@dataclass(frozen=True)
class PenaltyTerms:
    """Unit indices of the two sides of each term, padded with N (a zero column)."""

    a_index: Tensor  # (P, da) long
    b_index: Tensor  # (P, db) long
    names: tuple[str, ...]  # e.g. ("G1;G2",)
    # (lo, hi) unit ranges of each side when every side is contiguous (contiguous groups)
    a_ranges: tuple[tuple[int, int], ...] | None = None
    b_ranges: tuple[tuple[int, int], ...] | None = None


def penalty_terms(labels: np.ndarray, kind: str = "pairwise") -> PenaltyTerms:
    """Index sets of the MI terms whose sum is the subgroup penalty.

    Args:
        labels: (N,) group label of each unit, values 0..K−1, K ≥ 2.
        kind: "pairwise" or "total_correlation".
    """
    if kind not in PENALTIES:
        raise ValueError(f"penalty_terms(): kind must be one of {PENALTIES}, but got {kind!r}")
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if labels.size else 0
    if k < 2:
        raise ValueError(f"penalty_terms(): need at least 2 groups, but got {k}")
    members = [np.flatnonzero(labels == g) for g in range(k)]
    empty = [g for g, m in enumerate(members) if m.size == 0]
    if empty or labels.min() < 0:
        raise ValueError(
            f"penalty_terms(): labels must use every group 0..{k - 1} and nothing "
            f"else, but group(s) {empty or [int(labels.min())]} are "
            f"{'empty' if empty else 'negative'}"
        )
    if kind == "pairwise":
        pairs = [
            (members[i], members[j], f"G{i + 1};G{j + 1}")
            for i in range(k)
            for j in range(i + 1, k)
        ]
    else:
        pairs = [
            (
                np.concatenate(members[:i]),
                members[i],
                f"G1..G{i};G{i + 1}" if i > 1 else f"G1;G{i + 1}",
            )
            for i in range(1, k)
        ]
    n = labels.size
    da = max(len(a) for a, _, _ in pairs)
    db = max(len(b) for _, b, _ in pairs)
    a_index = torch.full((len(pairs), da), n, dtype=torch.long)
    b_index = torch.full((len(pairs), db), n, dtype=torch.long)
    for p, (a, b, _) in enumerate(pairs):
        a_index[p, : len(a)] = torch.as_tensor(a)
        b_index[p, : len(b)] = torch.as_tensor(b)

    def ranges(sides):
        if all(np.array_equal(u, np.arange(u[0], u[-1] + 1)) for u in sides):
            return tuple((int(u[0]), int(u[-1]) + 1) for u in sides)
        return None

    a_ranges = ranges([a for a, _, _ in pairs])
    b_ranges = ranges([b for _, b, _ in pairs])
    if a_ranges is None or b_ranges is None:
        a_ranges = b_ranges = None
    return PenaltyTerms(a_index, b_index, tuple(name for _, _, name in pairs), a_ranges, b_ranges)


def _replica_mask(index: Tensor, n_units: int, n_seeds: int) -> Tensor | None:
    """(P, d) term index padded with n_units -> (S·P, 1, d) float mask of real columns.

    None when no term is padded (equal sides), so the common case pays nothing.
    """
    real = index != n_units
    if bool(real.all()):
        return None
    return real.to(torch.float32).repeat(n_seeds, 1).unsqueeze(1)


class InputNoise(nn.Module):
    """The noise policy of the critic inputs: σ·N(0, 1) on every real column of both sides, none
    on the zero columns that pad unequal sides, and which b the shuffled partner is drawn from.

    Modes (docs/method.md §4.2, §7.6): "clean_partner" (WM reference) draws the partner from the
    noise-free b, so its bound is the critic objective I(a+ε; b+ε′) + KL(p_{b+ε} ‖ p_b), not
    the MI, and is asymmetric in a and b; "noisy_partner" (separation reference) draws it from
    the noisy b, and bounds I(a+ε; b+ε′). Padded columns read exactly 0 in the joint and the
    shuffled branch in both modes, or the critic could tell the branches apart by them.

    Args:
        sigma: σ; 0 draws nothing.
        mode: "clean_partner" or "noisy_partner".
        a_mask, b_mask: (R, 1, d) 1 on real columns, 0 on padding, or None when no term of
            that side is padded. Buffers (they follow `.to(device)`), not part of a state dict.
    """

    def __init__(self, sigma: float, mode: str, a_mask: Tensor | None, b_mask: Tensor | None):
        super().__init__()
        self.sigma, self.mode = sigma, mode
        self.register_buffer("a_mask", a_mask, persistent=False)
        self.register_buffer("b_mask", b_mask, persistent=False)

    def draw(self, x: Tensor, side: str, gen: torch.Generator) -> Tensor:
        """σ·N(0, 1) shaped like x (R, M, d) of side "a" or "b", zero on its padded columns."""
        mask = self.a_mask if side == "a" else self.b_mask
        # torch.randn's values, drawn faster where the compiled draws apply (_native.draws)
        eps = draws.randn(x.shape, gen, dtype=x.dtype, device=x.device).mul_(self.sigma)
        if mask is not None:
            eps.mul_(mask.to(x.dtype))
        return eps

    def noisy(self, a: Tensor, b: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(a + ε, b + ε′, the b the shuffled partner is drawn from); ε is drawn before ε′."""
        if not self.sigma > 0:
            return a, b, b
        a = a + self.draw(a, "a", gen)
        b_noisy = b + self.draw(b, "b", gen)
        return a, b_noisy, (b if self.mode == "clean_partner" else b_noisy)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, mode={self.mode!r}"


class SubgroupMI(nn.Module):
    """The subgroup MI penalty of S networks, with its critics and their optimiser.

    Args:
        n_seeds: S.
        labels: (N,) group labels.
        penalty: "pairwise" or "total_correlation".
        estimator: a registered estimator's name (`estimators`: "dv", plain Donsker–Varadhan
            with shuffled marginals, the paper's; "mine", DV with the moving-average gradient
            correction of Belghazi et al. 2018; "infonce") or an `Estimator` object, which
            becomes this penalty's (its running state is reset to R = S·P replicas).
        pairs: rows sampled per estimate (0 = all rows, as the reference).
        input_noise: std of Gaussian noise added to the critic inputs.
        noise_mode: "clean_partner" (WM reference: the shuffled partner is a permutation of the
            clean b, docs/method.md §4.2) or "noisy_partner" (separation reference: noise added to
            a and b once, its partner the permuted noisy b, docs/method.md §7.6); see
            `InputNoise`, which this penalty keeps as `noise`.
        **estimator_options: the named estimator's options (`Estimator.options`), e.g.
            ema_rate (MINE moving-average rate) or nce_block (InfoNCE rows per block; each row
            is contrasted with the other rows of its block); other estimators' are ignored.
        critic: keyword arguments of `Critic` (width, depth, activation, leaky_slope, out_bias).
        optim: keyword arguments of `ReplicaOptimizer` for the critics.
        seed: critics of seed s, term p are initialised from a stream derived from (seed + s, p).
    """

    def __init__(
        self,
        n_seeds: int,
        labels: np.ndarray,
        *,
        penalty: str = "pairwise",
        estimator: str | Estimator = "dv",
        pairs: int = 0,
        input_noise: float = 0.1,
        noise_mode: str = "clean_partner",
        critic: dict | None = None,
        optim: dict | None = None,
        seed: int = 0,
        **estimator_options: Any,
    ):
        super().__init__()
        if not isinstance(estimator, Estimator):
            estimator = make_estimator(estimator, estimator_options)
        if noise_mode not in NOISE_MODES:
            raise ValueError(
                f"SubgroupMI: noise_mode must be 'clean_partner' or 'noisy_partner', "
                f"but got {noise_mode!r}"
            )
        terms = penalty_terms(labels, penalty)
        self.n_seeds, self.n_terms = n_seeds, len(terms.names)
        self.term_names = terms.names
        self.a_ranges, self.b_ranges = terms.a_ranges, terms.b_ranges
        self.register_buffer("a_index", terms.a_index)
        self.register_buffer("b_index", terms.b_index)
        # 1 on real columns, 0 on padding (index N), derived from the labels
        n_units = int(np.asarray(labels).size)
        self.noise = InputNoise(
            input_noise,
            noise_mode,
            _replica_mask(terms.a_index, n_units, n_seeds),
            _replica_mask(terms.b_index, n_units, n_seeds),
        )
        self.estimator, self.pairs = estimator, pairs  # the Estimator object (`.name`)
        self.estimator.reset(n_seeds * self.n_terms)
        replica_seeds = [
            int(np.random.SeedSequence([seed + s, p, 0x6D69]).generate_state(1)[0])
            for s in range(n_seeds)
            for p in range(self.n_terms)
        ]
        self.critic = Critic(
            n_seeds * self.n_terms,
            terms.a_index.shape[1],
            terms.b_index.shape[1],
            seeds=replica_seeds,
            **(critic or {}),
        )
        self.optimizer = ReplicaOptimizer(self.critic.parameters(), **(optim or {}))

    @classmethod
    def from_config(cls, cfg: Any, labels: np.ndarray) -> SubgroupMI:
        """The penalty of a TrialConfig: `mi.*` (estimator and its options, penalty, rows,
        noise), `critic.*` (architecture and optimiser), S = `seeds`, critics from `seed`."""
        m, c = cfg.mi, cfg.critic
        return cls(
            cfg.seeds,
            labels,
            penalty=m.penalty,
            estimator=estimator_from_config(m),
            pairs=m.pairs,
            input_noise=m.input_noise,
            noise_mode=m.noise_mode,
            critic={
                "width": c.width,
                "depth": c.depth,
                "activation": c.activation,
                "leaky_slope": c.leaky_slope,
                "out_bias": c.out_bias,
                "precision": c.precision,
            },
            optim=c.optim.model_dump(),
            seed=cfg.seed,
        )

    # -- sampling -------------------------------------------------------------------------------
    def row_sample(
        self, n_seeds: int, rows: int, gen: torch.Generator, device: torch.device | str
    ) -> Tensor | None:
        """(S, pairs) the rows an estimate on (S, rows, N) activity would sample, drawn from gen
        exactly as `_sides` draws them, or None when it keeps every row. Activity already cut
        to these rows is then estimated without a second sample (its M is `pairs`)."""
        if self.pairs and self.pairs < rows:
            return random_permutations(n_seeds, rows, gen, device)[:, : self.pairs]
        return None

    def _sides(
        self, activity: Tensor, gen: torch.Generator, transform=None
    ) -> tuple[Tensor, Tensor]:
        """activity (S, M, N) -> a (R, M', da), b (R, M', db) after the optional row subsample.

        `transform` (e.g. tanh of pre-activations) is applied after subsampling, so only the
        sampled rows pay for it.
        """
        s, m, n = activity.shape
        if self.pairs and self.pairs < m:
            keep = random_permutations(s, m, gen, activity.device)[:, : self.pairs]
            activity = take_rows(activity, keep)
        if transform is not None:
            activity = transform(activity)
        if self.a_ranges is not None:  # contiguous groups: slices, no gather
            return (
                self._stack_ranges(activity, self.a_ranges, self.a_index.shape[1]),
                self._stack_ranges(activity, self.b_ranges, self.b_index.shape[1]),
            )
        padded = nn.functional.pad(activity, (0, 1))  # (S, M', N+1); column N is zero
        a = padded[:, :, self.a_index]  # (S, M', P, da)
        b = padded[:, :, self.b_index]
        r = s * self.n_terms
        a = a.permute(0, 2, 1, 3).reshape(r, a.shape[1], -1)
        b = b.permute(0, 2, 1, 3).reshape(r, b.shape[1], -1)
        return a, b

    def _stack_ranges(self, activity: Tensor, ranges, width: int) -> Tensor:
        """(S, M, N) -> (S·P, M, width): the unit range of each term, zero-padded to width."""
        parts = [
            nn.functional.pad(activity[..., lo:hi], (0, width - (hi - lo)))
            if hi - lo < width
            else activity[..., lo:hi]
            for lo, hi in ranges
        ]
        if len(parts) == 1:
            return parts[0]  # a strided view; bmm reads it in place
        stacked = torch.stack(parts, dim=1)  # (S, P, M, width)
        return stacked.reshape(-1, activity.shape[1], width)

    # -- estimates ------------------------------------------------------------------------------
    def _estimate(
        self,
        activity: Tensor,
        gen: torch.Generator,
        *,
        update_state: bool,
        transform=None,
        estimator: Estimator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(value, surrogate), each (R,): the bound, and what gradients should follow."""
        a, b = self._sides(activity, gen, transform)
        bound = (self.estimator if estimator is None else estimator).bound
        return bound(self.critic, self.noise, a, b, gen, update_state=update_state)

    def _fold(self, per_replica: Tensor) -> Tensor:
        """(R,) per (seed, term) -> (S,) summed over the penalty's terms."""
        return per_replica.view(self.n_seeds, self.n_terms).sum(dim=1)

    def critic_step(self, activity: Tensor, gen: torch.Generator, transform=None) -> Tensor:
        """One critic update that maximises the bound; activity (S, M, N) is treated as data.

        Returns:
            (S,) the penalty (sum over terms) measured in this step, before the update.
        """
        self.critic.requires_grad_(True)
        value, surrogate = self._estimate(
            activity.detach(), gen, update_state=True, transform=transform
        )
        self.optimizer.zero_grad()
        (-surrogate.sum()).backward()
        self.optimizer.step()
        return self._fold(value.detach())

    def penalty(
        self, activity: Tensor, gen: torch.Generator, transform=None
    ) -> tuple[Tensor, Tensor]:
        """The penalty the network minimises, with the critics frozen.

        Args:
            activity: (S, M, N) with gradient to the network.

        Returns:
            (differentiable (S,) penalty, (S,) measured value) — they differ only where the
            estimator's gradient follows a surrogate (MINE, `Estimator.network_penalty`).
        """
        self.critic.requires_grad_(False)
        try:
            value, surrogate = self._estimate(
                activity, gen, update_state=False, transform=transform
            )
        finally:
            self.critic.requires_grad_(True)
        value = self._fold(value)
        penalty = self.estimator.network_penalty(value, self._fold(surrogate))
        return penalty, value.detach()

    @torch.no_grad()
    def measure(
        self,
        activity: Tensor,
        gen: torch.Generator,
        transform=None,
        *,
        estimator: Estimator | None = None,
    ) -> Tensor:
        """(S,) penalty estimate with the current critics, no update.

        `estimator` scores with another bound on the same critics and sampling (e.g. InfoNCE
        with blocks that fit fewer rows); by default this penalty's own.
        """
        value, _ = self._estimate(
            activity, gen, update_state=False, transform=transform, estimator=estimator
        )
        return self._fold(value)

    def state(self) -> dict:
        """Critic weights and term indices ("module"), the critic optimiser ("optimizer") and
        the estimator's running state ("estimator", e.g. MINE's moving average)."""
        return {
            "module": self.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "estimator": self.estimator.state_dict(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore `state()`'s output, or the older layout (checkpoints written before the
        estimators kept their own state): no "estimator" entry, and MINE's moving average as the
        module buffer "log_ema", which every estimator's state held (all NaN where unused).

        Raises:
            ValueError: one line saying what does not fit (missing or unexpected entries,
                shapes, the optimiser's or the estimator's state).
        """
        where = "SubgroupMI.load_state()"
        if not isinstance(state, Mapping) or not {"module", "optimizer"} <= set(state):
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(
                f"{where}: the MI state must hold 'module' and 'optimizer', but got {got}"
            )
        module = dict(state["module"])
        estimator_state = state.get("estimator")
        legacy_ema = module.pop("log_ema", None)
        if estimator_state is None:  # the older layout
            keeps_ema = "log_ema" in self.estimator.state_dict()
            if keeps_ema and legacy_ema is None:
                raise ValueError(
                    f"{where}: the state holds no moving average for estimator "
                    f"{self.estimator.name!r} (neither 'estimator' nor "
                    f"module 'log_ema')"
                )
            estimator_state = {"log_ema": legacy_ema} if keeps_ema else {}
        elif legacy_ema is not None:
            raise ValueError(
                f"{where}: the state holds both an 'estimator' entry and the "
                f"older module buffer 'log_ema'; it is neither layout"
            )
        self._check_module_state(module, where)
        self.load_state_dict(module)
        self.estimator.load_state_dict(estimator_state)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            detail = " ".join(str(e).split())[:200]
            raise ValueError(
                f"{where}: the critic optimiser state does not fit ({type(e).__name__}: {detail})"
            ) from None

    def _check_module_state(self, module: Mapping[str, Any], where: str) -> None:
        """ValueError unless `module` has exactly this penalty's entries, with their shapes."""
        own = self.state_dict()
        missing = [k for k in own if k not in module]
        unexpected = [k for k in module if k not in own]
        if missing or unexpected:
            raise ValueError(
                f"{where}: the critic state does not fit this penalty (missing "
                f"{missing or 'nothing'}, unexpected {unexpected or 'nothing'})"
            )
        wrong = [
            f"{k} {tuple(module[k].shape)} (expected {tuple(v.shape)})"
            for k, v in own.items()
            if not isinstance(module[k], Tensor) or module[k].shape != v.shape
        ]
        if wrong:
            raise ValueError(
                f"{where}: the critic state does not fit this penalty: {'; '.join(wrong[:3])}"
            )
