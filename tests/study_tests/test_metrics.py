"""Tests for study/metrics.py against networkx, numpy and the closed forms of ground-truth.md."""

import itertools
import math

import networkx as nx
import numpy as np
import pytest
import torch

from study.core.metrics import (
    accuracy,
    functional_adjacency,
    functional_modularity,
    gaussian_mi,
    gaussian_penalty,
    modularity,
    modularity_chance,
    modularity_max,
    r2,
    specialization,
    structural_adjacency,
    structural_modularity,
)
from study.core.partition import groups


def _labels(sizes):
    return groups(sum(sizes), len(sizes), sizes=sizes)


def _random_graph(rng, n, density=0.6):
    """Symmetric non-negative weights with some absent edges and a non-zero diagonal."""
    w = rng.random((n, n)) * (rng.random((n, n)) < density)
    return np.triu(w, 1) + np.triu(w, 1).T + np.diag(rng.random(n))


def _nx_modularity(adjacency, labels):
    a = adjacency.copy()
    np.fill_diagonal(a, 0.0)
    graph = nx.from_numpy_array(a)
    communities = [set(np.flatnonzero(labels == k).tolist()) for k in range(labels.max() + 1)]
    return nx.community.modularity(graph, communities, weight="weight", resolution=1)


def _two_block(n, a, b):
    """Complete graph on two blocks of n nodes: weight a within, b between, no self-loops."""
    within = np.full((n, n), a)
    between = np.full((n, n), b)
    adjacency = np.block([[within, between], [between, within]])
    np.fill_diagonal(adjacency, 0.0)
    return torch.tensor(adjacency)


def _equal_blocks_q(n, k, a, b):
    """Q of K equal blocks of n nodes, weight a within and b between (generalises ground truth)."""
    n_total = n * k
    degree = (n - 1) * a + (n_total - n) * b
    return (n - 1) * a / degree - 1.0 / k


# --------------------------------------------------------------------------------------------
# modularity


@pytest.mark.parametrize("sizes", [(10, 10), (7, 9, 4), (5, 6, 7, 8), (3, 12), (1, 4, 2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_modularity_matches_networkx(sizes, seed):
    rng = np.random.default_rng(seed)
    labels = _labels(sizes)
    adjacency = _random_graph(rng, labels.size)
    q = modularity(torch.tensor(adjacency), labels)
    assert q.dtype == torch.float64
    assert q.item() == pytest.approx(_nx_modularity(adjacency, labels), abs=1e-9)


@pytest.mark.parametrize("n", [5, 20])
@pytest.mark.parametrize(("a", "b"), [(1.0, 0.0), (1.0, 0.5), (2.0, 1.0), (1.0, 1.0), (0.3, 0.9)])
def test_modularity_two_block_closed_form(n, a, b):
    q = modularity(_two_block(n, a, b), groups(2 * n, 2))
    expected = ((n - 1) * a - n * b) / (2 * ((n - 1) * a + n * b))
    assert q.item() == pytest.approx(expected, abs=1e-12)


def test_modularity_two_disjoint_cliques_is_one_half():
    assert modularity(_two_block(8, 1.0, 0.0), groups(16, 2)).item() == pytest.approx(0.5)


@pytest.mark.parametrize("c", [2, 3, 5])
@pytest.mark.parametrize("size", [2, 6])
def test_modularity_disconnected_cliques(c, size):
    blocks = np.kron(np.eye(c), np.ones((size, size)))
    q = modularity(torch.tensor(blocks), groups(c * size, c))
    assert q.item() == pytest.approx(1.0 - 1.0 / c, abs=1e-12)


@pytest.mark.parametrize("n_units", [4, 40, 100])
def test_modularity_chance_of_halves(n_units):
    assert modularity_chance(groups(n_units, 2)) == pytest.approx(-1.0 / (2 * (n_units - 1)))


@pytest.mark.parametrize("sizes", [(20, 20), (14, 13, 13), (3, 12), (5, 5, 5, 5), (1, 7), (9,)])
def test_modularity_chance_equals_q_of_all_ones_graph(sizes):
    labels = _labels(sizes)
    ones = torch.ones(labels.size, labels.size, dtype=torch.float64)
    assert modularity_chance(labels) == pytest.approx(modularity(ones, labels).item(), abs=1e-12)


@pytest.mark.parametrize("sizes", [(6, 6), (4, 7, 5)])
def test_modularity_invariant_to_permutation_within_groups(sizes):
    rng = np.random.default_rng(3)
    labels = _labels(sizes)
    adjacency = _random_graph(rng, labels.size)
    perm = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == k)) for k in range(len(sizes))]
    )
    permuted = adjacency[np.ix_(perm, perm)]
    assert (labels[perm] == labels).all()
    q = modularity(torch.tensor(adjacency), labels)
    q_perm = modularity(torch.tensor(permuted), labels)
    assert q_perm.item() == pytest.approx(q.item(), abs=1e-12)


