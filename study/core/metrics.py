"""Evaluation metrics (method.md §10): fixed-partition modularity Q and Q/Q_max, its z-score
against random partitions of the same sizes, Q of the weight change, D indices, Gaussian MI,
accuracy, R². Inputs are torch tensors batched over any leading axes (seed axis S
first); adjacency is symmetric, non-negative, diagonal ignored; labels are (N,) ints using every
group 0..K-1. float64 inside where accuracy needs it; results in the input dtype; NaN = undefined.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from study.contract.names import PENALTIES
from study.core.partition import _as_labels

Labels = np.ndarray | torch.Tensor | Sequence[int]

PENALTY_KINDS = PENALTIES  # the one list (study.contract.names)
_MAX_BRUTE_FORCE_K = 6  # 6! = 720 assignments; beyond that use the Hungarian algorithm


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_float(x: object, name: str, where: str, min_ndim: int) -> torch.Tensor:
    """Raise unless `x` is a floating torch tensor with at least `min_ndim` axes."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{where}: {name} must be a torch.Tensor, but got {type(x).__name__}. "
            "Convert with torch.as_tensor(...)."
        )
    if not x.dtype.is_floating_point:
        raise TypeError(f"{where}: {name} must be a floating tensor, but got dtype {x.dtype}.")
    if x.ndim < min_ndim:
        raise ValueError(
            f"{where}: {name} must have at least {min_ndim} axes, but got shape {tuple(x.shape)}."
        )
    return x


def _check_square(x: object, name: str, where: str) -> torch.Tensor:
    x = _check_float(x, name, where, 2)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{where}: {name} must have shape (..., N, N), but got shape {tuple(x.shape)}."
        )
    return x


def _check_adjacency(adjacency: object, where: str) -> torch.Tensor:
    """Validate a symmetric non-negative (..., N, N) adjacency; NaN entries are let through."""
    a = _check_square(adjacency, "adjacency", where)
    if a.numel() == 0:
        return a
    low = a.amin()
    if low < 0:
        raise ValueError(
            f"{where}: adjacency must be non-negative, but got min {low.item():.6g}. "
            "Use structural_adjacency()/functional_adjacency() to build one."
        )
    # relative tolerance sqrt(eps): above rounding of a symmetric computation, below real asymmetry
    scale = a.abs().amax()
    gap = (a - a.mT).abs().amax()
    if gap > torch.finfo(a.dtype).eps ** 0.5 * scale:
        raise ValueError(
            f"{where}: adjacency must be symmetric, but got max |A - A^T| = {gap.item():.6g} "
            f"(max |A| = {scale.item():.6g})."
        )
    return a


def _one_hot(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N,) labels -> (N, K) float64 indicator matrix."""
    idx = torch.as_tensor(labels, dtype=torch.long, device=device)
    return torch.nn.functional.one_hot(idx, int(labels.max()) + 1).to(torch.float64)


# --------------------------------------------------------------------------------------------
# modularity


def _zero_diagonal(a: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(a.shape[-1], dtype=torch.bool, device=a.device)
    return torch.where(eye, torch.zeros((), dtype=a.dtype, device=a.device), a)


def _modularity_terms(
    a: torch.Tensor, onehot: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (..., N, N) with zero diagonal, (N, K) -> (within / 2m, Σ_c (a_c / 2m)²)."""
    degree = a.sum(-1)  # (..., N) k_i
    two_m = degree.sum(-1)  # (...,)
    within = ((a @ onehot) * onehot).sum((-2, -1))  # sum_ij A_ij delta(g_i, g_j)
    group_degree = degree @ onehot  # (..., K) a_c = sum_{i in c} k_i
    # 0/0 = NaN for a graph without edges; keep it explicit rather than rely on the division
    nan = torch.full_like(two_m, float("nan"))
    safe = torch.where(two_m > 0, two_m, torch.ones_like(two_m))
    e_in = torch.where(two_m > 0, within / safe, nan)
    null = torch.where(two_m > 0, (group_degree**2).sum(-1) / safe**2, nan)
    return e_in, null


