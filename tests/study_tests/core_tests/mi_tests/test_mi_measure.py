"""Tests for study/core/mi/measure.py, the measurements of MI apart from training: the held-out
estimate against closed forms (i.i.d. Gaussians and an AR(1) pair), the sequence-shuffled null
floor, the Gaussian plug-in (closed forms, and on the noisy activity the penalty sees), and
estimate_mi's argument checks.

Ground truth used throughout: for unit-variance jointly Gaussian pairs (x_c, y_c) with
correlation ρ, independent across d coordinates, I(x; y) = −(d/2)·ln(1 − ρ²). Adding
independent N(0, σ²) noise to every unit keeps them Gaussian with correlation ρ/(1 + σ²).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from gaussian_truth import _mi_closed_form, _rho_for

from study.core.mi import (
    estimate_mi,
    gaussian_mi,
    gaussian_penalty,
    heldout_mi,
    sequence_null,
    split_sequences,
)
from study.core.partition import groups


def _labels(sizes):
    return groups(sum(sizes), len(sizes), sizes=sizes)


# ----------------------------------------------------------------------------------------------
# measurements of independent units


@pytest.mark.parametrize(
    "k, sizes",
    [
        (3, None),
        pytest.param(4, (8, 5, 4, 3), marks=pytest.mark.slow),
        pytest.param(5, (6, 5, 4, 3, 2), marks=pytest.mark.slow),
    ],
)
def test_measurements_of_independent_units_read_zero(k, sizes):
    # Gaussian plug-in (noisy), its null and the held-out estimate with its null, on i.i.d.
    # independent units: all within 0.05 nats of 0 (plug-in bias Σ dx·dy/(2M) ≈ 0.01 here)
    labels = groups(20, k, sizes)
    x = torch.tanh(torch.randn(1, 200, 40, 20, generator=torch.Generator().manual_seed(k)))
    flat = x.reshape(1, -1, 20)
    assert abs(float(gaussian_penalty(flat, labels, "pairwise", noise=0.1))) < 0.05
    null = sequence_null(x, labels).reshape(1, -1, 20)
    assert abs(float(gaussian_penalty(null, labels, "pairwise", noise=0.1))) < 0.05
    value, floor = heldout_mi(x, labels, noise=0.1, steps=150, width=32, seed=k)
    assert abs(float(value)) < 0.05 and abs(float(floor)) < 0.05, (value, floor)


# ----------------------------------------------------------------------------------------------
# the Gaussian plug-in on the noisy activity, and the sequence-shuffled null


def test_gaussian_mi_noise_matches_closed_form_and_sampled_noise():
    gen = np.random.default_rng(0)
    d, rho, sigma, m = 3, 0.8, 0.5, 200_000
    x = gen.standard_normal((m, d))
    y = rho * x + math.sqrt(1 - rho**2) * gen.standard_normal((m, d))
    xt, yt = torch.tensor(x), torch.tensor(y)
    got = float(gaussian_mi(xt, yt, noise=sigma))
    assert got == pytest.approx(_mi_closed_form(rho, d, sigma), abs=0.01)
    sampled = float(
        gaussian_mi(xt + sigma * torch.randn_like(xt), yt + sigma * torch.randn_like(yt))
    )
    assert got == pytest.approx(sampled, abs=0.01)
    assert got < float(gaussian_mi(xt, yt)) - 0.5  # noise lowers the MI a lot at ρ = 0.8
    # the penalty form agrees at K = 2
    labels = np.repeat([0, 1], d)
    assert float(
        gaussian_penalty(torch.cat([xt, yt], 1), labels, "pairwise", noise=sigma)
    ) == pytest.approx(got, abs=1e-9)


def test_sequence_null_pairs_each_group_with_other_sequences():
    t, b, n = 5, 6, 7
    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    x = torch.arange(t * b * n, dtype=torch.float32).reshape(1, t, b, n)
    null = sequence_null(x, labels)
    assert null.shape == x.shape
    for seq in range(b):
        for unit in range(n):
            src = (seq + labels[unit]) % b
            assert torch.equal(null[0, :, seq, unit], x[0, :, src, unit])
    # each group is a permutation of its own sequences (marginals kept), groups never share one
    assert sequence_null(x[:, :, :2], labels) is None  # B = 2 < K = 3


def test_sequence_null_removes_dependence_but_keeps_each_group():
    # y = x exactly: huge MI; the null pairing of the same data reads ~0, and each group's
    # own covariance is untouched
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 100, 30, 2, generator=gen)
    z = torch.cat([x, x], -1)  # (1, T, B, 4): G2 copies G1
    labels = np.array([0, 0, 1, 1])
    flat = z.reshape(1, -1, 4)
    null = sequence_null(z, labels).reshape(1, -1, 4)
    assert float(gaussian_penalty(flat, labels, "pairwise", noise=0.1)) == pytest.approx(
        _mi_closed_form(1.0, 2, 0.1), abs=0.05
    )  # ρ = 1 seen through σ = 0.1: 3.9 nats
    assert abs(float(gaussian_penalty(null, labels, "pairwise", noise=0.1))) < 0.01
    torch.testing.assert_close(null.var(1), flat.var(1), rtol=1e-5, atol=1e-6)


def test_split_sequences_is_by_sequence_and_disjoint():
    gen = torch.Generator().manual_seed(0)
    train, test = split_sequences(40, 0.25, gen)
    assert len(test) == 10 and len(train) == 30
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert set(train.tolist()) | set(test.tolist()) == set(range(40))
    assert split_sequences(3, 0.25, gen) is None  # needs 2 + 2
    assert len(split_sequences(4, 0.1, gen)[1]) == 2


# ----------------------------------------------------------------------------------------------
# the held-out estimate against closed forms


def _gaussian_sequences(gen, s, t, b, d, rhos):
    """(S, T, B, 2d) i.i.d. rows; seed i has I(G1; G2) = −(d/2) ln(1 − rhos[i]²)."""
    x = gen.standard_normal((s, t, b, d))
    r = np.asarray(rhos)[:, None, None, None]
    y = r * x + np.sqrt(1 - r**2) * gen.standard_normal((s, t, b, d))
    return torch.tensor(np.concatenate([x, y], -1), dtype=torch.float32)


@pytest.mark.slow
def test_heldout_recovers_gaussian_mi_with_the_penalty_noise():
    d, sigma = 4, 0.3
    targets = (0.0, 0.5, 1.0, 2.0)  # MI of the noise-free pair, one seed each
    rhos = [_rho_for(m, d) for m in targets]
    x = _gaussian_sequences(np.random.default_rng(0), 4, 100, 40, d, rhos)
    labels = np.repeat([0, 1], d)
    value, null = heldout_mi(x, labels, noise=sigma, seed=3)
    want = torch.tensor([_mi_closed_form(r, d, sigma) for r in rhos])
    # a held-out DV lower bound: at most sampling error above, a critic gap below
    assert (value <= want + 0.05).all(), (value, want)
    assert (value >= 0.85 * want - 0.05).all(), (value, want)
    assert (null.abs() < 0.05).all(), null


@pytest.mark.slow
def test_heldout_total_correlation_of_three_groups():
    # K = 3, sizes 3-3-2: G1 and G2 correlated coordinate-wise (ρ), G3 independent.
    # TC = I(G1; G2) + I(G1,G2; G3) = I(G1; G2) + 0 (G3 ⟂ (G1, G2))
    gen = np.random.default_rng(1)
    rho, s, t, b = 0.8, 2, 100, 40
    g1 = gen.standard_normal((s, t, b, 3))
    g2 = rho * g1 + math.sqrt(1 - rho**2) * gen.standard_normal((s, t, b, 3))
    g3 = gen.standard_normal((s, t, b, 2))
    x = torch.tensor(np.concatenate([g1, g2, g3], -1), dtype=torch.float32)
    labels = groups(8, 3, (3, 3, 2))
    value, null = heldout_mi(x, labels, penalty="total_correlation", noise=0.0, seed=0)
    want = _mi_closed_form(rho, 3)
    assert ((value <= want + 0.06) & (value >= 0.85 * want - 0.05)).all(), (value, want)
    assert (null.abs() < 0.06).all(), null


def _ar1_pair(gen, s, t, b, d, rho, phi):
    """(S, T, B, 2d) stationary vector AR(1) sequences with instantaneous coupling ρ.

    z_t = φ z_{t−1} + √(1 − φ²) ε_t, ε_t ~ N(0, C), C = [[I, ρI], [ρI, I]], z_0 ~ N(0, C).
    The stationary covariance Σ solves Σ = φ²Σ + (1 − φ²)C, so Σ = C: at every step
    (x_t, y_t) is jointly Gaussian with unit variances and per-coordinate correlation ρ, and
    I(x_t; y_t) = −(d/2)·ln(1 − ρ²) whatever φ is. Rows of one sequence are autocorrelated,
    corr(z_t, z_{t+k}) = φ^k (time constant τ = −1/ln φ steps): a row split would leak.
    """

    def eps(shape):
        e1 = gen.standard_normal(shape)
        return np.concatenate(
            [e1, rho * e1 + math.sqrt(1 - rho**2) * gen.standard_normal(shape)], -1
        )

    z = np.empty((s, t, b, 2 * d))
    z[:, 0] = eps((s, b, d))
    for i in range(1, t):
        z[:, i] = phi * z[:, i - 1] + math.sqrt(1 - phi**2) * eps((s, b, d))
    return torch.tensor(z, dtype=torch.float32)


@pytest.mark.slow
def test_heldout_recovers_ar1_pair_mi():
    d, rho, phi, sigma = 3, 0.7, math.exp(-1 / 10), 0.1  # τ = 10 steps
    x = _ar1_pair(np.random.default_rng(2), 2, 400, 40, d, rho, phi)
    labels = np.repeat([0, 1], d)
    value, null = heldout_mi(x, labels, noise=sigma, seed=5)
    want = _mi_closed_form(rho, d, sigma)
    assert ((value <= want + 0.06) & (value >= 0.85 * want - 0.05)).all(), (value, want)
    assert (null.abs() < 0.06).all(), null


def test_autocorrelation_bias_of_the_plug_in_is_removed_by_its_null():
    # independent AR(1) halves of 20 units, τ = 50 steps, cpu-wm evaluation size (40 × 400):
    # the plug-in reads far above 0 (0.56 nats when first measured), its null reads the same floor.
    # The held-out DV bound reads *below* 0 here: with ~8 independent samples per sequence the
    # critic overfits, and on held-out independent data E[T] − ln E[e^T] ≤ 0 by Jensen, lower
    # the more T varies. Its null sits at the same floor, so the excess is ~0 and never positive.
    x = _ar1_pair(np.random.default_rng(3), 2, 400, 40, 20, 0.0, math.exp(-1 / 50))
    labels = np.repeat([0, 1], 20)
    flat = x.reshape(2, -1, 40)
    plug_in = gaussian_penalty(flat, labels, "pairwise", noise=0.1)
    floor = gaussian_penalty(
        sequence_null(x, labels).reshape(2, -1, 40), labels, "pairwise", noise=0.1
    )
    assert (plug_in > 0.2).all(), plug_in
    assert ((plug_in - floor).abs() < 0.1).all(), (plug_in, floor)
    value, null = heldout_mi(x, labels, noise=0.1, steps=150, seed=0)
    assert (value < 0.05).all() and (null < 0.05).all(), (value, null)
    assert ((value - null).abs() < 0.1).all(), (value, null)


def test_heldout_needs_four_sequences():
    x = torch.randn(2, 50, 3, 4)
    value, null = heldout_mi(x, np.array([0, 0, 1, 1]), steps=2)
    assert torch.isnan(value).all() and torch.isnan(null).all()
    value, null = heldout_mi(torch.randn(2, 50, 4, 6), np.array([0, 0, 1, 1, 2, 2]), steps=2)
    assert torch.isfinite(value).all()  # 2 + 2 sequences: value defined
    assert torch.isnan(null).all()  # but 2 sequences per split cannot pair 3 groups apart


def test_heldout_is_deterministic_given_its_seed():
    x = torch.randn(2, 30, 8, 4, generator=torch.Generator().manual_seed(0))
    labels = np.array([0, 0, 1, 1])
    a = heldout_mi(x, labels, steps=20, seed=7)
    b = heldout_mi(x, labels, steps=20, seed=7)
    c = heldout_mi(x, labels, steps=20, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


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
    """Total correlation of k equicorrelated unit Gaussians (docs/ground-truth.md)."""
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
        (
            gaussian_penalty,
            (torch.ones(10, 4), groups(4, 2), "tc"),
            ValueError,
            r"gaussian_penalty\(\): kind must be one of \('pairwise', 'total_correlation'\), "
            r"but got 'tc'",
        ),
        (
            gaussian_penalty,
            (torch.ones(10, 4), groups(3, 2), "pairwise"),
            ValueError,
            r"gaussian_penalty\(\): labels must have shape \(N,\) with N=4",
        ),
        (
            gaussian_penalty,
            (torch.ones(1, 4), groups(4, 2), "pairwise"),
            ValueError,
            r"gaussian_penalty\(\): activity must have shape \(..., M, N\) with M >= 2 samples",
        ),
        (
            gaussian_mi,
            (torch.ones(10, 2), torch.ones(9, 2)),
            ValueError,
            r"gaussian_mi\(\): x and y must share their leading axes and sample count \(..., M\), "
            r"but got shapes \(10, 2\) and \(9, 2\)",
        ),
        (
            gaussian_mi,
            (torch.ones(1, 2), torch.ones(1, 2)),
            ValueError,
            r"gaussian_mi\(\): x and y need M >= 2 samples, but got shape \(1, 2\)",
        ),
        (
            gaussian_mi,
            (torch.ones(10), torch.ones(10, 2)),
            ValueError,
            r"gaussian_mi\(\): x must have at least 2 axes, but got shape \(10,\)",
        ),
        (
            gaussian_mi,
            (torch.ones(10, 2), np.ones((10, 2))),
            TypeError,
            r"gaussian_mi\(\): y must be a torch.Tensor, but got ndarray",
        ),
    ],
)
def test_gaussian_metrics_reject_bad_input(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)


# ----------------------------------------------------------------------------------------------
# estimate_mi's argument checks


@pytest.mark.parametrize(
    "x, y, kwargs, match",
    [
        (
            np.zeros((100, 2)),
            np.zeros((99, 2)),
            {},
            r"x and y must be \(M, dx\) and \(M, dy\) with the same M, but got shapes "
            r"\(100, 2\) and "
            r"\(99, 2\)",
        ),
        (
            np.zeros((10, 2, 2)),
            np.zeros((10, 2)),
            {},
            r".*but got shapes \(10, 2, 2\) and \(10, 2\)",
        ),
        (
            np.zeros((1000, 2)),
            np.zeros((1000, 2)),
            {"estimator": "nwj"},
            r"estimator must be one of .*, but got 'nwj'",
        ),
        (
            np.zeros((600, 2)),
            np.zeros((600, 2)),
            {},
            r"need at least batch=512 training rows and a held-out part, but got M=600 rows",
        ),
    ],
)
def test_estimate_mi_rejects_bad_arguments(x, y, kwargs, match):
    with pytest.raises(ValueError, match=r"estimate_mi\(\): " + match):
        estimate_mi(x, y, **kwargs)