def test_modularity_ignores_diagonal():
    rng = np.random.default_rng(4)
    labels = _labels((5, 7))
    adjacency = _random_graph(rng, 12)
    looped = adjacency + np.diag(rng.random(12) * 100.0)
    q = modularity(torch.tensor(adjacency), labels)
    assert modularity(torch.tensor(looped), labels).item() == pytest.approx(q.item(), abs=1e-12)


@pytest.mark.parametrize("leading", [(3,), (2, 3)])
def test_modularity_batched_equals_per_matrix(leading):
    rng = np.random.default_rng(5)
    labels = _labels((4, 5, 3))
    mats = np.stack([_random_graph(rng, 12) for _ in range(math.prod(leading))])
    batch = torch.tensor(mats.reshape(*leading, 12, 12))
    q, q_max = modularity(batch, labels), modularity_max(batch, labels)
    assert q.shape == leading and q_max.shape == leading
    for flat, mat in enumerate(mats):
        pos = np.unravel_index(flat, leading)
        assert q[pos].item() == pytest.approx(_nx_modularity(mat, labels), abs=1e-9)
        assert q_max[pos].item() == pytest.approx(
            modularity_max(torch.tensor(mat), labels).item(), abs=1e-12
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sizes", [(6, 6), (3, 4, 5, 2)])
def test_modularity_max_bounds_q(seed, sizes):
    rng = np.random.default_rng(seed)
    labels = _labels(sizes)
    adjacency = torch.tensor(np.stack([_random_graph(rng, labels.size) for _ in range(8)]))
    q, q_max = modularity(adjacency, labels), modularity_max(adjacency, labels)
    assert (q <= q_max + 1e-12).all()
    assert (q_max <= 1.0).all()


@pytest.mark.parametrize("c", [2, 3, 4])
def test_modularity_max_reached_without_between_edges(c):
    # with no edges between groups, within/2m = 1, so Q = 1 − Σ(a_c/2m)² = Q_max = 1 − 1/c
    blocks = torch.tensor(np.kron(np.eye(c), np.ones((5, 5))))
    labels = groups(5 * c, c)
    assert modularity_max(blocks, labels).item() == pytest.approx(1.0 - 1.0 / c, abs=1e-12)
    assert modularity(blocks, labels).item() == pytest.approx(1.0 - 1.0 / c, abs=1e-12)


def test_modularity_float32_in_float32_out():
    rng = np.random.default_rng(6)
    labels = _labels((6, 9))
    adjacency = _random_graph(rng, 15)
    q32 = modularity(torch.tensor(adjacency, dtype=torch.float32), labels)
    assert q32.dtype == torch.float32
    assert q32.item() == pytest.approx(_nx_modularity(adjacency, labels), abs=1e-6)


def test_modularity_without_edges_is_nan():
    zeros = torch.zeros(2, 6, 6, dtype=torch.float64)
    labels = groups(6, 2)
    assert torch.isnan(modularity(zeros, labels)).all()
    assert torch.isnan(modularity_max(zeros, labels)).all()
    assert torch.isnan(structural_modularity(zeros, labels)[1]).all()


def test_modularity_accepts_torch_labels():
    rng = np.random.default_rng(7)
    labels = _labels((4, 4))
    adjacency = _random_graph(rng, 8)
    q = modularity(torch.tensor(adjacency), torch.as_tensor(labels))
    assert q.item() == pytest.approx(_nx_modularity(adjacency, labels), abs=1e-9)


_SYM = torch.ones(4, 4)


@pytest.mark.parametrize(
    ("fn", "args", "error", "match"),
    [
        (modularity, (torch.ones(40, 39), groups(40, 2)), ValueError,
         r"modularity\(\): adjacency must have shape \(..., N, N\), but got shape \(40, 39\)"),
        (modularity, (torch.ones(40), groups(40, 2)), ValueError,
         r"modularity\(\): adjacency must have at least 2 axes, but got shape \(40,\)"),
        (modularity, (_SYM, groups(5, 2)), ValueError,
         r"modularity\(\): labels must have shape \(N,\) with N=4, but got shape \(5,\)"),
        (modularity, (torch.triu(_SYM), groups(4, 2)), ValueError,
         r"modularity\(\): adjacency must be symmetric, but got max \|A - A\^T\| = 1"),
        (modularity, (-_SYM, groups(4, 2)), ValueError,
         r"modularity\(\): adjacency must be non-negative, but got min -1"),
        (modularity, (np.ones((4, 4)), groups(4, 2)), TypeError,
         r"modularity\(\): adjacency must be a torch.Tensor, but got ndarray"),
        (modularity, (torch.ones(4, 4, dtype=torch.long), groups(4, 2)), TypeError,
         r"adjacency must be a floating tensor, but got dtype torch.int64"),
        (modularity, (_SYM, np.array([0.0, 0.0, 1.0, 1.0])), TypeError,
         r"modularity\(\): labels must be integers, but got dtype float64"),
        (modularity, (_SYM, np.array([0, 0, 2, 2])), ValueError,
         r"modularity\(\): labels must use every index 0..K-1 \(K=3\), but \[1\] never occur"),
        (modularity_max, (torch.triu(_SYM), groups(4, 2)), ValueError,
         r"modularity_max\(\): adjacency must be symmetric"),
        (modularity_max, (_SYM, groups(3, 2)), ValueError,
         r"modularity_max\(\): labels must have shape \(N,\) with N=4"),
        (modularity_chance, (np.array([0]),), ValueError,
         r"modularity_chance\(\): labels must cover at least 2 units, but got N=1"),
        (modularity_chance, (np.array([-1, 0]),), ValueError,
         r"modularity_chance\(\): labels must be non-negative, but got min -1"),
    ],
)
def test_modularity_rejects_bad_input(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)


# --------------------------------------------------------------------------------------------
# functional and structural graphs


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_functional_adjacency_matches_corrcoef(dtype, tol):
    gen = torch.Generator().manual_seed(8)
    mixing = torch.randn(3, 7, 7, generator=gen, dtype=torch.float64)
    # correlated units with unequal means and scales: (S=3, M=500, N=7)
    activity = torch.randn(3, 500, 7, generator=gen, dtype=torch.float64) @ mixing
    activity = activity * torch.linspace(0.1, 10.0, 7, dtype=torch.float64) + 5.0
    got = functional_adjacency(activity.to(dtype))
    assert got.dtype == dtype and got.shape == (3, 7, 7)
    for s in range(3):
        expected = np.abs(np.corrcoef(activity[s].numpy(), rowvar=False))
        np.fill_diagonal(expected, 0.0)
        np.testing.assert_allclose(got[s].double().numpy(), expected, atol=tol, rtol=0)


def test_functional_adjacency_constant_unit_gives_zero():
    gen = torch.Generator().manual_seed(9)
    activity = torch.randn(400, 5, generator=gen, dtype=torch.float64)
    activity[:, 2] = 0.3  # 0.3 is not exact in binary, so its mean carries rounding residue
    got = functional_adjacency(activity)
    assert torch.isfinite(got).all()
    assert (got[2] == 0).all() and (got[:, 2] == 0).all()
    keep = [0, 1, 3, 4]
    expected = np.abs(np.corrcoef(activity[:, keep].numpy(), rowvar=False))
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(got[np.ix_(keep, keep)].numpy(), expected, atol=1e-12)


def test_functional_modularity_equals_modularity_of_functional_adjacency():
    gen = torch.Generator().manual_seed(10)
    activity = torch.randn(2, 300, 9, generator=gen, dtype=torch.float64)
    labels = _labels((3, 6))
    q, q_norm = functional_modularity(activity, labels)
    adjacency = functional_adjacency(activity)
    for s in range(2):
        a = adjacency[s].numpy()
        assert q[s].item() == pytest.approx(_nx_modularity(a, labels), abs=1e-9)
    expected_norm = modularity(adjacency, labels) / modularity_max(adjacency, labels)
    torch.testing.assert_close(q_norm, expected_norm, atol=1e-12, rtol=0)


def _planted_activity(gen, k, n, t, noise_var, shared):
    """(T, K*n): each unit = its group's source (or one shared source) + noise of noise_var."""
    sources = torch.randn(t, 1 if shared else k, generator=gen, dtype=torch.float64)
    per_unit = sources.repeat_interleave(1 if shared else n, dim=1).expand(t, k * n)
    return per_unit + noise_var**0.5 * torch.randn(t, k * n, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_functional_modularity_planted_independent_sources(k):
    # within-group |corr| = a = 1/(1 + noise_var); between-group |corr| of independent units has
    # the floor b0 = sqrt(2/(πT)) (ground-truth.md). Q of equal blocks then follows
    # _equal_blocks_q(n, k, a, b); a factor 2 either way on b0 bounds the sampling wiggle.
    n, t, noise_var = 24 // k, 4000, 3.0
    gen = torch.Generator().manual_seed(11 + k)
    activity = _planted_activity(gen, k, n, t, noise_var, shared=False)
    q, _ = functional_modularity(activity, groups(k * n, k))
    a, b0 = 1.0 / (1.0 + noise_var), math.sqrt(2.0 / (math.pi * t))
    assert _equal_blocks_q(n, k, a, 2.0 * b0) < q.item() < _equal_blocks_q(n, k, a, 0.5 * b0)
    assert q.item() < 1.0 - 1.0 / k  # the b = 0 limit (0.5 for two groups) is never reached
    assert q.item() > modularity_chance(groups(k * n, k)) + 0.3


@pytest.mark.parametrize("k", [2, 3])
def test_functional_modularity_planted_shared_source_is_at_chance(k):
    # all pairs share |corr| = a; dQ/d(a_within − a_between) <= 1/(4a) at the chance point and
    # one pair's |r| has sd (1 − a²)/sqrt(T), so 6 such sds bound |Q − chance|
    n, t, noise_var = 24 // k, 4000, 3.0
    gen = torch.Generator().manual_seed(21 + k)
    activity = _planted_activity(gen, k, n, t, noise_var, shared=True)
    labels = groups(k * n, k)
    q, _ = functional_modularity(activity, labels)
    a = 1.0 / (1.0 + noise_var)
    tol = 6.0 * (1.0 - a**2) / math.sqrt(t) / (4.0 * a)
    assert q.item() == pytest.approx(modularity_chance(labels), abs=tol)


def test_functional_modularity_batched_equals_per_seed():
    gen = torch.Generator().manual_seed(12)
    activity = torch.randn(2, 3, 200, 8, generator=gen)
    labels = groups(8, 2)
    q, q_norm = functional_modularity(activity, labels)
    assert q.shape == (2, 3) and q.dtype == torch.float32
    for i, j in itertools.product(range(2), range(3)):
        q1, n1 = functional_modularity(activity[i, j], labels)
        assert q[i, j].item() == pytest.approx(q1.item(), abs=1e-6)
        assert q_norm[i, j].item() == pytest.approx(n1.item(), abs=1e-6)


def test_structural_adjacency_is_abs_plus_transpose_without_diagonal():
    gen = torch.Generator().manual_seed(13)
    weights = torch.randn(3, 6, 6, generator=gen)
    got = structural_adjacency(weights)
    w = weights.numpy()
    expected = np.abs(w) + np.abs(w).transpose(0, 2, 1)
    expected[:, np.arange(6), np.arange(6)] = 0.0
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("sizes", [(5, 5), (3, 4, 6)])
def test_structural_modularity_matches_networkx(sizes):
    gen = torch.Generator().manual_seed(14)
    labels = _labels(sizes)
    weights = torch.randn(4, labels.size, labels.size, generator=gen, dtype=torch.float64)
    q, q_norm = structural_modularity(weights, labels)
    adjacency = structural_adjacency(weights)
    for s in range(4):
        expected = _nx_modularity(adjacency[s].numpy(), labels)
        assert q[s].item() == pytest.approx(expected, abs=1e-9)
        q_max = modularity_max(adjacency[s], labels).item()
        assert q_norm[s].item() == pytest.approx(expected / q_max, abs=1e-9)


def test_structural_modularity_of_block_diagonal_weights_is_one_half():
    gen = torch.Generator().manual_seed(15)
    mask = torch.block_diag(torch.ones(5, 5), torch.ones(5, 5))
    weights = torch.randn(10, 10, generator=gen) * mask
    labels = groups(10, 2)
    q, q_norm = structural_modularity(weights, labels)
    # degrees differ between the halves, so Q = Q_max < 0.5 in general; Q/Q_max is exactly 1
    assert q_norm.item() == pytest.approx(1.0, abs=1e-6)
    q_max = modularity_max(structural_adjacency(weights), labels)
    assert q.item() == pytest.approx(q_max.item(), abs=1e-6)


@pytest.mark.parametrize(
    ("fn", "args", "error", "match"),
    [
        (functional_adjacency, (torch.ones(1, 4),), ValueError,
         r"functional_adjacency\(\): activity must have shape \(..., M, N\) with M >= 2 samples, "
         r"but got shape \(1, 4\)"),
        (functional_adjacency, (torch.ones(4),), ValueError,
         r"functional_adjacency\(\): activity must have at least 2 axes, but got shape \(4,\)"),
        (functional_adjacency, ([[1.0, 2.0]],), TypeError,
         r"functional_adjacency\(\): activity must be a torch.Tensor, but got list"),
        (functional_modularity, (torch.ones(10, 4), groups(5, 2)), ValueError,
         r"functional_modularity\(\): labels must have shape \(N,\) with N=4, "
         r"but got shape \(5,\)"),
        (functional_modularity, (torch.ones(10, 4, dtype=torch.int32), groups(4, 2)), TypeError,
         r"functional_modularity\(\): activity must be a floating tensor, "
         r"but got dtype torch.int32"),
        (structural_adjacency, (torch.ones(3, 4),), ValueError,
         r"structural_adjacency\(\): weights must have shape \(..., N, N\), "
         r"but got shape \(3, 4\)"),
        (structural_modularity, (torch.ones(4, 4), groups(6, 2)), ValueError,
         r"structural_modularity\(\): labels must have shape \(N,\) with N=4"),
        (structural_modularity, (torch.ones(2, 4, 5), groups(4, 2)), ValueError,
         r"structural_modularity\(\): weights must have shape \(..., N, N\), "
         r"but got shape \(2, 4, 5\)"),
    ],
)
def test_graph_builders_reject_bad_input(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)


# --------------------------------------------------------------------------------------------
# specialisation


def _reference_d_out_wm(w_out, labels):
    """method.md §10.1 D_out: d_i = |W_out[i,2]| − |W_out[i,1]| (1-based), halves G1, G2."""
    d = np.abs(w_out[:, 1]) - np.abs(w_out[:, 0])
    return abs(d[labels == 0].sum() - d[labels == 1].sum()) / np.abs(w_out).sum()


def _reference_d_in_wm(w_in, labels):
    """method.md §10.1 D_in: mem1 = inputs 0,1, mem2 = inputs 2,3; W_in has shape (4, N)."""
    a = np.abs(w_in)
    d = a[2:].sum(0) - a[:2].sum(0)
    return abs(d[labels == 0].sum() - d[labels == 1].sum()) / a.sum()


def _reference_d_out_separation(w_o, labels):
    """method.md §10.2 D_out: o¹, o² = mean |W_o| over the 3 Lorenz / 3 Rössler outputs."""
    o1, o2 = np.abs(w_o[:, :3]).mean(1), np.abs(w_o[:, 3:]).mean(1)
    d = o1 - o2
    return abs(d[labels == 0].sum() - d[labels == 1].sum()) / (o1 + o2).sum()


@pytest.mark.parametrize("sizes", [(20, 20), (7, 13)])
@pytest.mark.parametrize(
    ("reference", "shape", "channels", "transpose"),
    [
        (_reference_d_out_wm, ("N", 2), [0, 1], False),
        (_reference_d_in_wm, (4, "N"), [0, 0, 1, 1], True),
        (_reference_d_out_separation, ("N", 6), [0, 0, 0, 1, 1, 1], False),
    ],
)
def test_specialization_equals_reference_formula_at_k2(
    sizes, reference, shape, channels, transpose
):
    rng = np.random.default_rng(16)
    labels = _labels(sizes)
    n = labels.size
    shape = tuple(n if s == "N" else s for s in shape)
    # skew some matrices towards one channel per group so D spans (0, 1), not only ~0
    mats = [rng.normal(size=shape) * (1.0 + 3.0 * rng.random(shape)) for _ in range(6)]
    strength = np.stack([np.abs(m.T if transpose else m) for m in mats])  # (S, N, C)
    got = specialization(torch.tensor(strength), labels, np.array(channels))
    expected = np.array([reference(m, labels) for m in mats])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12, rtol=0)


def _literal_d(m):
    """The definition of D by enumerating every one-to-one assignment π (numpy, any K)."""
    k = m.shape[0]
    total = m.sum()
    best = -np.inf
    for perm in itertools.permutations(range(k)):
        on = m[np.arange(k), perm].sum()
        best = max(best, (on - (total - on) / (k - 1)) / total)
    return best


@pytest.mark.parametrize("k", [2, 3, 4, 6, 7, 8])
def test_specialization_matches_literal_definition(k):
    rng = np.random.default_rng(17 + k)
    labels = np.repeat(np.arange(k), rng.integers(1, 4, size=k))
    channels = rng.permutation(np.repeat(np.arange(k), rng.integers(1, 3, size=k)))
    strength = rng.random((3, labels.size, channels.size)) ** 3  # skewed, so assignments differ
    got = specialization(torch.tensor(strength), labels, channels)
    onehot_g, onehot_c = np.eye(k)[labels], np.eye(k)[channels]
    for s in range(3):
        m = onehot_g.T @ strength[s] @ onehot_c
        assert got[s].item() == pytest.approx(_literal_d(m), abs=1e-12)


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_specialization_is_one_for_one_to_one(k):
    rng = np.random.default_rng(18)
    labels = groups(4 * k, k)
    channels = np.repeat(np.arange(k), 2)
    target = rng.permutation(k)  # group c drives channel target[c] only
    mask = (target[labels][:, None] == channels[None, :]).astype(float)
    strength = torch.tensor(rng.random((2, 4 * k, 2 * k)) * mask)
    torch.testing.assert_close(
        specialization(strength, labels, channels), torch.ones(2, dtype=torch.float64)
    )


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_specialization_is_zero_for_uniform_strength(k):
    # equal group sizes and channel widths, so every M[c, k] is the same
    strength = torch.full((2, 3 * k, 2 * k), 0.7, dtype=torch.float64)
    got = specialization(strength, groups(3 * k, k), np.repeat(np.arange(k), 2))
    torch.testing.assert_close(got, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_specialization_invariant_to_relabelling(k):
    rng = np.random.default_rng(19)
    labels = rng.permutation(np.repeat(np.arange(k), 3))
    channels = np.repeat(np.arange(k), 2)
    strength = torch.tensor(rng.random((4, 3 * k, 2 * k)) ** 2)
    d = specialization(strength, labels, channels)
    group_perm, channel_perm = rng.permutation(k), rng.permutation(k)
    column_order = rng.permutation(2 * k)
    torch.testing.assert_close(specialization(strength, group_perm[labels], channels), d)
    torch.testing.assert_close(specialization(strength, labels, channel_perm[channels]), d)
    torch.testing.assert_close(
        specialization(strength[..., column_order], labels, channels[column_order]), d
    )


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_specialization_is_non_negative(k):
    rng = np.random.default_rng(20)
    strength = torch.tensor(rng.random((50, 2 * k, k)))
    d = specialization(strength, groups(2 * k, k), np.arange(k))
    assert (d >= -1e-12).all() and (d <= 1.0 + 1e-12).all()


@pytest.mark.parametrize(
    ("labels", "channels"),
    [
        (groups(6, 2), np.array([0, 1, 2])),
        (groups(6, 3), np.array([0, 1, 1])),
        (groups(6, 1), np.array([0, 0, 0])),
    ],
)
def test_specialization_nan_when_groups_differ_from_channels_or_single(labels, channels):
    strength = torch.rand(2, 6, 3, generator=torch.Generator().manual_seed(21))
    d = specialization(strength, labels, channels)
    assert d.shape == (2,) and d.dtype == torch.float32
    assert torch.isnan(d).all()


def test_specialization_nan_for_zero_strength():
    assert torch.isnan(specialization(torch.zeros(6, 2), groups(6, 2), np.array([0, 1]))).all()


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.ones(6, 2), groups(5, 2), [0, 1]), ValueError,
         r"specialization\(\): labels must have shape \(N,\) with N=6, but got shape \(5,\)"),
        ((torch.ones(6, 2), groups(6, 2), [0, 1, 1]), ValueError,
         r"specialization\(\): channels must have shape \(C,\) with C=2, but got shape \(3,\)"),
        ((torch.ones(6, 2), groups(6, 2), [1, 1]), ValueError,
         r"specialization\(\): channels must use every index 0..K-1 \(K=2\), "
         r"but \[0\] never occur"),
        ((torch.ones(6, 2), groups(6, 2), [0.0, 1.0]), TypeError,
         r"specialization\(\): channels must be integers, but got dtype float64"),
        ((-torch.ones(6, 2), groups(6, 2), [0, 1]), ValueError,
         r"specialization\(\): strength must be non-negative, but got min -1"),
        ((torch.ones(6), groups(6, 2), [0, 1]), ValueError,
         r"specialization\(\): strength must have at least 2 axes, but got shape \(6,\)"),
        ((np.ones((6, 2)), groups(6, 2), [0, 1]), TypeError,
         r"specialization\(\): strength must be a torch.Tensor, but got ndarray"),
    ],
)
def test_specialization_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        specialization(*args)


