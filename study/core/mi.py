"""Neural MI estimation between neuron subgroups: critics, estimators and subgroup penalties.

A penalty over K groups is a sum of P terms I(A_p; B_p) (method.md §1, DESIGN.md §3):
`pairwise` (all pairs i < j) or `total_correlation` (I(G_1..G_{i−1}; G_i), i ≥ 2); both are
I(G_1; G_2) at K = 2. Each (seed, term) pair has its own critic, so every critic weight has a
leading replica axis R = S·P and one batched matmul serves all of them. Estimates are in nats.
Shapes: activity (S, M, N) with M (time × batch) rows; critic inputs (R, M, d).
The bounds themselves (DV, MINE, InfoNCE) are registered objects in `study.core.estimators`;
`SubgroupMI` owns the critics, their input noise and optimiser, and asks its estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from study.core.estimators import (ESTIMATORS as _REGISTRY, Estimator, InfoNCE,
                              estimator_from_config, make_estimator, random_permutations,
                              take_rows)
from study.core.metrics import sequence_null
from study.contract.names import ESTIMATOR_NAMES, PENALTIES
from study.core.optim import ReplicaOptimizer

__all__ = [
    "ESTIMATORS",
    "PENALTIES",
    "penalty_terms",
    "PenaltyTerms",
    "Critic",
    "PRECISIONS",
    "compute_dtype",
    "bf16_matmul_native",
    "SubgroupMI",
    "estimate_mi",
    "heldout_mi",
    "split_sequences",
    "random_permutations",
]

ESTIMATORS = ESTIMATOR_NAMES  # the names; the registry is study.core.estimators.ESTIMATORS


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
        raise ValueError(f"penalty_terms(): labels must use every group 0..{k - 1} and nothing "
                         f"else, but group(s) {empty or [int(labels.min())]} are "
                         f"{'empty' if empty else 'negative'}")
    if kind == "pairwise":
        pairs = [(members[i], members[j], f"G{i + 1};G{j + 1}")
                 for i in range(k) for j in range(i + 1, k)]
    else:
        pairs = [(np.concatenate(members[:i]), members[i],
                  f"G1..G{i};G{i + 1}" if i > 1 else f"G1;G{i + 1}") for i in range(1, k)]
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


class Critic(nn.Module):
    """T(a, b) = w_outᵀ φ(… φ(a W_a + b W_b + c₁) …) + c_out, batched over R replicas.

    The first layer is two dense maps summed (method.md §4.3), Glorot-uniform kernels, zero
    biases. `depth` hidden layers of `width` units with ReLU or LeakyReLU.

    `precision` "bfloat16" runs every matrix product (and the activations between them) in
    bfloat16 with float32 accumulation, on bf16 copies of the float32 weights made per call, so
    gradients and the optimiser stay float32; the scores come back as float32 and everything
    after them (log-mean-exp, the bound) is float32. The casts are explicit rather than
    autocast, so CPU and CUDA take the same path and autocast's per-op dispatch is not paid.
    Pays where the hardware has bf16 matrix units (AMX or AVX512-BF16 CPUs, tensor-core GPUs);
    elsewhere oneDNN emulates it and it is slower than float32 (see `bf16_matmul_native`).
    """

    def __init__(
        self,
        n_replicas: int,
        dim_a: int,
        dim_b: int,
        *,
        width: int = 512,
        depth: int = 2,
        activation: str = "relu",
        leaky_slope: float = 0.25,
        out_bias: bool = True,
        precision: str = "float32",
        seeds: list[int] | None = None,
    ):
        super().__init__()
        self.compute_dtype = compute_dtype(precision)
        if self.compute_dtype == torch.bfloat16:  # float32 accumulation on CUDA (process-wide)
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        if activation not in ("relu", "leaky_relu"):
            raise ValueError(f"Critic: activation must be 'relu' or 'leaky_relu', "
                             f"got {activation!r}")
        if depth < 1 or width < 1:
            raise ValueError(f"Critic: depth and width must be >= 1, got depth={depth}, "
                             f"width={width}")
        seeds = seeds if seeds is not None else list(range(n_replicas))
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.activation, self.leaky_slope = activation, leaky_slope
        self.w_a = nn.Parameter(_glorot(gens, dim_a, width))
        self.w_b = nn.Parameter(_glorot(gens, dim_b, width))
        self.b_1 = nn.Parameter(torch.zeros(n_replicas, 1, width))
        self.w_h = nn.ParameterList(
            [nn.Parameter(_glorot(gens, width, width)) for _ in range(depth - 1)])
        self.b_h = nn.ParameterList(
            [nn.Parameter(torch.zeros(n_replicas, 1, width)) for _ in range(depth - 1)])
        self.w_o = nn.Parameter(_glorot(gens, width, 1))
        self.b_o = nn.Parameter(torch.zeros(n_replicas, 1, 1)) if out_bias else None

    def _act_(self, h: Tensor) -> Tensor:
        # in place: h is always a fresh pre-activation here, and a new (R, M, H) tensor per
        # layer costs an allocation and a memory pass as large as the op itself on a CPU
        if self.activation == "relu":
            return torch.relu_(h)
        return nn.functional.leaky_relu_(h, self.leaky_slope)

    def _lp(self, x: Tensor) -> Tensor:
        """x in the compute dtype (a no-op in float32; a differentiable cast otherwise)."""
        return x if x.dtype == self.compute_dtype else x.to(self.compute_dtype)

    def project_a(self, a: Tensor) -> Tensor:
        """(R, M, da) -> (R, M, H) in the compute dtype; includes the first-layer bias."""
        return torch.baddbmm(self._lp(self.b_1), self._lp(a), self._lp(self.w_a))

    def project_b(self, b: Tensor) -> Tensor:
        """(R, M, db) -> (R, M, H) in the compute dtype."""
        return torch.bmm(self._lp(b), self._lp(self.w_b))

    def head(self, pre: Tensor) -> Tensor:
        """First-layer pre-activations (R, M, H), a tensor the caller gives up -> scores (R, M),
        always float32."""
        lp = self._lp
        h = self._act_(pre)
        for w, b in zip(self.w_h, self.b_h):
            h = self._act_(torch.baddbmm(lp(b), h, lp(w)))
        if self.b_o is None:
            out = torch.bmm(h, lp(self.w_o))
        else:
            out = torch.baddbmm(lp(self.b_o), h, lp(self.w_o))
        return out.squeeze(-1).float()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.head(self.project_a(a) + self.project_b(b))


def _replica_mask(index: Tensor, n_units: int, n_seeds: int) -> Tensor | None:
    """(P, d) term index padded with n_units -> (S·P, 1, d) float mask of real columns.

    None when no term is padded (equal sides), so the common case pays nothing.
    """
    real = index != n_units
    if bool(real.all()):
        return None
    return real.to(torch.float32).repeat(n_seeds, 1).unsqueeze(1)


def _glorot(gens: list[torch.Generator], fan_in: int, fan_out: int) -> Tensor:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.stack([(torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * limit for g in gens])


PRECISIONS = ("float32", "bfloat16")


def compute_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a critic precision name ("float32" or "bfloat16").

    On CUDA, bfloat16 products accumulate in float32: a bfloat16 `Critic` switches off torch's
    reduced-precision (bf16) split-K reduction for the process. float32 is left exactly as
    torch's default (no TF32), so float32 runs stay comparable with earlier ones.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Critic: precision must be one of {PRECISIONS}, but got {precision!r}")
    return torch.float32 if precision == "float32" else torch.bfloat16


def bf16_matmul_native() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX-BF16 or AVX512-BF16), i.e. whether a
    bfloat16 critic can be faster than float32 here (oneDNN emulates bf16 elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


class SubgroupMI(nn.Module):
    """The subgroup MI penalty of S networks, with its critics and their optimiser.

    Args:
        n_seeds: S.
        labels: (N,) group labels.
        penalty: "pairwise" or "total_correlation".
        estimator: a registered estimator's name (study.core.estimators: "dv", plain Donsker–Varadhan
            with shuffled marginals, the paper's; "mine", DV with the moving-average gradient
            correction of Belghazi et al. 2018; "infonce") or an `Estimator` object.
        pairs: rows sampled per estimate (0 = all rows, as the reference).
        input_noise: std of Gaussian noise added to the critic inputs.
        noise_mode: "clean_partner" (WM reference: the shuffled partner is a permutation of the
            noise-free b, method.md §4.2) or "noisy_partner" (separation reference: noise added to
            a and b once, the partner is the permuted noisy b, method.md §7.6). clean_partner's
            bound is the critic objective I(a+ε; b+ε′) + KL(p_{b+ε} ‖ p_b), not the MI, and is
            asymmetric in a and b; noisy_partner's is I(a+ε; b+ε′). In both modes the zero
            columns that pad unequal sides get no noise, so they read 0 in both branches.
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
        if noise_mode not in ("clean_partner", "noisy_partner"):
            raise ValueError(
                f"SubgroupMI: noise_mode must be 'clean_partner' or 'noisy_partner', "
                f"but got {noise_mode!r}")
        terms = penalty_terms(labels, penalty)
        self.n_seeds, self.n_terms = n_seeds, len(terms.names)
        self.term_names = terms.names
        self.a_ranges, self.b_ranges = terms.a_ranges, terms.b_ranges
        self.register_buffer("a_index", terms.a_index)
        self.register_buffer("b_index", terms.b_index)
        # 1 on real columns, 0 on padding (index N): padded columns must read exactly 0 in both
        # the joint and the shuffled branch, or the critic tells the branches apart by them
        # (derived from the labels, so not part of the state dict)
        n_units = int(np.asarray(labels).size)
        self.register_buffer("a_mask", _replica_mask(terms.a_index, n_units, n_seeds),
                             persistent=False)
        self.register_buffer("b_mask", _replica_mask(terms.b_index, n_units, n_seeds),
                             persistent=False)
        self.estimator, self.pairs = estimator, pairs  # the Estimator object (`.name`)
        self.input_noise, self.noise_mode = input_noise, noise_mode
        replica_seeds = [
            int(np.random.SeedSequence([seed + s, p, 0x6D69]).generate_state(1)[0])
            for s in range(n_seeds) for p in range(self.n_terms)
        ]
        self.critic = Critic(n_seeds * self.n_terms, terms.a_index.shape[1],
                             terms.b_index.shape[1], seeds=replica_seeds, **(critic or {}))
        self.register_buffer("log_ema", torch.full((n_seeds * self.n_terms,), float("nan")))
        self.optimizer = ReplicaOptimizer(self.critic.parameters(), **(optim or {}))

    @classmethod
    def from_config(cls, cfg: Any, labels: np.ndarray) -> SubgroupMI:
        """The penalty of a TrialConfig: `mi.*` (estimator and its options, penalty, rows,
        noise), `critic.*` (architecture and optimiser), S = `seeds`, critics from `seed`."""
        m, c = cfg.mi, cfg.critic
        return cls(
            cfg.seeds, labels, penalty=m.penalty, estimator=estimator_from_config(m),
            pairs=m.pairs, input_noise=m.input_noise, noise_mode=m.noise_mode,
            critic={"width": c.width, "depth": c.depth, "activation": c.activation,
                    "leaky_slope": c.leaky_slope, "out_bias": c.out_bias,
                    "precision": c.precision},
            optim=c.optim.model_dump(), seed=cfg.seed)

    # -- sampling -------------------------------------------------------------------------------
    def _sides(self, activity: Tensor, gen: torch.Generator, transform=None
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
            return (self._stack_ranges(activity, self.a_ranges, self.a_index.shape[1]),
                    self._stack_ranges(activity, self.b_ranges, self.b_index.shape[1]))
        padded = nn.functional.pad(activity, (0, 1))  # (S, M', N+1); column N is zero
        a = padded[:, :, self.a_index]  # (S, M', P, da)
        b = padded[:, :, self.b_index]
        r = s * self.n_terms
        a = a.permute(0, 2, 1, 3).reshape(r, a.shape[1], -1)
        b = b.permute(0, 2, 1, 3).reshape(r, b.shape[1], -1)
        return a, b

    def _stack_ranges(self, activity: Tensor, ranges, width: int) -> Tensor:
        """(S, M, N) -> (S·P, M, width): the unit range of each term, zero-padded to width."""
        parts = [nn.functional.pad(activity[..., lo:hi], (0, width - (hi - lo)))
                 if hi - lo < width else activity[..., lo:hi] for lo, hi in ranges]
        if len(parts) == 1:
            return parts[0]  # a strided view; bmm reads it in place
        stacked = torch.stack(parts, dim=1)  # (S, P, M, width)
        return stacked.reshape(-1, activity.shape[1], width)

    @staticmethod
    def _noise(x: Tensor, mask: Tensor | None, sigma: float, gen: torch.Generator) -> Tensor:
        """σ·N(0, 1) shaped like x (R, M, d), zero on padded columns (mask (R, 1, d))."""
        eps = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype).mul_(sigma)
        if mask is not None:
            eps.mul_(mask.to(x.dtype))
        return eps

    def add_noise(self, x: Tensor, side: str, gen: torch.Generator) -> Tensor:
        """x (R, M, d) of side "a" or "b" plus `input_noise`·N(0, 1), none on padded columns."""
        mask = self.a_mask if side == "a" else self.b_mask
        return x + self._noise(x, mask, self.input_noise, gen)

    # -- estimates ------------------------------------------------------------------------------
    def _estimate(self, activity: Tensor, gen: torch.Generator, *, update_ema: bool,
                  transform=None) -> tuple[Tensor, Tensor]:
        """(value, surrogate), each (R,): the bound, and what gradients should follow."""
        a, b = self._sides(activity, gen, transform)
        return self.estimator.bound(self, a, b, gen, update_ema=update_ema)

    def _fold(self, per_replica: Tensor) -> Tensor:
        """(R,) per (seed, term) -> (S,) summed over the penalty's terms."""
        return per_replica.view(self.n_seeds, self.n_terms).sum(dim=1)

    def critic_step(self, activity: Tensor, gen: torch.Generator, transform=None) -> Tensor:
        """One critic update that maximises the bound; activity (S, M, N) is treated as data.

        Returns:
            (S,) the penalty (sum over terms) measured in this step, before the update.
        """
        self.critic.requires_grad_(True)
        value, surrogate = self._estimate(activity.detach(), gen, update_ema=True,
                                          transform=transform)
        self.optimizer.zero_grad()
        (-surrogate.sum()).backward()
        self.optimizer.step()
        return self._fold(value.detach())

    def penalty(self, activity: Tensor, gen: torch.Generator, transform=None
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
            value, surrogate = self._estimate(activity, gen, update_ema=False,
                                              transform=transform)
        finally:
            self.critic.requires_grad_(True)
        value = self._fold(value)
        penalty = self.estimator.network_penalty(value, self._fold(surrogate))
        return penalty, value.detach()

    @torch.no_grad()
    def measure(self, activity: Tensor, gen: torch.Generator, transform=None) -> Tensor:
        """(S,) penalty estimate with the current critics, no update."""
        value, _ = self._estimate(activity, gen, update_ema=False, transform=transform)
        return self._fold(value)

    def state(self) -> dict:
        return {"module": self.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        self.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])


