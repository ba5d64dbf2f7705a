"""Null-referenced modularity (study/core/modularity.py): random-partition z-scores and Q of ΔW.

References: networkx modularity of every partition (brute force), planted-partition and
Erdős–Rényi graphs from networkx, and closed forms for the weight change.
"""

import networkx as nx
import numpy as np
import pytest
import torch

from study.core.modularity import (
    modularity,
    modularity_of_partitions,
    modularity_zscore,
    random_partitions,
    structural_adjacency,
    weight_change,
)
from study.core.partition import groups


def _adjacency(graph: nx.Graph, weighted_rng=None) -> np.ndarray:
    a = nx.to_numpy_array(graph, nodelist=sorted(graph.nodes))
    if weighted_rng is not None:  # positive random weights on the existing edges
        w = weighted_rng.random(a.shape)
        a = a * (np.triu(w, 1) + np.triu(w, 1).T)
    return a


def _nx_q(a: np.ndarray, labels: np.ndarray) -> float:
    graph = nx.from_numpy_array(a)
    comms = [set(np.flatnonzero(labels == k).tolist()) for k in range(labels.max() + 1)]
    return nx.community.modularity(graph, comms, weight="weight")


def _brute_force_z(a: np.ndarray, labels: np.ndarray, parts: np.ndarray) -> float:
    null = np.array([_nx_q(a, row) for row in parts])
    return (_nx_q(a, labels) - null.mean()) / null.std(ddof=1)


# --------------------------------------------------------------------------------------------
# random partitions


@pytest.mark.parametrize("sizes", [(20, 20), (14, 13, 13), (3, 9, 5, 7)])
def test_random_partitions_keep_group_sizes_and_vary(sizes):
    labels = groups(sum(sizes), len(sizes), sizes=sizes)
    parts = random_partitions(labels, 50, seed=3)
    assert parts.shape == (50, sum(sizes)) and parts.dtype == np.int64
    for row in parts:
        assert np.bincount(row, minlength=len(sizes)).tolist() == list(sizes)
    assert len({row.tobytes() for row in parts}) == 50  # independent draws, not one repeated


def test_random_partitions_are_deterministic_in_the_seed():
    labels = groups(40, 2)
    assert np.array_equal(random_partitions(labels, 20, 7), random_partitions(labels, 20, 7))
    assert not np.array_equal(random_partitions(labels, 20, 7), random_partitions(labels, 20, 8))
    assert np.array_equal(
        random_partitions(labels, 20, [7, 3]), random_partitions(labels, 20, [7, 3])
    )


@pytest.mark.parametrize("r", [0, -1, 2.5, True])
def test_random_partitions_rejects_bad_counts(r):
    with pytest.raises(ValueError, match="n_partitions must be a positive int"):
        random_partitions(groups(10, 2), r, 0)


# --------------------------------------------------------------------------------------------
# Q of many partitions and the z-score


@pytest.mark.parametrize("sizes", [(15, 15), (12, 8, 10)])
def test_modularity_of_partitions_matches_networkx_per_partition(sizes):
    rng = np.random.default_rng(1)
    labels = groups(sum(sizes), len(sizes), sizes=sizes)
    a = _adjacency(nx.gnp_random_graph(sum(sizes), 0.4, seed=2), weighted_rng=rng)
    parts = random_partitions(labels, 12, seed=0)
    got = modularity_of_partitions(torch.tensor(a), parts).numpy()
    want = [_nx_q(a, row) for row in parts]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sizes", [(15, 15), (12, 8, 10)])
def test_zscore_matches_brute_force_reference(sizes):
    rng = np.random.default_rng(5)
    n = sum(sizes)
    labels = groups(n, len(sizes), sizes=sizes)
    graph = nx.stochastic_block_model(
        list(sizes), np.full((len(sizes),) * 2, 0.3) + 0.15 * np.eye(len(sizes)), seed=4
    )
    a = _adjacency(graph, weighted_rng=rng)
    parts = random_partitions(labels, 60, seed=9)
    got = modularity_zscore(torch.tensor(a), labels, parts).item()
    assert got == pytest.approx(_brute_force_z(a, labels, parts), rel=1e-10)


def test_zscore_batched_over_seeds_equals_per_seed():
    rng = np.random.default_rng(0)
    labels = groups(24, 3)
    mats = np.stack(
        [_adjacency(nx.gnp_random_graph(24, 0.5, seed=s), weighted_rng=rng) for s in range(6)]
    ).reshape(2, 3, 24, 24)
    parts = random_partitions(labels, 40, seed=1)
    batched = modularity_zscore(torch.tensor(mats), labels, parts)
    assert batched.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            single = modularity_zscore(torch.tensor(mats[i, j]), labels, parts)
            assert batched[i, j].item() == pytest.approx(single.item(), rel=1e-12)
    again = modularity_zscore(torch.tensor(mats), labels, parts)
    assert torch.equal(batched, again)  # deterministic


@pytest.mark.parametrize("k,p_in,p_out", [(2, 0.6, 0.1), (4, 0.7, 0.15)])
def test_zscore_of_planted_partition_is_large(k, p_in, p_out):
    graph = nx.planted_partition_graph(k, 15, p_in, p_out, seed=11)
    labels = groups(15 * k, k)
    z = modularity_zscore(
        torch.tensor(_adjacency(graph)), labels, random_partitions(labels, 200, seed=0)
    ).item()
    assert z > 10