# --------------------------------------------------------------------------------------------
# Gaussian MI


def _correlated_pairs(gen, m, d, rho, leading=()):
    """x, y of shape (*leading, M, d): d independent pairs of unit Gaussians, correlation rho."""
    x = torch.randn(*leading, m, d, generator=gen, dtype=torch.float64)
    noise = torch.randn(*leading, m, d, generator=gen, dtype=torch.float64)
    return x, rho * x + math.sqrt(1.0 - rho**2) * noise


@pytest.mark.parametrize("d", [1, 3, 10])
@pytest.mark.parametrize("rho", [0.2, 0.5, 0.8])
def test_gaussian_mi_matches_closed_form(d, rho):
    # plug-in sd ≈ rho·sqrt(d/M) (delta method on each pair), bias ≈ d²/(2M)
    m = 100_000
    gen = torch.Generator().manual_seed(22)
    x, y = _correlated_pairs(gen, m, d, rho, leading=(2,))
    got = gaussian_mi(x, y)
    expected = -0.5 * d * math.log(1.0 - rho**2)
    tol = 5.0 * rho * math.sqrt(d / m) + d**2 / (2 * m)
    assert got.shape == (2,)
    np.testing.assert_allclose(got.numpy(), expected, atol=tol, rtol=0)


def test_gaussian_mi_of_independent_blocks_is_near_zero():
    m, dx, dy = 50_000, 4, 3
    gen = torch.Generator().manual_seed(23)
    x = torch.randn(m, dx, generator=gen)
    y = torch.randn(m, dy, generator=gen)
    got = gaussian_mi(x, y)
    assert got.dtype == torch.float32
    # plug-in bias dx·dy/(2M) with sd of the same order; 5× covers it
    assert abs(got.item()) < 5.0 * dx * dy / (2 * m)