def _q_and_norm(
    a: torch.Tensor, labels: np.ndarray, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Q and Q/Q_max from a float64 adjacency with zero diagonal."""
    e_in, null = _modularity_terms(a, _one_hot(labels, a.device))
    q, q_max = e_in - null, 1.0 - null
    # Q_max = 0 when all degree sits in one group: the normalised value is undefined
    q_norm = torch.where(q_max > 0, q / q_max, torch.full_like(q, float("nan")))
    return q.to(dtype), q_norm.to(dtype)


def modularity(adjacency: torch.Tensor, labels: Labels) -> torch.Tensor:
    """Weighted Newman modularity Q of the fixed partition `labels` (method.md §10.1).

    Q = (1/2m) Σ_ij [A_ij − k_i k_j / 2m] δ(g_i, g_j), with k_i = Σ_j A_ij and 2m = Σ_ij A_ij,
    after zeroing the diagonal. Equals `networkx.community.modularity` (resolution 1).

    Args:
        adjacency: shape (..., N, N), float, symmetric (relative tolerance sqrt(eps)) and
            non-negative, e.g. (S, N, N).
        labels: shape (N,), integers 0..K-1 (see `partition.groups`).

    Returns:
        Q, shape (...), the adjacency's dtype; NaN for a graph without edges.

    Raises:
        TypeError: if adjacency is not a floating tensor or labels are not integers.
        ValueError: on a bad shape, a label count other than N, asymmetry or negative weights.
    """
    a = _check_adjacency(adjacency, "modularity()")
    lab = _as_labels(labels, "modularity()", a.shape[-1])
    e_in, null = _modularity_terms(_zero_diagonal(a.to(torch.float64)), _one_hot(lab, a.device))
    return (e_in - null).to(a.dtype)


def modularity_max(adjacency: torch.Tensor, labels: Labels) -> torch.Tensor:
    """Largest Q the partition allows for these degrees (method.md §10.1).

    Q_max = 1 − (1/(2m)²) Σ_c a_c², with a_c = Σ_{i∈c} k_i the total degree of group c;
    Q/Q_max is the normalised modularity (`Q_nom` in the reference code).

    Args:
        adjacency: shape (..., N, N), float, symmetric and non-negative.
        labels: shape (N,), integers 0..K-1.

    Returns:
        Q_max, shape (...), the adjacency's dtype; NaN for a graph without edges.

    Raises:
        TypeError: if adjacency is not a floating tensor or labels are not integers.
        ValueError: on a bad shape, a label count other than N, asymmetry or negative weights.
    """
    a = _check_adjacency(adjacency, "modularity_max()")
    lab = _as_labels(labels, "modularity_max()", a.shape[-1])
    _, null = _modularity_terms(_zero_diagonal(a.to(torch.float64)), _one_hot(lab, a.device))
    return (1.0 - null).to(a.dtype)


def modularity_chance(labels: Labels) -> float:
    """Chance level of Q for this partition: Q of the complete graph with equal weights.

    A graph whose weights carry no trace of the partition (all equal) scores
    Σ_c n_c(n_c−1)/(N(N−1)) − Σ_c n_c²/N², slightly below 0: −1/(2(N−1)) for two equal
    halves (ground-truth.md). |corr| of units without group structure approaches it, so
    emergence thresholds compare Q with this value, not with 0.

    Args:
        labels: shape (N,), integers 0..K-1, N >= 2.

    Returns:
        The chance level as a float.

    Raises:
        TypeError: if labels are not integers.
        ValueError: if labels are invalid or N < 2.
    """
    lab = _as_labels(labels, "modularity_chance()")
    n = lab.shape[0]
    if n < 2:
        raise ValueError(
            f"modularity_chance(): labels must cover at least 2 units, but got N={n}."
        )
    sizes = np.bincount(lab).astype(np.float64)
    return float((sizes * (sizes - 1)).sum() / (n * (n - 1)) - (sizes**2).sum() / n**2)


# --------------------------------------------------------------------------------------------
# functional and structural graphs


def _abs_corr(activity: torch.Tensor) -> torch.Tensor:
    """(..., M, N) -> float64 |Pearson corr| (..., N, N), zero diagonal, constant units 0."""
    # centre first, then one batched matmul in the input dtype: for float32 the relative error
    # of the covariance is ~1e-6 (TF32 matmuls, if enabled, give ~1e-3), far below what moves Q
    centred = activity - activity.mean(-2, keepdim=True)
    cov = (centred.mT @ centred).to(torch.float64)  # (..., N, N)
    cov = 0.5 * (cov + cov.mT)  # exact symmetry; gemm does not guarantee it
    # a unit is constant when all its samples are equal; its centred column may still carry
    # rounding residue, so decide on the raw samples, not on the variance
    constant = activity.amax(-2) == activity.amin(-2)  # (..., N)
    var = torch.where(constant, torch.ones_like(cov.diagonal(dim1=-2, dim2=-1)),
                      cov.diagonal(dim1=-2, dim2=-1))
    inv_std = var.rsqrt()
    corr = (cov * inv_std.unsqueeze(-1) * inv_std.unsqueeze(-2)).abs()
    varying = ~constant
    corr = corr * (varying.unsqueeze(-1) & varying.unsqueeze(-2))
    return _zero_diagonal(corr)


def _check_activity(activity: object, where: str) -> torch.Tensor:
    x = _check_float(activity, "activity", where, 2)
    if x.shape[-2] < 2:
        raise ValueError(
            f"{where}: activity must have shape (..., M, N) with M >= 2 samples, but got "
            f"shape {tuple(x.shape)}."
        )
    return x


def functional_adjacency(activity: torch.Tensor) -> torch.Tensor:
    """Functional graph: |Pearson correlation| between units over samples (method.md §10.1).

    Args:
        activity: shape (..., M, N), float; M samples (the caller flattens batch × time into
            M; the reference uses pre-activation x for WM and h for the GRU), e.g. (S, B*T, N).

    Returns:
        |corr|, shape (..., N, N), activity's dtype, symmetric, zero diagonal; a constant unit
        has correlation 0 with every unit (not NaN).

    Raises:
        TypeError: if activity is not a floating tensor.
        ValueError: if activity has fewer than 2 axes or fewer than 2 samples.
    """
    x = _check_activity(activity, "functional_adjacency()")
    return _abs_corr(x).to(x.dtype)


def functional_modularity(
    activity: torch.Tensor, labels: Labels
) -> tuple[torch.Tensor, torch.Tensor]:
    """Q_func and Q_func/Q_max of |corr| of unit activity for the fixed partition.

    Args:
        activity: shape (..., M, N), float, M samples of N units, e.g. (S, B*T, N).
        labels: shape (N,), integers 0..K-1.

    Returns:
        (q, q_norm), each shape (...), activity's dtype.

    Raises:
        TypeError: if activity is not a floating tensor or labels are not integers.
        ValueError: on a bad shape or a label count other than N.
    """
    x = _check_activity(activity, "functional_modularity()")
    lab = _as_labels(labels, "functional_modularity()", x.shape[-1])
    return _q_and_norm(_abs_corr(x), lab, x.dtype)


def _structural(weights: torch.Tensor) -> torch.Tensor:
    w = weights.to(torch.float64).abs()
    return _zero_diagonal(w + w.mT)


def structural_adjacency(weights: torch.Tensor) -> torch.Tensor:
    """Structural graph |W| + |W|ᵀ with zero diagonal (method.md §10.1).

    Args:
        weights: shape (..., N, N), float, any sign, e.g. W_rec of shape (S, N, N).

    Returns:
        adjacency, shape (..., N, N), weights' dtype.

    Raises:
        TypeError: if weights is not a floating tensor.
        ValueError: if weights is not square in its last two axes.
    """
    w = _check_square(weights, "weights", "structural_adjacency()")
    return _structural(w).to(w.dtype)


def structural_modularity(
    weights: torch.Tensor, labels: Labels
) -> tuple[torch.Tensor, torch.Tensor]:
    """Q_struct and Q_struct/Q_max of |W| + |W|ᵀ for the fixed partition.

    Args:
        weights: shape (..., N, N), float, any sign, e.g. W_rec of shape (S, N, N).
        labels: shape (N,), integers 0..K-1.

    Returns:
        (q, q_norm), each shape (...), weights' dtype.

    Raises:
        TypeError: if weights is not a floating tensor or labels are not integers.
        ValueError: on a bad shape or a label count other than N.
    """
    w = _check_square(weights, "weights", "structural_modularity()")
    lab = _as_labels(labels, "structural_modularity()", w.shape[-1])
    return _q_and_norm(_structural(w), lab, w.dtype)


# --------------------------------------------------------------------------------------------
# null-referenced modularity


def random_partitions(
    labels: Labels, n_partitions: int, seed: int | Sequence[int]
) -> np.ndarray:
    """R uniformly random relabellings of the units that keep every group's size.

    Each row is an independent uniform permutation of `labels`, so group k still has n_k
    units; these are the null partitions of `modularity_zscore`. Deterministic in `seed`
    (NumPy PCG64), so the same R partitions can score every evaluation and every seed.

    Args:
        labels: shape (N,), integers 0..K-1, the designed partition.
        n_partitions: R >= 1.
        seed: seed of the generator (an int >= 0, or a sequence of them).

    Returns:
        partitions, shape (R, N), int64; np.bincount of every row equals that of `labels`.

    Raises:
        TypeError: if labels are not integers.
        ValueError: if labels are invalid or R < 1.
    """
    lab = _as_labels(labels, "random_partitions()")
    if isinstance(n_partitions, bool) or not isinstance(n_partitions, (int, np.integer)) \
            or n_partitions < 1:
        raise ValueError(
            f"random_partitions(): n_partitions must be a positive int, but got {n_partitions!r}."
        )
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(lab, (int(n_partitions), 1)), axis=1)


def _check_partitions(partitions: object, n: int, where: str) -> np.ndarray:
    """(R, N) integer label rows -> int64 numpy; every value in 0..K-1, R >= 2."""
    if isinstance(partitions, torch.Tensor):
        partitions = partitions.detach().cpu().numpy()
    p = np.asarray(partitions)
    if p.ndim != 2 or p.shape[1] != n or p.shape[0] < 2:
        raise ValueError(
            f"{where}: partitions must have shape (R, N) with R >= 2 and N={n}, but got shape "
            f"{p.shape}. Use random_partitions()."
        )
    if p.dtype.kind not in "iu" or p.min() < 0:
        raise TypeError(f"{where}: partitions must be non-negative integers, but got {p.dtype}.")
    return p.astype(np.int64, copy=False)


def _partition_q(a: torch.Tensor, partitions: np.ndarray) -> torch.Tensor:
    """float64 (..., N, N) zero diagonal, (P, N) labels -> Q of every partition, (..., P).

    One matmul A @ [H_1 ... H_P] over all partitions at once, with the (N, P·K) indicator
    block, so no (..., P, N, N) copy of the adjacency is ever made.
    """
    p, n = partitions.shape
    k = int(partitions.max()) + 1
    idx = torch.as_tensor(partitions, dtype=torch.long, device=a.device)
    onehot = torch.nn.functional.one_hot(idx, k).to(torch.float64)  # (P, N, K)
    h = onehot.permute(1, 0, 2).reshape(n, p * k)  # (N, P·K)
    ah = (a @ h).view(*a.shape[:-1], p, k)  # (..., N, P, K)
    within = (ah * h.view(n, p, k)).sum((-3, -1))  # (..., P) Σ_ij A_ij δ(g_i, g_j)
    degree = a.sum(-1)  # (..., N)
    two_m = degree.sum(-1, keepdim=True)  # (..., 1)
    group_degree = (degree @ h).view(*degree.shape[:-1], p, k)  # (..., P, K)
    safe = torch.where(two_m > 0, two_m, torch.ones_like(two_m))
    q = within / safe - (group_degree**2).sum(-1) / safe**2
    return torch.where(two_m > 0, q, torch.full_like(q, float("nan")))


def modularity_of_partitions(adjacency: torch.Tensor, partitions: np.ndarray) -> torch.Tensor:
    """Q of each of P partitions on each matrix: the null distribution of `modularity_zscore`.

    Args:
        adjacency: shape (..., N, N), float, symmetric and non-negative, e.g. (S, N, N).
        partitions: shape (P, N), integer labels (e.g. from `random_partitions`), P >= 2.

    Returns:
        Q, shape (..., P), the adjacency's dtype; NaN for a graph without edges.

    Raises:
        TypeError: if adjacency is not a floating tensor or partitions are not integers.
        ValueError: on a bad shape, asymmetry or negative weights.
    """
    a = _check_adjacency(adjacency, "modularity_of_partitions()")
    parts = _check_partitions(partitions, a.shape[-1], "modularity_of_partitions()")
    return _partition_q(_zero_diagonal(a.to(torch.float64)), parts).to(a.dtype)


def modularity_zscore(
    adjacency: torch.Tensor, labels: Labels, partitions: np.ndarray
) -> torch.Tensor:
    """Designed-partition Q as a z-score against random partitions of the same group sizes.

    z = (Q(labels) − mean_r Q(partition_r)) / std_r Q(partition_r), the std with ddof = 1,
    on the *same* matrix. It asks whether the weights follow the designed groups more than
    they follow an arbitrary grouping of the same sizes; unlike Q it has the same meaning
    (≈ N(0, 1) for weights without group structure) whatever N, K and the degree spread
    are, so one threshold serves every cell of a phase diagram.

    Args:
        adjacency: shape (..., N, N), float, symmetric and non-negative, e.g. (S, N, N).
        labels: shape (N,), integers 0..K-1, the designed partition.
        partitions: shape (R, N), R >= 2 null partitions with the sizes of `labels`
            (`random_partitions(labels, R, seed)`).

    Returns:
        z, shape (...), the adjacency's dtype; NaN for a graph without edges or when every
        partition scores the same Q (e.g. K = 1, or all weights equal).

    Raises:
        TypeError: if adjacency is not a floating tensor or labels/partitions are not integers.
        ValueError: on a bad shape, partitions whose group sizes differ from the labels',
            asymmetry or negative weights.
    """
    where = "modularity_zscore()"
    a = _check_adjacency(adjacency, where)
    lab = _as_labels(labels, where, a.shape[-1])
    parts = _check_partitions(partitions, a.shape[-1], where)
    if not (np.sort(parts, axis=1) == np.sort(lab)).all():  # same multiset of labels per row
        raise ValueError(
            f"{where}: every partition must have the group sizes of labels "
            f"{np.bincount(lab).tolist()}. Use random_partitions(labels, R, seed)."
        )
    a64 = _zero_diagonal(a.to(torch.float64))
    both = _partition_q(a64, np.concatenate([lab[None], parts]))  # (..., 1 + R)
    q, null = both[..., 0], both[..., 1:]
    std = null.std(-1, correction=1)
    # a spread at rounding level (e.g. equal weights) is no spread: z would be noise / noise
    tiny = 1e3 * torch.finfo(torch.float64).eps * null.abs().amax(-1).clamp_min(1e-300)
    z = (q - null.mean(-1)) / torch.where(std > tiny, std, torch.ones_like(std))
    return torch.where(std > tiny, z, torch.full_like(z, float("nan"))).to(a.dtype)


def weight_change(weights: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """Structural graph of the learned change: |ΔW| + |ΔW|ᵀ with ΔW = W(t) − W(0).

    The random initialisation W(0) decays only slowly under weight decay and carries no
    trace of the partition, so Q of |W| + |W|ᵀ mixes learned structure with a shrinking
    random part; Q of this graph (`q_struct_delta`) sees only what training added.

    Args:
        weights: shape (..., N, N), float, W_rec(t), e.g. (S, N, N).
        initial: same shape, W_rec(0).

    Returns:
        adjacency, shape (..., N, N), weights' dtype, zero diagonal; all zeros (Q = NaN)
        while the weights are unchanged.

    Raises:
        TypeError: if either is not a floating tensor.
        ValueError: if they are not square or their shapes differ.
    """
    w = _check_square(weights, "weights", "weight_change()")
    w0 = _check_square(initial, "initial", "weight_change()")
    if w.shape != w0.shape:
        raise ValueError(
            f"weight_change(): weights and initial must have the same shape, but got "
            f"{tuple(w.shape)} and {tuple(w0.shape)}."
        )
    return _structural(w.to(torch.float64) - w0.to(torch.float64)).to(w.dtype)


# --------------------------------------------------------------------------------------------
# specialisation


def _best_assignment(m: torch.Tensor) -> torch.Tensor:
    """(..., K, K) float64 -> (...) max over permutations π of Σ_c m[c, π(c)]."""
    k = m.shape[-1]
    if k <= _MAX_BRUTE_FORCE_K:
        perms = torch.tensor(list(itertools.permutations(range(k))), device=m.device)  # (P, K)
        rows = torch.arange(k, device=m.device)
        return m[..., rows, perms].sum(-1).amax(-1)  # (..., P, K) -> (...)
    flat = m.detach().cpu().numpy().reshape(-1, k, k)
    best = np.full(flat.shape[0], np.nan)
    for b, mat in enumerate(flat):
        if np.isfinite(mat).all():  # linear_sum_assignment rejects NaN/inf
            r, c = linear_sum_assignment(mat, maximize=True)
            best[b] = mat[r, c].sum()
    return torch.as_tensor(best.reshape(m.shape[:-2]), device=m.device)


def specialization(strength: torch.Tensor, labels: Labels, channels: Labels) -> torch.Tensor:
    """Specialisation index D: how one-to-one groups map onto channels (method.md §10.1).

    With M[c, k] = Σ_{i∈G_c} Σ_{j: channels[j]=k} strength[i, j] and T = Σ M,
    D = max_π [Σ_c M[c,π(c)] − (1/(K−1)) Σ_c Σ_{k≠π(c)} M[c,k]] / T over one-to-one π,
    i.e. (K·max_π Σ_c M[c,π(c)] / T − 1)/(K − 1). At K = 2 this is the reference
    |Σ_{G1} d_i − Σ_{G2} d_i| / Σ_i(...) of D_in, D_out and D_corr. D is 1 for one-to-one
    specialisation, 0 when M is uniform (equal strengths with equal group sizes and channel
    widths; unequal sizes alone give D > 0), never negative (the best assignment beats the
    average one, T/K), and invariant to relabelling groups or channels.

    Args:
        strength: shape (..., N, C), float, non-negative: |W_out| (C outputs), |W_in|ᵀ (C input
            lines) or |corr(unit, target)|, e.g. (S, N, C).
        labels: shape (N,), integers 0..K-1, the unit groups.
        channels: shape (C,), integers 0..K_ch-1: the channel of each column (WM: output k ->
            k, input lines on_k and off_k -> k; separation: outputs 0-2 -> 0, 3-5 -> 1).

    Returns:
        D, shape (...), strength's dtype; NaN when K != K_ch, K = 1 or all strengths are 0.

    Raises:
        TypeError: if strength is not a floating tensor or labels/channels are not integers.
        ValueError: on a bad shape, N or C mismatch, or negative strengths.
    """
    where = "specialization()"
    s = _check_float(strength, "strength", where, 2)
    lab = _as_labels(labels, where, s.shape[-2])
    ch = _as_labels(channels, where, s.shape[-1], name="channels", axis="C")
    if s.numel() and s.amin() < 0:
        raise ValueError(
            f"{where}: strength must be non-negative, but got min {s.amin().item():.6g}. "
            "Pass absolute weights or |corr|."
        )
    k, k_ch = int(lab.max()) + 1, int(ch.max()) + 1
    if k != k_ch or k == 1:
        return torch.full(s.shape[:-2], float("nan"), dtype=s.dtype, device=s.device)
    g = _one_hot(lab, s.device)  # (N, K)
    h = _one_hot(ch, s.device)  # (C, K)
    m = g.T @ s.to(torch.float64) @ h  # (..., K, K) M[c, k]
    total = m.sum((-2, -1))
    best = _best_assignment(m)
    d = (k * best / total - 1.0) / (k - 1)
    return torch.where(total > 0, d, torch.full_like(d, float("nan"))).to(s.dtype)


# --------------------------------------------------------------------------------------------
# Gaussian mutual information


def _gaussian_cov(z: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
    """(..., M, D) -> float64 sample covariance (..., D, D) + ridge 1e-6 × mean variance.

    `noise` σ adds σ² to the diagonal: the covariance of z + ε with independent ε ~ N(0, σ²I),
    exactly, without sampling ε.
    """
    z = z.to(torch.float64)
    zc = z - z.mean(-2, keepdim=True)
    cov = zc.mT @ zc / (z.shape[-2] - 1)
    cov = 0.5 * (cov + cov.mT)
    mean_var = cov.diagonal(dim1=-2, dim2=-1).mean(-1)  # (...,)
    # the ridge keeps constant units at finite log det; with every unit constant any ridge
    # works (the MI is 0), so fall back to 1
    ridge = 1e-6 * torch.where(mean_var > 0, mean_var, torch.ones_like(mean_var))
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    return cov + (ridge[..., None, None] + noise**2) * eye


def _logdet(cov: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """ln det of the block cov[..., idx, idx] via Cholesky; NaN where not positive definite."""
    i = torch.as_tensor(idx, dtype=torch.long, device=cov.device)
    block = cov[..., i[:, None], i[None, :]]
    chol, info = torch.linalg.cholesky_ex(block)
    ld = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return torch.where(info == 0, ld, torch.full_like(ld, float("nan")))


def gaussian_mi(x: torch.Tensor, y: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
    """Plug-in Gaussian MI I(X; Y) in nats from the sample covariance (ground-truth.md).

    I = ½[ln det Σ_xx + ln det Σ_yy − ln det Σ], computed in float64 on the joint covariance
    with a ridge of 1e-6 × its mean variance added to the diagonal, so constant units give a
    finite value instead of −inf. Exact for Gaussian data up to a positive small-sample bias
    of about dx·dy/(2M) for independent rows (larger for autocorrelated rows such as time
    steps of one sequence: compare with `sequence_null`); it sees only linear dependence.

    Args:
        x: shape (..., M, dx), float, M joint samples, e.g. (S, B*T, N_1).
        y: shape (..., M, dy), float, same leading axes and M as x.
        noise: σ of independent Gaussian noise on every unit: the MI of (x + ε, y + ε′), with
            σ² added to the covariance diagonal (what a critic with `input_noise` σ sees).

    Returns:
        MI, shape (...), x's dtype.

    Raises:
        TypeError: if x or y is not a floating tensor.
        ValueError: if the leading axes or M differ, or M < 2.
    """
    where = "gaussian_mi()"
    x = _check_float(x, "x", where, 2)
    y = _check_float(y, "y", where, 2)
    if x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"{where}: x and y must share their leading axes and sample count (..., M), but got "
            f"shapes {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[-2] < 2:
        raise ValueError(f"{where}: x and y need M >= 2 samples, but got shape {tuple(x.shape)}.")
    dx, dy = x.shape[-1], y.shape[-1]
    cov = _gaussian_cov(torch.cat([x.to(torch.float64), y.to(torch.float64)], -1), noise)
    ix, iy = np.arange(dx), np.arange(dx, dx + dy)
    mi = 0.5 * (_logdet(cov, ix) + _logdet(cov, iy) - _logdet(cov, np.arange(dx + dy)))
    return mi.to(x.dtype)


def gaussian_penalty(activity: torch.Tensor, labels: Labels, kind: str,
                     noise: float = 0.0) -> torch.Tensor:
    """Gaussian plug-in version of the training MI penalty over K subgroups (DESIGN.md §3).

    `pairwise`: Σ_{i<j} I(G_i; G_j). `total_correlation`: Σ_{i>=2} I(G_1..G_{i−1}; G_i), which
    telescopes to ½[Σ_i ln det Σ_{G_i} − ln det Σ]. Both equal `gaussian_mi` of the two groups
    at K = 2; both are 0 at K = 1. Same covariance and ridge as `gaussian_mi`, over all N units.

    Args:
        activity: shape (..., M, N), float, M samples of N units, e.g. (S, B*T, N).
        labels: shape (N,), integers 0..K-1.
        kind: "pairwise" or "total_correlation".
        noise: σ of independent Gaussian noise on every unit (σ² on the covariance diagonal):
            the penalty of the noisy activity a critic with `mi.input_noise` σ sees.

    Returns:
        penalty in nats, shape (...), activity's dtype.

    Raises:
        TypeError: if activity is not a floating tensor or labels are not integers.
        ValueError: on an unknown kind, a bad shape or a label count other than N.
    """
    where = "gaussian_penalty()"
    if kind not in PENALTY_KINDS:
        raise ValueError(f"{where}: kind must be one of {PENALTY_KINDS}, but got {kind!r}.")
    x = _check_activity(activity, where)
    lab = _as_labels(labels, where, x.shape[-1])
    index = [np.flatnonzero(lab == c) for c in range(int(lab.max()) + 1)]
    cov = _gaussian_cov(x, noise)
    own = [_logdet(cov, idx) for idx in index]  # ln det Σ_{G_i}, each (...)
    total = torch.zeros(x.shape[:-2], dtype=torch.float64, device=x.device)
    if len(index) == 1:
        return total.to(x.dtype)
    if kind == "pairwise":
        for i, j in itertools.combinations(range(len(index)), 2):
            joint = _logdet(cov, np.concatenate([index[i], index[j]]))
            total = total + 0.5 * (own[i] + own[j] - joint)
    else:
        total = 0.5 * (torch.stack(own).sum(0) - _logdet(cov, np.concatenate(index)))
    return total.to(x.dtype)


def sequence_null(sequences: torch.Tensor, labels: Labels) -> torch.Tensor | None:
    """The sequence-shuffled pairing that is the null of every subgroup MI figure.

    Group g of sequence b is paired with group h of sequence (b + h − g) mod B: unit n of
    output sequence b is taken from sequence (b + label(n)) mod B at the same time step. Each
    group keeps its own statistics and autocorrelation, and no two groups come from the same
    sequence, so the true subgroup MI of the result is 0 while an estimator's bias (which grows
    with the time autocorrelation of the rows) is unchanged.

    Args:
        sequences: (..., T, B, N), float, B sequences of T steps (time-major, as networks.py).
        labels: (N,) group labels 0..K−1.

    Returns:
        (..., T, B, N), or None when B < K (too few sequences to give each group its own).
    """
    where = "sequence_null()"
    x = _check_float(sequences, "sequences", where, 3)
    lab = _as_labels(labels, where, x.shape[-1])
    b = x.shape[-2]
    if b < int(lab.max()) + 1:
        return None
    shift = torch.as_tensor(lab, dtype=torch.long, device=x.device)
    seq = (torch.arange(b, device=x.device)[:, None] + shift[None, :]) % b  # (B, N)
    unit = torch.arange(x.shape[-1], device=x.device).expand(b, -1)
    return x[..., seq, unit]


# --------------------------------------------------------------------------------------------
# task metrics


def _check_pair(output: object, target: object, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    out = _check_float(output, "output", where, 3)
    tgt = _check_float(target, "target", where, 3)
    if out.shape != tgt.shape:
        raise ValueError(
            f"{where}: output and target must have the same shape (..., B, T, C), but got "
            f"{tuple(out.shape)} and {tuple(tgt.shape)}."
        )
    return out, tgt


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sign agreement between outputs and ±1 targets (method.md §2.4).

    Mean over (B, T, C) of [(output > 0) == (target > 0)]: Keras BinaryAccuracy of
    round((y+1)/2) against (z+1)/2 at threshold 0.5, where y = 0 rounds to label 0 (banker's
    rounding) and so counts as negative, like z = 0.

    Args:
        output: shape (..., B, T, C), float, network outputs z, e.g. (S, B, T, C).
        target: shape (..., B, T, C), float, targets y.

    Returns:
        accuracy in [0, 1], shape (...), output's dtype.

    Raises:
        TypeError: if output or target is not a floating tensor.
        ValueError: if the shapes differ or have fewer than 3 axes.
    """
    out, tgt = _check_pair(output, target, "accuracy()")
    agree = ((out > 0) == (tgt > 0)).to(torch.float64)
    return agree.mean((-3, -2, -1)).to(out.dtype)


def r2(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-output coefficient of determination R² = 1 − SS_res/SS_tot over batch and time.

    Args:
        output: shape (..., B, T, C), float, predictions, e.g. (S, B, T, C).
        target: shape (..., B, T, C), float, targets; SS_tot uses their mean over (B, T).

    Returns:
        R², shape (..., C), output's dtype; NaN for an output whose target is constant.

    Raises:
        TypeError: if output or target is not a floating tensor.
        ValueError: if the shapes differ or have fewer than 3 axes.
    """
    out, tgt = _check_pair(output, target, "r2()")
    z, y = out.to(torch.float64), tgt.to(torch.float64)
    ss_res = ((y - z) ** 2).sum((-3, -2))  # (..., C)
    ss_tot = ((y - y.mean((-3, -2), keepdim=True)) ** 2).sum((-3, -2))
    safe = torch.where(ss_tot > 0, ss_tot, torch.ones_like(ss_tot))
    r = torch.where(ss_tot > 0, 1.0 - ss_res / safe, torch.full_like(ss_tot, float("nan")))
    return r.to(out.dtype)
