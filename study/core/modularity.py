"""Modularity of a fixed partition (docs/method.md §10.1): Newman Q and Q/Q_max of functional
(|corr| of activity) and structural (|W| + |W|ᵀ) graphs, Q's z-score against random partitions
of the same group sizes, the graph of the weight change ΔW, and the signed block statistics of
the change: the within-minus-between contrast of |W(t)| − |W(0)| with its random-partition
z-score, and the decomposition of the within- and between-group blocks on W(0).

Inputs are torch tensors batched over any leading axes (seed axis S first); adjacency is
symmetric, non-negative, diagonal ignored; labels are (N,) ints using every group 0..K-1.
float64 inside; results in the input dtype; NaN = undefined. Q's chance level (the complete
graph with equal weights) is `study.contract.outcomes.chance_modularity`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from study.core._checks import (
    Labels,
    _as_labels,
    _check_activity,
    _check_adjacency,
    _check_square,
    _one_hot,
)

__all__ = [
    "modularity",
    "modularity_max",
    "functional_adjacency",
    "functional_modularity",
    "structural_adjacency",
    "structural_modularity",
    "random_partitions",
    "modularity_of_partitions",
    "modularity_zscore",
    "weight_change",
    "magnitude_change",
    "block_contrast",
    "block_contrast_zscore",
    "block_decomposition",
]


def _zero_diagonal(a: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(a.shape[-1], dtype=torch.bool, device=a.device)
    return torch.where(eye, torch.zeros((), dtype=a.dtype, device=a.device), a)


def _modularity_terms(a: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
    """Weighted Newman modularity Q of the fixed partition `labels` (docs/method.md §10.1).

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
    """Largest Q the partition allows for these degrees (docs/method.md §10.1).

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
    var = torch.where(
        constant, torch.ones_like(cov.diagonal(dim1=-2, dim2=-1)), cov.diagonal(dim1=-2, dim2=-1)
    )
    inv_std = var.rsqrt()
    corr = (cov * inv_std.unsqueeze(-1) * inv_std.unsqueeze(-2)).abs()
    varying = ~constant
    corr = corr * (varying.unsqueeze(-1) & varying.unsqueeze(-2))
    return _zero_diagonal(corr)


def functional_adjacency(activity: torch.Tensor) -> torch.Tensor:
    """Functional graph: |Pearson correlation| between units over samples (docs/method.md §10.1).

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
    """Structural graph |W| + |W|ᵀ with zero diagonal (docs/method.md §10.1).

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


def random_partitions(labels: Labels, n_partitions: int, seed: int | Sequence[int]) -> np.ndarray:
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
    if (
        isinstance(n_partitions, bool)
        or not isinstance(n_partitions, (int, np.integer))
        or n_partitions < 1
    ):
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
    parts = _check_null(lab, partitions, a.shape[-1], where)
    a64 = _zero_diagonal(a.to(torch.float64))
    both = _partition_q(a64, np.concatenate([lab[None], parts]))  # (..., 1 + R)
    return _zscore(both).to(a.dtype)


def _check_null(lab: np.ndarray, partitions: object, n: int, where: str) -> np.ndarray:
    """Validated (R, N) null partitions that keep the group sizes of `lab`."""
    parts = _check_partitions(partitions, n, where)
    if not (np.sort(parts, axis=1) == np.sort(lab)).all():  # same multiset of labels per row
        raise ValueError(
            f"{where}: every partition must have the group sizes of labels "
            f"{np.bincount(lab).tolist()}. Use random_partitions(labels, R, seed)."
        )
    return parts


def _zscore(both: torch.Tensor) -> torch.Tensor:
    """(..., 1 + R) float64, the designed value first -> z against the other R (ddof = 1).

    NaN where the R values do not spread beyond rounding (e.g. equal weights, or no change at
    all): z would be noise over noise.
    """
    value, null = both[..., 0], both[..., 1:]
    std = null.std(-1, correction=1)
    tiny = 1e3 * torch.finfo(torch.float64).eps * null.abs().amax(-1).clamp_min(1e-300)
    z = (value - null.mean(-1)) / torch.where(std > tiny, std, torch.ones_like(std))
    return torch.where(std > tiny, z, torch.full_like(z, float("nan")))


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
# signed block statistics of the weight change


def _check_pair(weights: object, initial: object, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    w = _check_square(weights, "weights", where)
    w0 = _check_square(initial, "initial", where)
    if w.shape != w0.shape:
        raise ValueError(
            f"{where}: weights and initial must have the same shape, but got "
            f"{tuple(w.shape)} and {tuple(w0.shape)}."
        )
    return w, w0


def magnitude_change(weights: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """Signed change of every connection's magnitude: d_ij = |W_ij(t)| − |W_ij(0)|.

    Unlike the graph of |ΔW| (`weight_change`), d keeps the sign: a connection that shrank
    towards 0 has d < 0 whatever the sign of its weight, one that grew has d > 0. Sums of
    several blocks' d (e.g. the GRU's three recurrent blocks) are the change of |U_z|+|U_r|+|U_h|.

    Args:
        weights: shape (..., N, N), float, W(t), e.g. (S, N, N).
        initial: same shape, W(0).

    Returns:
        d, shape (..., N, N), weights' dtype, zero diagonal (self-connections are not between
        units and are left out of every block statistic).

    Raises:
        TypeError: if either is not a floating tensor.
        ValueError: if they are not square or their shapes differ.
    """
    w, w0 = _check_pair(weights, initial, "magnitude_change()")
    d = w.to(torch.float64).abs() - w0.to(torch.float64).abs()
    return _zero_diagonal(d).to(w.dtype)


def _pair_counts(lab: np.ndarray) -> tuple[int, int]:
    """Ordered off-diagonal pairs within groups, Σ_k n_k(n_k − 1), and between them."""
    n = lab.size
    sizes = np.bincount(lab)
    within = int((sizes * (sizes - 1)).sum())
    return within, n * (n - 1) - within


def _within_sums(d: torch.Tensor, partitions: np.ndarray) -> torch.Tensor:
    """float64 (..., N, N), (P, N) labels -> Σ_ij d_ij δ(g_i, g_j) per partition, (..., P)."""
    p, n = partitions.shape
    k = int(partitions.max()) + 1
    idx = torch.as_tensor(partitions, dtype=torch.long, device=d.device)
    h = torch.nn.functional.one_hot(idx, k).to(torch.float64).permute(1, 0, 2).reshape(n, p * k)
    dh = (d @ h).view(*d.shape[:-1], p, k)  # (..., N, P, K)
    return (dh * h.view(n, p, k)).sum((-3, -1))


def _contrasts(d: torch.Tensor, lab: np.ndarray, partitions: np.ndarray) -> torch.Tensor:
    """D of each partition (rows share the sizes of `lab`): (..., P), NaN without pairs."""
    n_within, n_between = _pair_counts(lab)
    sums = _within_sums(d, partitions)
    if n_within == 0 or n_between == 0:
        return torch.full_like(sums, float("nan"))
    total = d.sum((-2, -1)).unsqueeze(-1)
    return sums / n_within - (total - sums) / n_between


def block_contrast(change: torch.Tensor, labels: Labels) -> torch.Tensor:
    """Within-group minus between-group mean of a signed change d (e.g. `magnitude_change`).

    D = mean_{i≠j, g_i = g_j} d_ij − mean_{g_i ≠ g_j} d_ij. On d = |W(t)| − |W(0)|, D > 0 when
    the within-group connections grew relative to the between-group ones (or the between-group
    ones shrank more), D < 0 the reverse, D ≈ 0 when the change ignores the groups.

    Args:
        change: shape (..., N, N), float, any sign; the diagonal is ignored.
        labels: shape (N,), integers 0..K-1.

    Returns:
        D, shape (...), change's dtype; NaN when there are no within-group pairs (every group a
        single unit) or no between-group pairs (K = 1).

    Raises:
        TypeError: if change is not a floating tensor or labels are not integers.
        ValueError: on a bad shape or a label count other than N.
    """
    d = _check_square(change, "change", "block_contrast()")
    lab = _as_labels(labels, "block_contrast()", d.shape[-1])
    d64 = _zero_diagonal(d.to(torch.float64))
    return _contrasts(d64, lab, lab[None])[..., 0].to(d.dtype)


def block_contrast_zscore(
    change: torch.Tensor, labels: Labels, partitions: np.ndarray
) -> torch.Tensor:
    """`block_contrast` of the designed partition as a z-score against random partitions.

    z = (D(labels) − mean_r D(partition_r)) / std_r D(partition_r) (ddof = 1) on the same d.
    Every partition has the designed group sizes, so the pair counts are the same and z is
    also the z-score of the within-group sum of d. Positive: the within-group connections
    changed upwards relative to the between-group ones more than under an arbitrary grouping
    of the same sizes (within grew and/or between shrank).

    Args:
        change: shape (..., N, N), float, any sign; the diagonal is ignored.
        labels: shape (N,), integers 0..K-1, the designed partition.
        partitions: shape (R, N), R >= 2 null partitions with the sizes of `labels`.

    Returns:
        z, shape (...), change's dtype; NaN when D is undefined or does not vary over the
        partitions (e.g. no change at all, at epoch 0).

    Raises:
        TypeError: if change is not a floating tensor or labels/partitions are not integers.
        ValueError: on a bad shape or partitions whose group sizes differ from the labels'.
    """
    where = "block_contrast_zscore()"
    d = _check_square(change, "change", where)
    lab = _as_labels(labels, where, d.shape[-1])
    parts = _check_null(lab, partitions, d.shape[-1], where)
    d64 = _zero_diagonal(d.to(torch.float64))
    return _zscore(_contrasts(d64, lab, np.concatenate([lab[None], parts]))).to(d.dtype)


BLOCK_PARTS = ("ratio", "proj", "orth")


def block_decomposition(
    weights: torch.Tensor, initial: torch.Tensor, labels: Labels
) -> dict[str, torch.Tensor]:
    """How the within-group and the between-group blocks moved from their initial values.

    For block b (within: i ≠ j in one group; between: i, j in different groups), W_b keeps the
    entries of the block and zeroes the rest. With W_b⁰ = W_b(0):

        ratio = ‖W_b(t)‖ / ‖W_b⁰‖                      (Frobenius norms)
        proj  = c = ⟨W_b(t), W_b⁰⟩ / ‖W_b⁰‖²           (the part along W(0))
        orth  = ‖W_b(t) − c·W_b⁰‖ / ‖W_b⁰‖             (the part orthogonal to W(0))

    so ratio² = proj² + orth². Pruning a block (shrinking what was there) gives ratio ≈ proj < 1
    and a small orth; rewiring it gives a large orth.

    Args:
        weights: shape (..., N, N), float, W(t), e.g. (S, N, N).
        initial: same shape, W(0).
        labels: shape (N,), integers 0..K-1.

    Returns:
        {"within_ratio", "within_proj", "within_orth", "between_ratio", "between_proj",
        "between_orth"}, each shape (...), weights' dtype; NaN where the block is empty or
        W_b(0) = 0 (the between block for K = 1).

    Raises:
        TypeError: if either is not a floating tensor or labels are not integers.
        ValueError: on bad shapes or a label count other than N.
    """
    w, w0 = _check_pair(weights, initial, "block_decomposition()")
    lab = _as_labels(labels, "block_decomposition()", w.shape[-1])
    same = torch.as_tensor(lab[:, None] == lab[None, :], device=w.device)
    eye = torch.eye(lab.size, dtype=torch.bool, device=w.device)
    masks = {"within": same & ~eye, "between": ~same}
    w64, w064 = w.to(torch.float64), w0.to(torch.float64)
    out: dict[str, torch.Tensor] = {}
    for block, mask in masks.items():
        wb, w0b = w64 * mask, w064 * mask
        sq0 = w0b.square().sum((-2, -1))
        ok = sq0 > 0
        safe = torch.where(ok, sq0, torch.ones_like(sq0))
        norm0 = safe.sqrt()
        c = (wb * w0b).sum((-2, -1)) / safe
        orth = (wb - c[..., None, None] * w0b).square().sum((-2, -1)).sqrt() / norm0
        ratio = wb.square().sum((-2, -1)).sqrt() / norm0
        nan = torch.full_like(sq0, float("nan"))
        for part, value in zip(BLOCK_PARTS, (ratio, c, orth)):
            out[f"{block}_{part}"] = torch.where(ok, value, nan).to(w.dtype)
    return out