def test_gaussian_mi_constant_unit_is_finite():
    gen = torch.Generator().manual_seed(24)
    x, y = _correlated_pairs(gen, 20_000, 2, 0.6)
    x_const = torch.cat([x, torch.full((20_000, 1), 0.3, dtype=torch.float64)], -1)
    got = gaussian_mi(x_const, y)
    assert torch.isfinite(got)
    # a constant unit carries no information; only the 1e-6 ridge moves the estimate
    assert got.item() == pytest.approx(gaussian_mi(x, y).item(), abs=1e-4)


def test_gaussian_mi_all_constant_is_zero():
    assert gaussian_mi(torch.ones(50, 2), torch.ones(50, 3)).item() == pytest.approx(0.0, abs=1e-9)


def _tc_equicorrelated(k, rho):
    """Total correlation of k equicorrelated unit Gaussians (ground-truth.md)."""
    return -0.5 * math.log((1.0 - rho) ** (k - 1) * (1.0 + (k - 1) * rho))


def _equicorrelated(gen, m, n, rho):
    shared = torch.randn(m, 1, generator=gen, dtype=torch.float64)
    own = torch.randn(m, n, generator=gen, dtype=torch.float64)
    return math.sqrt(rho) * shared + math.sqrt(1.0 - rho) * own


