"""Signed block statistics of the weight change (study/core/modularity.py): the magnitude
change d = |W(t)| − |W(0)|, its within-minus-between contrast D with the random-partition
z-score, and the block decomposition (norm ratio, projection on W(0), orthogonal part).

References: explicit loops over every ordered pair of units (brute force), and synthetic
weight changes whose statistics are known in closed form (a block scaled by a, plus a part
orthogonal to W(0) of a chosen size).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from study.core.modularity import (
    block_contrast,
    block_contrast_zscore,
    block_decomposition,
    magnitude_change,
    random_partitions,
)
from study.core.partition import groups


def _brute_contrast(d: np.ndarray, labels: np.ndarray) -> float:
    """Mean of d over ordered within-group pairs i != j minus its mean over between pairs."""
    within, between = [], []
    n = labels.size
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            (within if labels[i] == labels[j] else between).append(d[i, j])
    return float(np.mean(within) - np.mean(between))


def _masks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    same = labels[:, None] == labels[None, :]
    return same & ~np.eye(labels.size, dtype=bool), ~same


def test_magnitude_change_is_the_change_of_absolute_values_without_diagonal():
    w0 = torch.tensor([[0.5, -1.0], [2.0, -0.3]], dtype=torch.float64)
    w = torch.tensor([[9.0, 0.5], [-3.0, 0.0]], dtype=torch.float64)
    want = torch.tensor([[0.0, -0.5], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(magnitude_change(w, w0), want, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"magnitude_change\(\): weights and initial must"):
        magnitude_change(w, torch.zeros(3, 3, dtype=torch.float64))


@pytest.mark.parametrize("sizes", [(5, 5), (4, 3, 3), (2, 6, 4)])
def test_block_contrast_equals_the_brute_force_pair_means(sizes):
    rng = np.random.default_rng(sum(sizes))
    labels = groups(sum(sizes), len(sizes), sizes=sizes)
    d = rng.normal(size=(3, sum(sizes), sum(sizes)))
    got = block_contrast(torch.as_tensor(d), labels).numpy()
    want = [_brute_contrast(x, labels) for x in d]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_pruning_the_between_blocks_gives_a_known_positive_contrast():
    # W(t) = W(0) within, ½ W(0) between: d = 0 within, −½|W(0)| between, so
    # D = ½ mean_between |W(0)| exactly
    rng = np.random.default_rng(0)
    labels = groups(12, 3)
    w0 = rng.normal(size=(12, 12))
    _, between = _masks(labels)
    w = np.where(between, 0.5 * w0, w0)
    d = magnitude_change(torch.as_tensor(w), torch.as_tensor(w0))
    want = 0.5 * np.abs(w0[between]).mean()
    assert float(block_contrast(d, labels)) == pytest.approx(want, rel=1e-12)


def test_block_contrast_zscore_equals_the_brute_force_null():
    rng = np.random.default_rng(1)
    labels = groups(10, 2)
    parts = random_partitions(labels, 40, seed=5)
    d = rng.normal(size=(2, 10, 10))
    got = block_contrast_zscore(torch.as_tensor(d), labels, parts).numpy()
    for s in range(2):
        null = np.array([_brute_contrast(d[s], p) for p in parts])
        want = (_brute_contrast(d[s], labels) - null.mean()) / null.std(ddof=1)
        assert got[s] == pytest.approx(want, rel=1e-10)


def test_block_contrast_zscore_signs_pruning_and_is_null_for_unstructured_change():
    rng = np.random.default_rng(2)
    labels = groups(40, 2)
    parts = random_partitions(labels, 200, seed=3)
    _, between = _masks(labels)
    w0 = rng.normal(size=(40, 40)) / math.sqrt(40)
    pruned = np.where(between, 0.8 * w0, w0)  # the between blocks shrink by 20 %
    grown = np.where(between, w0, 1.2 * w0)  # the within blocks grow by 20 %
    for w in (pruned, grown):
        z = block_contrast_zscore(
            magnitude_change(torch.as_tensor(w), torch.as_tensor(w0)), labels, parts
        )
        assert float(z) > 10
    bulk = 0.8 * w0  # a change that ignores the groups: no contrast beyond rounding
    zero = block_contrast_zscore(
        magnitude_change(torch.as_tensor(bulk), torch.as_tensor(w0)), labels, parts
    )
    assert abs(float(zero)) < 4
    # random changes: z is a standard score (mean ~0, sd ~1 over 200 draws)
    d = rng.normal(size=(200, 40, 40))
    z = block_contrast_zscore(torch.as_tensor(d), labels, parts).numpy()
    assert abs(z.mean()) < 0.25 and 0.75 < z.std() < 1.3


def test_block_contrast_is_nan_where_undefined():
    labels1 = np.zeros(6, dtype=np.int64)  # K = 1: no between pairs
    d = torch.ones(6, 6, dtype=torch.float64)
    assert math.isnan(float(block_contrast(d, labels1)))
    labels = groups(6, 2)
    parts = random_partitions(labels, 10, seed=0)
    no_change = torch.zeros(2, 6, 6, dtype=torch.float64)
    assert torch.isnan(block_contrast_zscore(no_change, labels, parts)).all()
    assert (block_contrast(no_change, labels) == 0).all()
    with pytest.raises(ValueError, match=r"group sizes of labels \[3, 3\]"):
        block_contrast_zscore(no_change, labels, random_partitions(groups(6, 3), 10, seed=0))


def _orthogonal_part(w0b: np.ndarray, mask: np.ndarray, rng, size: float) -> np.ndarray:
    """A matrix on the block `mask`, orthogonal to w0b, with norm size * |w0b|."""
    e = rng.normal(size=w0b.shape) * mask
    e -= (e * w0b).sum() / (w0b * w0b).sum() * w0b
    return e * (size * np.linalg.norm(w0b) / np.linalg.norm(e))


def test_block_decomposition_recovers_a_known_scaling_and_orthogonal_part():
    rng = np.random.default_rng(4)
    labels = groups(16, 2)
    within, between = _masks(labels)
    w0 = rng.normal(size=(16, 16))
    # within: 0.9·W(0) plus an orthogonal part of relative size 0.7 (rewired);
    # between: 0.4·W(0) plus 0.05 (pruned); the diagonal moves freely and is ignored
    w = (
        0.9 * w0 * within
        + _orthogonal_part(w0 * within, within, rng, 0.7)
        + 0.4 * w0 * between
        + _orthogonal_part(w0 * between, between, rng, 0.05)
        + np.diag(rng.normal(size=16)) * 10
    )
    got = {
        k: float(v)
        for k, v in block_decomposition(torch.as_tensor(w), torch.as_tensor(w0), labels).items()
    }
    assert got["within_proj"] == pytest.approx(0.9, rel=1e-10)
    assert got["within_orth"] == pytest.approx(0.7, rel=1e-10)
    assert got["within_ratio"] == pytest.approx(math.hypot(0.9, 0.7), rel=1e-10)
    assert got["between_proj"] == pytest.approx(0.4, rel=1e-10)
    assert got["between_orth"] == pytest.approx(0.05, rel=1e-9)
    assert got["between_ratio"] == pytest.approx(math.hypot(0.4, 0.05), rel=1e-10)


def test_block_decomposition_of_unchanged_weights_and_a_single_group():
    w0 = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = block_decomposition(w0, w0, groups(8, 2))
    for block in ("within", "between"):
        torch.testing.assert_close(got[f"{block}_ratio"], torch.ones(3, dtype=torch.float64))
        torch.testing.assert_close(got[f"{block}_proj"], torch.ones(3, dtype=torch.float64))
        assert (got[f"{block}_orth"].abs() < 1e-12).all()
    single = block_decomposition(w0, 2 * w0, np.zeros(8, dtype=np.int64))
    assert torch.isnan(single["between_ratio"]).all()
    torch.testing.assert_close(single["within_proj"], torch.full((3,), 0.5, dtype=torch.float64))