def test_zscore_of_erdos_renyi_graphs_is_standard_normal():
    """Without group structure the design is one more exchangeable partition: z ≈ N(0, 1)."""
    labels = groups(40, 2)
    mats = np.stack([_adjacency(nx.gnp_random_graph(40, 0.3, seed=s)) for s in range(400)])
    z = modularity_zscore(torch.tensor(mats), labels, random_partitions(labels, 200, 0)).numpy()
    assert abs(z.mean()) < 0.2  # 4 standard errors of the mean
    assert 0.85 < z.std() < 1.2
    assert 0.02 < (np.abs(z) > 1.96).mean() < 0.09  # ~5 % two-sided


def test_zscore_is_invariant_to_scaling_the_weights():
    labels = groups(20, 2)
    a = torch.tensor(_adjacency(nx.planted_partition_graph(2, 10, 0.7, 0.2, seed=1)))
    parts = random_partitions(labels, 30, 2)
    assert modularity_zscore(3.5 * a, labels, parts).item() == pytest.approx(
        modularity_zscore(a, labels, parts).item(), rel=1e-12
    )


def test_zscore_undefined_cases_are_nan():
    parts2 = random_partitions(groups(10, 2), 20, 0)
    empty = torch.zeros(10, 10, dtype=torch.float64)
    assert torch.isnan(modularity_zscore(empty, groups(10, 2), parts2))
    equal = torch.ones(10, 10, dtype=torch.float64)  # every partition of these sizes: same Q
    assert torch.isnan(modularity_zscore(equal, groups(10, 2), parts2))
    one = groups(10, 1)
    rand = torch.tensor(_adjacency(nx.gnp_random_graph(10, 0.5, seed=0)))
    assert torch.isnan(modularity_zscore(rand, one, random_partitions(one, 5, 0)))


def test_zscore_keeps_float32():
    labels = groups(20, 2)
    a = torch.tensor(_adjacency(nx.gnp_random_graph(20, 0.5, seed=0)), dtype=torch.float32)
    assert modularity_zscore(a, labels, random_partitions(labels, 10, 0)).dtype == torch.float32


@pytest.mark.parametrize(
    "parts,match",
    [
        (random_partitions(groups(10, 2, sizes=[3, 7]), 5, 0), "group sizes of labels"),
        (np.zeros((1, 10), dtype=np.int64), r"shape \(R, N\) with R >= 2"),
        (np.zeros((5, 9), dtype=np.int64), r"shape \(R, N\) with R >= 2"),
    ],
)
def test_zscore_rejects_bad_partitions(parts, match):
    a = torch.tensor(_adjacency(nx.gnp_random_graph(10, 0.5, seed=0)))
    with pytest.raises(ValueError, match=match):
        modularity_zscore(a, groups(10, 2), parts)


def test_zscore_rejects_asymmetric_adjacency():
    a = torch.rand(10, 10, dtype=torch.float64)
    with pytest.raises(ValueError, match="symmetric"):
        modularity_zscore(a, groups(10, 2), random_partitions(groups(10, 2), 5, 0))


# --------------------------------------------------------------------------------------------
# the weight change ΔW


def test_weight_change_of_block_diagonal_update_is_one_half():
    """W(t) = W(0) + c·(block diagonal): |ΔW| + |ΔW|ᵀ has no between-group weight, Q = 1/2."""
    rng = np.random.default_rng(0)
    w0 = torch.tensor(rng.standard_normal((3, 16, 16)))
    labels = groups(16, 2)
    block = torch.tensor((labels[:, None] == labels[None, :]).astype(float))
    delta = weight_change(w0 + 0.3 * block, w0)
    np.testing.assert_allclose(modularity(delta, labels).numpy(), 0.5, atol=1e-12)


def test_weight_change_of_doubled_weights_is_the_initial_structure():
    rng = np.random.default_rng(1)
    w0 = torch.tensor(rng.standard_normal((2, 12, 12)))
    torch.testing.assert_close(weight_change(2 * w0, w0), structural_adjacency(w0))


def test_weight_change_of_pruned_between_group_weights_is_anti_modular():
    """Only between-group weights changed (set to 0): all of |ΔW| lies between groups."""
    rng = np.random.default_rng(2)
    labels = groups(20, 2)
    w0 = torch.tensor(rng.standard_normal((20, 20)))
    same = torch.tensor(labels[:, None] == labels[None, :])
    delta = weight_change(torch.where(same, w0, torch.zeros_like(w0)), w0)
    assert modularity(delta, labels).item() == pytest.approx(-0.5, abs=1e-12)


def test_weight_change_without_change_is_empty_and_q_is_nan():
    w0 = torch.randn(2, 8, 8)
    delta = weight_change(w0.clone(), w0)
    assert torch.count_nonzero(delta) == 0
    assert torch.isnan(modularity(delta, groups(8, 2))).all()


def test_weight_change_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        weight_change(torch.zeros(2, 8, 8), torch.zeros(1, 8, 8))