@pytest.mark.parametrize("rho", [0.3, 0.6])
@pytest.mark.parametrize("sizes", [(1, 1, 1), (2, 1, 3)])
def test_gaussian_penalty_equicorrelated_closed_forms(rho, sizes):
    # I(A; B) = TC(A ∪ B) − TC(A) − TC(B) for equicorrelated units, so both penalties follow
    # from the total-correlation closed form; 1 unit per group gives
    # TC = −½ln[(1−ρ)²(1+2ρ)] and pairwise = 3·(−½ln(1−ρ²))
    m = 100_000
    gen = torch.Generator().manual_seed(25)
    n = sum(sizes)
    activity = _equicorrelated(gen, m, n, rho)
    labels = _labels(sizes)
    tc = _tc_equicorrelated(n, rho) - sum(_tc_equicorrelated(s, rho) for s in sizes)
    pairwise = sum(
        _tc_equicorrelated(a + b, rho) - _tc_equicorrelated(a, rho) - _tc_equicorrelated(b, rho)
        for a, b in itertools.combinations(sizes, 2)
    )
    if sizes == (1, 1, 1):
        assert tc == pytest.approx(-0.5 * math.log((1 - rho) ** 2 * (1 + 2 * rho)))
        assert pairwise == pytest.approx(3 * -0.5 * math.log(1 - rho**2))
    tol = 5.0 * n * rho / math.sqrt(m) + n**2 / m  # per-pair sd rho/sqrt(M), summed over n units
    got_tc = gaussian_penalty(activity, labels, "total_correlation")
    got_pw = gaussian_penalty(activity, labels, "pairwise")
    assert got_tc.item() == pytest.approx(tc, abs=tol)
    assert got_pw.item() == pytest.approx(pairwise, abs=tol)