def estimate_mi(
    x,
    y,
    *,
    estimator: str = "dv",
    steps: int = 2000,
    batch: int = 512,
    width: int = 128,
    depth: int = 2,
    lr: float = 1e-3,
    holdout: float = 0.25,
    nce_block: int = 128,
    seed: int = 0,
) -> float:
    """Train a fresh critic on samples of (x, y) and return its MI estimate in nats.

    Args:
        x: (M, dx) samples (array-like); y: (M, dy) paired samples.
        estimator: "dv", "mine" or "infonce" (InfoNCE can never exceed ln(nce_block)).
        steps: critic updates (Adam) on random minibatches of `batch` rows of the training part.
        holdout: fraction of rows kept out of training; the estimate is the bound on those rows
            (averaged over several shuffles), so it is not inflated by the critic overfitting.

    Raises:
        ValueError: mismatched shapes, unknown estimator, too few samples.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float32)
    if x.dim() == 1:
        x = x[:, None]
    if y.dim() == 1:
        y = y[:, None]
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"estimate_mi(): x and y must be (M, dx) and (M, dy) with the same M, but got "
            f"shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if estimator not in _REGISTRY:
        raise ValueError(f"estimate_mi(): estimator must be one of {tuple(_REGISTRY)}, but got "
                         f"{estimator!r}")
    m = x.shape[0]
    n_test = int(round(m * holdout))
    if m - n_test < batch or n_test < (nce_block if estimator == "infonce" else 2):
        raise ValueError(
            f"estimate_mi(): need at least batch={batch} training rows and a held-out part, "
            f"but got M={m} rows with holdout={holdout}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(m, generator=gen)
    train_idx, test_idx = order[n_test:], order[:n_test]
    labels = np.array([0] * x.shape[1] + [1] * y.shape[1])
    est = SubgroupMI(
        1, labels, estimator=estimator, input_noise=0.0, nce_block=min(nce_block, batch),
        critic={"width": width, "depth": depth}, optim={"kind": "adam", "lr": lr}, seed=seed,
    )
    data = torch.cat([x, y], dim=1)[None]  # (1, M, dx + dy)
    train_data = data[:, train_idx]
    for _ in range(steps):
        rows = torch.randint(0, train_data.shape[1], (batch,), generator=gen)
        est.critic_step(train_data[:, rows], gen)
    if isinstance(est.estimator, InfoNCE):  # its blocks must fit in the held-out rows
        est.estimator.nce_block = min(nce_block, n_test)
    test_data = data[:, test_idx]
    with torch.no_grad():
        values = [est.measure(test_data, gen).item() for _ in range(8)]
    return float(np.mean(values))


def split_sequences(n_sequences: int, test_fraction: float, gen: torch.Generator
                    ) -> tuple[Tensor, Tensor] | None:
    """Random (train, test) sequence indices, at least 2 of each; None when there are < 4."""
    n_test = max(2, int(round(n_sequences * test_fraction)))
    if n_sequences - n_test < 2:
        return None
    order = torch.randperm(n_sequences, generator=gen)
    return order[n_test:].sort().values, order[:n_test].sort().values


def heldout_mi(
    sequences: Tensor,
    labels: np.ndarray,
    *,
    penalty: str = "pairwise",
    noise: float = 0.1,
    width: int = 64,
    depth: int = 2,
    steps: int = 300,
    batch: int = 512,
    lr: float = 1e-3,
    test_fraction: float = 0.25,
    repeats: int = 4,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Held-out subgroup-MI estimate of S networks' activity, and the same on its null pairing.

    A fresh DV critic per (seed, term) — 2·S·P replicas trained as one batch, like the training
    critics — is trained on the activity of the training sequences with the penalty's own noise
    (σ on both sides, the shuffled partner drawn from the noisy b: it estimates I(a+ε; b+ε′)),
    then scored on the held-out sequences. The split is by *sequence*, never by rows of the same
    sequences, so time autocorrelation cannot leak a memorised pairing into the score. The null
    replicas see the sequence-shuffled pairing (`metrics.sequence_null`: group g of sequence b
    with group h of another sequence, built within each split), trained and scored the same way,
    so `value − null` is the estimate's excess over what the estimator reads on independent
    groups with the same autocorrelation. The held-out DV bound of a fixed critic is a lower
    bound of the MI in expectation (up to the log-mean-exp's small-sample bias); an overfitted
    critic scores low, not high.

    Args:
        sequences: (S, T, B, N) activity whose subgroup MI is penalised (rates, not states).
        labels: (N,) group labels; penalty: "pairwise" or "total_correlation".
        noise: σ of the Gaussian noise on critic inputs (the training penalty's `input_noise`).
        width, depth: critic capacity; steps: Adam updates with learning rate lr, each on
            `batch` random rows of the training sequences; test_fraction: share of sequences
            held out (at least 2); repeats: noise and shuffle draws averaged on the test rows.
        seed: initialises the critics and draws the split, minibatches and noise.

    Returns:
        (value, null), each (S,) in nats, summed over the penalty's terms; NaN when there are
        fewer than 4 sequences (or, for the null, fewer sequences per split than groups).
    """
    s, t, b, n = sequences.shape
    device = sequences.device
    nan = torch.full((s,), float("nan"), device=device)
    gen = torch.Generator().manual_seed(int(seed))
    split = split_sequences(b, test_fraction, gen)
    if split is None:
        return nan, nan.clone()
    seqs = sequences.detach().float()
    own = [seqs[:, :, idx.to(device)] for idx in split]  # (S, T, B', N) train, test
    nulls = [sequence_null(x, labels) for x in own]  # built within each split
    has_null = all(x is not None for x in nulls)
    # the null replicas are the S seeds again on the shuffled pairing (or a placeholder)
    parts = [torch.cat([x, z if has_null else x]).reshape(2 * s, -1, n)
             for x, z in zip(own, nulls)]
    train_rows, test_rows = parts
    dev_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
    est = SubgroupMI(2 * s, labels, penalty=penalty, estimator="dv", input_noise=noise,
                     noise_mode="noisy_partner", critic={"width": width, "depth": depth},
                     optim={"kind": "adam", "lr": lr, "clip_norm": None}, seed=int(seed))
    est.to(device)
    m_train = train_rows.shape[1]
    with torch.enable_grad():
        for _ in range(steps):
            rows = torch.randint(0, m_train, (2 * s, min(batch, m_train)), generator=dev_gen,
                                 device=device)
            est.critic_step(take_rows(train_rows, rows), dev_gen)
    values = torch.stack([est.measure(test_rows, dev_gen) for _ in range(repeats)]).mean(0)
    value, null_value = values[:s], values[s:]
    return value, (null_value if has_null else nan)
