"""Tests for study/core/specialization.py: the D indices against the reference formulas at
K = 2 (docs/method.md §10.1, §10.2), the literal definition, and their properties.
"""

import itertools

import numpy as np
import pytest
import torch

from study.core.partition import groups
from study.core.specialization import specialization


def _labels(sizes):
    return groups(sum(sizes), len(sizes), sizes=sizes)


# --------------------------------------------------------------------------------------------
# specialisation


def _reference_d_out_wm(w_out, labels):
    """docs/method.md §10.1 D_out: d_i = |W_out[i,2]| − |W_out[i,1]| (1-based), halves G1, G2."""
    d = np.abs(w_out[:, 1]) - np.abs(w_out[:, 0])
    return abs(d[labels == 0].sum() - d[labels == 1].sum()) / np.abs(w_out).sum()


def _reference_d_in_wm(w_in, labels):
    """docs/method.md §10.1 D_in: mem1 = inputs 0,1, mem2 = inputs 2,3; W_in has shape (4, N)."""
    a = np.abs(w_in)
    d = a[2:].sum(0) - a[:2].sum(0)
    return abs(d[labels == 0].sum() - d[labels == 1].sum()) / a.sum()


def _reference_d_out_separation(w_o, labels):
    """docs/method.md §10.2 D_out: o¹, o² = mean |W_o| over the 3 Lorenz / 3 Rössler outputs."""
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
        (
            (torch.ones(6, 2), groups(5, 2), [0, 1]),
            ValueError,
            r"specialization\(\): labels must have shape \(N,\) with N=6, but got shape \(5,\)",
        ),
        (
            (torch.ones(6, 2), groups(6, 2), [0, 1, 1]),
            ValueError,
            r"specialization\(\): channels must have shape \(C,\) with C=2, but got shape \(3,\)",
        ),
        (
            (torch.ones(6, 2), groups(6, 2), [1, 1]),
            ValueError,
            r"specialization\(\): channels must use every index 0..K-1 \(K=2\), "
            r"but \[0\] never occur",
        ),
        (
            (torch.ones(6, 2), groups(6, 2), [0.0, 1.0]),
            TypeError,
            r"specialization\(\): channels must be integers, but got dtype float64",
        ),
        (
            (-torch.ones(6, 2), groups(6, 2), [0, 1]),
            ValueError,
            r"specialization\(\): strength must be non-negative, but got min -1",
        ),
        (
            (torch.ones(6), groups(6, 2), [0, 1]),
            ValueError,
            r"specialization\(\): strength must have at least 2 axes, but got shape \(6,\)",
        ),
        (
            (np.ones((6, 2)), groups(6, 2), [0, 1]),
            TypeError,
            r"specialization\(\): strength must be a torch.Tensor, but got ndarray",
        ),
    ],
)
def test_specialization_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        specialization(*args)