@pytest.mark.parametrize("kind", ["pairwise", "total_correlation"])
def test_gaussian_penalty_two_groups_equals_gaussian_mi(kind):
    gen = torch.Generator().manual_seed(26)
    activity = _equicorrelated(gen, 2000, 8, 0.4).reshape(1, 2000, 8).expand(3, 2000, 8)
    activity = activity + 0.5 * torch.randn(3, 2000, 8, generator=gen, dtype=torch.float64)
    labels = _labels((3, 5))
    got = gaussian_penalty(activity, labels, kind)
    torch.testing.assert_close(got, gaussian_mi(activity[..., :3], activity[..., 3:]))


@pytest.mark.parametrize("kind", ["pairwise", "total_correlation"])
def test_gaussian_penalty_single_group_is_zero(kind):
    activity = torch.randn(2, 100, 4, generator=torch.Generator().manual_seed(27))
    got = gaussian_penalty(activity, groups(4, 1), kind)
    assert got.shape == (2,) and (got == 0).all()


@pytest.mark.parametrize(
    ("fn", "args", "error", "match"),
    [
        (gaussian_penalty, (torch.ones(10, 4), groups(4, 2), "tc"), ValueError,
         r"gaussian_penalty\(\): kind must be one of \('pairwise', 'total_correlation'\), "
         r"but got 'tc'"),
        (gaussian_penalty, (torch.ones(10, 4), groups(3, 2), "pairwise"), ValueError,
         r"gaussian_penalty\(\): labels must have shape \(N,\) with N=4"),
        (gaussian_penalty, (torch.ones(1, 4), groups(4, 2), "pairwise"), ValueError,
         r"gaussian_penalty\(\): activity must have shape \(..., M, N\) with M >= 2 samples"),
        (gaussian_mi, (torch.ones(10, 2), torch.ones(9, 2)), ValueError,
         r"gaussian_mi\(\): x and y must share their leading axes and sample count \(..., M\), "
         r"but got shapes \(10, 2\) and \(9, 2\)"),
        (gaussian_mi, (torch.ones(1, 2), torch.ones(1, 2)), ValueError,
         r"gaussian_mi\(\): x and y need M >= 2 samples, but got shape \(1, 2\)"),
        (gaussian_mi, (torch.ones(10), torch.ones(10, 2)), ValueError,
         r"gaussian_mi\(\): x must have at least 2 axes, but got shape \(10,\)"),
        (gaussian_mi, (torch.ones(10, 2), np.ones((10, 2))), TypeError,
         r"gaussian_mi\(\): y must be a torch.Tensor, but got ndarray"),
    ],
)
def test_gaussian_metrics_reject_bad_input(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)


