"""Tests for study/core/modularity.py against networkx, numpy and the closed forms of
docs/ground-truth.md: Q, Q_max, Q's chance level (study.contract.outcomes.chance_modularity), the
functional and structural graphs and their modularity.
"""

import itertools
import math

import networkx as nx
import numpy as np
import pytest
import torch

from study.contract.outcomes import chance_modularity
from study.core.modularity import (
    functional_adjacency,
    functional_modularity,
    modularity,
    modularity_max,
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
def test_chance_modularity_of_halves(n_units):
    assert chance_modularity(n_units, 2) == pytest.approx(-1.0 / (2 * (n_units - 1)))


@pytest.mark.parametrize("sizes", [(20, 20), (14, 13, 13), (3, 12), (5, 5, 5, 5), (1, 7), (9,)])
def test_chance_modularity_equals_q_of_all_ones_graph(sizes):
    labels = _labels(sizes)
    ones = torch.ones(labels.size, labels.size, dtype=torch.float64)
    chance = chance_modularity(labels.size, len(sizes), sizes)
    assert chance == pytest.approx(modularity(ones, labels).item(), abs=1e-12)


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
        (
            modularity,
            (torch.ones(40, 39), groups(40, 2)),
            ValueError,
            r"modularity\(\): adjacency must have shape \(..., N, N\), but got shape \(40, 39\)",
        ),
        (
            modularity,
            (torch.ones(40), groups(40, 2)),
            ValueError,
            r"modularity\(\): adjacency must have at least 2 axes, but got shape \(40,\)",
        ),
        (
            modularity,
            (_SYM, groups(5, 2)),
            ValueError,
            r"modularity\(\): labels must have shape \(N,\) with N=4, but got shape \(5,\)",
        ),
        (
            modularity,
            (torch.triu(_SYM), groups(4, 2)),
            ValueError,
            r"modularity\(\): adjacency must be symmetric, but got max \|A - A\^T\| = 1",
        ),
        (
            modularity,
            (-_SYM, groups(4, 2)),
            ValueError,
            r"modularity\(\): adjacency must be non-negative, but got min -1",
        ),
        (
            modularity,
            (np.ones((4, 4)), groups(4, 2)),
            TypeError,
            r"modularity\(\): adjacency must be a torch.Tensor, but got ndarray",
        ),
        (
            modularity,
            (torch.ones(4, 4, dtype=torch.long), groups(4, 2)),
            TypeError,
            r"adjacency must be a floating tensor, but got dtype torch.int64",
        ),
        (
            modularity,
            (_SYM, np.array([0.0, 0.0, 1.0, 1.0])),
            TypeError,
            r"modularity\(\): labels must be integers, but got dtype float64",
        ),
        (
            modularity,
            (_SYM, np.array([0, 0, 2, 2])),
            ValueError,
            r"modularity\(\): labels must use every index 0..K-1 \(K=3\), but \[1\] never occur",
        ),
        (
            modularity_max,
            (torch.triu(_SYM), groups(4, 2)),
            ValueError,
            r"modularity_max\(\): adjacency must be symmetric",
        ),
        (
            modularity_max,
            (_SYM, groups(3, 2)),
            ValueError,
            r"modularity_max\(\): labels must have shape \(N,\) with N=4",
        ),
        (
            chance_modularity,
            (1, 1),
            ValueError,
            r"chance_modularity\(\): n_hidden must be >= 2, but got n_hidden=1",
        ),
        (
            chance_modularity,
            (2, 2, (-1, 3)),
            ValueError,
            r"group_sizes\(\): sizes must be 2 positive ints summing to n_hidden=2, but got "
            r"sizes=\[-1, 3\]",
        ),
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
    # the floor b0 = sqrt(2/(πT)) (docs/ground-truth.md). Q of equal blocks then follows
    # _equal_blocks_q(n, k, a, b); a factor 2 either way on b0 bounds the sampling wiggle.
    n, t, noise_var = 24 // k, 4000, 3.0
    gen = torch.Generator().manual_seed(11 + k)
    activity = _planted_activity(gen, k, n, t, noise_var, shared=False)
    q, _ = functional_modularity(activity, groups(k * n, k))
    a, b0 = 1.0 / (1.0 + noise_var), math.sqrt(2.0 / (math.pi * t))
    assert _equal_blocks_q(n, k, a, 2.0 * b0) < q.item() < _equal_blocks_q(n, k, a, 0.5 * b0)
    assert q.item() < 1.0 - 1.0 / k  # the b = 0 limit (0.5 for two groups) is never reached
    assert q.item() > chance_modularity(k * n, k) + 0.3


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
    assert q.item() == pytest.approx(chance_modularity(k * n, k), abs=tol)


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
        (
            functional_adjacency,
            (torch.ones(1, 4),),
            ValueError,
            r"functional_adjacency\(\): activity must have shape \(..., M, N\) with M >= 2 "
            r"samples, "
            r"but got shape \(1, 4\)",
        ),
        (
            functional_adjacency,
            (torch.ones(4),),
            ValueError,
            r"functional_adjacency\(\): activity must have at least 2 axes, but got shape \(4,\)",
        ),
        (
            functional_adjacency,
            ([[1.0, 2.0]],),
            TypeError,
            r"functional_adjacency\(\): activity must be a torch.Tensor, but got list",
        ),
        (
            functional_modularity,
            (torch.ones(10, 4), groups(5, 2)),
            ValueError,
            r"functional_modularity\(\): labels must have shape \(N,\) with N=4, "
            r"but got shape \(5,\)",
        ),
        (
            functional_modularity,
            (torch.ones(10, 4, dtype=torch.int32), groups(4, 2)),
            TypeError,
            r"functional_modularity\(\): activity must be a floating tensor, "
            r"but got dtype torch.int32",
        ),
        (
            structural_adjacency,
            (torch.ones(3, 4),),
            ValueError,
            r"structural_adjacency\(\): weights must have shape \(..., N, N\), "
            r"but got shape \(3, 4\)",
        ),
        (
            structural_modularity,
            (torch.ones(4, 4), groups(6, 2)),
            ValueError,
            r"structural_modularity\(\): labels must have shape \(N,\) with N=4",
        ),
        (
            structural_modularity,
            (torch.ones(2, 4, 5), groups(4, 2)),
            ValueError,
            r"structural_modularity\(\): weights must have shape \(..., N, N\), "
            r"but got shape \(2, 4, 5\)",
        ),
    ],
)
def test_graph_builders_reject_bad_input(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)
