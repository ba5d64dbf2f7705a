"""Partition-free modularity (study/communities.py): Leiden communities, their Q and NMI.

References: planted-partition and Erdős–Rényi graphs from networkx, networkx's modularity of
the found partition and its Louvain optimum, and closed-form NMI values.
"""

import networkx as nx
import numpy as np
import pytest
import torch

from study.core.communities import UNDEFINED, found_modularity, leiden, partition_nmi
from study.core.partition import groups


def _adjacency(graph: nx.Graph, rng=None) -> np.ndarray:
    a = nx.to_numpy_array(graph, nodelist=sorted(graph.nodes))
    if rng is not None:
        w = rng.random(a.shape)
        a = a * (np.triu(w, 1) + np.triu(w, 1).T)
    return a


def _nx_q(a: np.ndarray, labels: np.ndarray) -> float:
    comms = [set(np.flatnonzero(labels == k).tolist()) for k in np.unique(labels)]
    return nx.community.modularity(nx.from_numpy_array(a), comms, weight="weight")


@pytest.mark.parametrize("k", [2, 3, 5])
def test_leiden_recovers_a_planted_partition(k):
    graph = nx.planted_partition_graph(k, 12, 0.8, 0.05, seed=k)
    a = torch.tensor(_adjacency(graph))
    labels = groups(12 * k, k)
    found = leiden(a, seeds=0)
    assert partition_nmi(found, labels).item() == pytest.approx(1.0)
    assert np.array_equal(found, labels)  # numbered by smallest unit: the design's numbering


def test_leiden_on_unequal_weighted_blocks_recovers_them():
    rng = np.random.default_rng(3)
    sizes = [8, 14, 10]
    probs = np.full((3, 3), 0.05) + 0.75 * np.eye(3)
    a = torch.tensor(_adjacency(nx.stochastic_block_model(sizes, probs, seed=1), rng))
    labels = groups(32, 3, sizes=sizes)
    assert partition_nmi(leiden(a, 4), labels).item() == pytest.approx(1.0)


def test_leiden_on_erdos_renyi_graphs_says_nothing_about_the_design():
    labels = groups(40, 2)
    mats = np.stack([_adjacency(nx.gnp_random_graph(40, 0.3, seed=s)) for s in range(20)])
    nmi = partition_nmi(leiden(torch.tensor(mats), list(range(20))), labels).numpy()
    assert nmi.mean() < 0.1  # positive only by the small-sample bias of NMI
    assert nmi.max() < 0.3


def test_found_modularity_matches_networkx_and_a_louvain_optimum():
    rng = np.random.default_rng(0)
    mats = np.stack([_adjacency(nx.gnp_random_graph(30, 0.4, seed=s), rng) for s in range(4)])
    found = leiden(torch.tensor(mats), seeds=[1, 2, 3, 4])
    q = found_modularity(torch.tensor(mats), found).numpy()
    for a, lab, qi in zip(mats, found, q):
        assert qi == pytest.approx(_nx_q(a, lab), abs=1e-12)
        louvain = nx.community.louvain_communities(nx.from_numpy_array(a), seed=0)
        q_louvain = nx.community.modularity(nx.from_numpy_array(a), louvain)
        assert qi >= q_louvain - 0.01  # Leiden reaches (at least) the Louvain optimum


def test_found_partition_scores_at_least_the_designed_one():
    graph = nx.planted_partition_graph(2, 15, 0.5, 0.2, seed=2)
    a = torch.tensor(_adjacency(graph))
    labels = groups(30, 2)
    assert found_modularity(a, leiden(a, 0)).item() >= _nx_q(a.numpy(), labels) - 1e-12


def test_leiden_is_deterministic_and_batched_equals_per_matrix():
    rng = np.random.default_rng(1)
    mats = np.stack([_adjacency(nx.gnp_random_graph(25, 0.5, seed=s), rng) for s in range(6)])
    seeds = [10, 11, 12, 13, 14, 15]
    batched = leiden(torch.tensor(mats.reshape(2, 3, 25, 25)), seeds)
    assert batched.shape == (2, 3, 25)
    assert np.array_equal(batched, leiden(torch.tensor(mats.reshape(2, 3, 25, 25)), seeds))
    for i, (m, s) in enumerate(zip(mats, seeds)):
        assert np.array_equal(batched.reshape(6, 25)[i], leiden(torch.tensor(m), s))


def test_leiden_numbers_communities_by_their_smallest_unit():
    rng = np.random.default_rng(2)
    a = torch.tensor(_adjacency(nx.gnp_random_graph(30, 0.3, seed=5), rng))
    lab = leiden(a, 0)
    first = [int(np.flatnonzero(lab == c)[0]) for c in range(lab.max() + 1)]
    assert lab[0] == 0 and first == sorted(first)


def test_undefined_graphs_give_undefined_labels_and_nan_scores():
    a = torch.stack(
        [
            torch.zeros(6, 6, dtype=torch.float64),
            torch.full((6, 6), float("nan"), dtype=torch.float64),
            torch.tensor(_adjacency(nx.complete_graph(6))),
        ]
    )
    found = leiden(a, 0)
    assert (found[:2] == UNDEFINED).all() and (found[2] >= 0).all()
    q = found_modularity(a, found)
    nmi = partition_nmi(found, groups(6, 2))
    assert torch.isnan(q[:2]).all() and torch.isnan(nmi[:2]).all()
    assert torch.isfinite(q[2]) and torch.isfinite(nmi[2])


def test_nmi_closed_forms():
    design = groups(20, 2)
    assert partition_nmi(design.copy(), design).item() == pytest.approx(1.0)
    assert partition_nmi(1 - design, design).item() == pytest.approx(1.0)  # renamed groups
    alternating = np.arange(20) % 2  # every (design, found) cell holds 5 units: I = 0
    assert partition_nmi(alternating, design).item() == pytest.approx(0.0, abs=1e-12)
    # design halves split into quarters: I = H(design) = ln 2, H(found) = ln 4
    quarters = np.repeat(np.arange(4), 5)
    assert partition_nmi(quarters, design).item() == pytest.approx(
        np.log(2) / (0.5 * (np.log(2) + np.log(4)))
    )
    assert torch.isnan(partition_nmi(quarters, groups(20, 1)))  # nothing to recover


def test_nmi_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    design = groups(30, 3)
    found = rng.integers(0, 4, size=(5, 30))
    got = partition_nmi(found, design).numpy()
    want = [sklearn_metrics.normalized_mutual_info_score(design, row) for row in found]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_leiden_rejects_bad_input():
    with pytest.raises(ValueError, match="one per matrix"):
        leiden(torch.zeros(3, 5, 5, dtype=torch.float64), seeds=[1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        leiden(-torch.ones(5, 5, dtype=torch.float64), seeds=0)
    with pytest.raises(ValueError, match="found must have shape"):
        found_modularity(torch.zeros(2, 5, 5, dtype=torch.float64), np.zeros((2, 4), int))