# --------------------------------------------------------------------------------------------
# task metrics


def test_accuracy_hand_built_with_zero_targets_and_outputs():
    # entries: agree, agree, (z<0, y=0: both negative) agree, (z=0 negative, y>0) disagree
    output = torch.tensor([0.5, -0.2, -0.1, 0.0]).reshape(1, 4, 1)
    target = torch.tensor([1.0, -1.0, 0.0, 1.0]).reshape(1, 4, 1)
    assert accuracy(output, target).item() == pytest.approx(0.75)


def test_accuracy_perfect_and_inverted():
    gen = torch.Generator().manual_seed(28)
    target = torch.sign(torch.randn(2, 3, 5, 2, generator=gen))
    assert (accuracy(target.clone(), target) == 1).all()
    assert (accuracy(-target, target) == 0).all()
    assert accuracy(target, target).shape == (2,)


def test_accuracy_equals_keras_binary_accuracy_transcription():
    # method.md §2.4: label = round((y+1)/2) (numpy rounds half to even, like TF), prediction
    # (z+1)/2 thresholded at 0.5; ramped targets and exact zeros included
    rng = np.random.default_rng(29)
    target = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=(3, 4, 50, 2))
    output = rng.choice([-0.7, 0.0, 0.3], size=(3, 4, 50, 2)) + 0.2 * target
    label = np.round((target + 1.0) / 2.0)
    pred = ((output + 1.0) / 2.0 > 0.5).astype(float)
    expected = (label == pred).mean(axis=(1, 2, 3))
    got = accuracy(torch.tensor(output), torch.tensor(target))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


def test_r2_perfect_mean_and_offset_predictions():
    gen = torch.Generator().manual_seed(30)
    target = torch.randn(2, 4, 100, 3, generator=gen, dtype=torch.float64)  # (S, B, T, C)
    assert r2(target, target).shape == (2, 3)
    torch.testing.assert_close(r2(target.clone(), target), torch.ones(2, 3, dtype=torch.float64))
    mean = target.mean((1, 2), keepdim=True).expand_as(target)
    torch.testing.assert_close(r2(mean, target), torch.zeros(2, 3, dtype=torch.float64))
    # a constant offset c: SS_res = BT·c², SS_tot = BT·var(y) -> R² = 1 − c²/var(y)
    offset = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    var = target.var((1, 2), unbiased=False)
    torch.testing.assert_close(r2(target + offset, target), 1.0 - offset**2 / var)


def test_r2_hand_built_and_constant_target():
    target = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]).reshape(1, 3, 2)
    output = torch.tensor([[1.0, 5.0], [2.0, 4.0], [4.0, 5.0]]).reshape(1, 3, 2)
    got = r2(output, target)
    assert got.dtype == torch.float32
    # output 0: SS_res = 1, SS_tot = 2 -> 0.5; output 1: constant target -> NaN
    assert got[0].item() == pytest.approx(0.5)
    assert math.isnan(got[1].item())


@pytest.mark.parametrize("fn", [accuracy, r2])
@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.ones(2, 3, 4), torch.ones(2, 3, 5)), ValueError,
         r"\(\): output and target must have the same shape \(..., B, T, C\), but got "
         r"\(2, 3, 4\) and \(2, 3, 5\)"),
        ((torch.ones(3, 4), torch.ones(3, 4)), ValueError,
         r"\(\): output must have at least 3 axes, but got shape \(3, 4\)"),
        ((torch.ones(2, 3, 4), torch.ones(2, 3, 4, dtype=torch.int64)), TypeError,
         r"\(\): target must be a floating tensor, but got dtype torch.int64"),
    ],
)
def test_task_metrics_reject_bad_input(fn, args, error, match):
    with pytest.raises(error, match=fn.__name__ + match):
        fn(*args)
