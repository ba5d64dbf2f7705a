"""The censoring-aware lag test, its TOST, BH and the CI against brute force and SciPy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.timing.lagtest import (
    EXACT_MAX,
    bh_adjust,
    clopper_pearson,
    gehan_u,
    lag_interval,
    sign_test,
    signflip_test,
    tost_test,
)
from analysis.timing.verdicts import order_test
from study.contract.rise import TimingOnset


def _brute(lo: np.ndarray, hi: np.ndarray, alternative: str) -> tuple[int, float]:
    """U and its p-value by enumerating all 2^n sign flips of the intervals."""
    u0 = gehan_u(lo, hi)
    us = []
    for f in itertools.product([False, True], repeat=lo.size):
        f = np.array(f)
        us.append(gehan_u(np.where(f, -hi, lo), np.where(f, -lo, hi)))
    us = np.array(us)
    p = {
        "two-sided": np.mean(np.abs(us) >= abs(u0)),
        "greater": np.mean(us >= u0),
        "less": np.mean(us <= u0),
    }[alternative]
    return u0, float(p)


def _random_intervals(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Point lags, rounded (ties, zeros) or not, some left- or right-open or bounded."""
    d = np.round(rng.normal(0.5, 2.0, n), int(rng.integers(0, 2)))
    lo, hi = d.copy(), d.copy()
    c = rng.random(n)
    lo[c < 0.2] = -np.inf
    hi[(c >= 0.2) & (c < 0.4)] = np.inf
    w = (c >= 0.4) & (c < 0.55)
    hi[w] = lo[w] + rng.uniform(0.0, 3.0, w.sum())
    return lo, hi


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_exact_null_equals_enumerating_every_sign_flip(alternative):
    rng = np.random.default_rng(3)
    for _ in range(60):
        lo, hi = _random_intervals(rng, int(rng.integers(1, 10)))
        u, p = signflip_test(lo, hi, alternative=alternative)
        bu, bp = _brute(lo, hi, alternative)
        assert u == bu and p == pytest.approx(bp, abs=1e-12), (lo, hi)


def test_point_lags_give_the_wilcoxon_signed_rank_test():
    rng = np.random.default_rng(1)
    for n in (5, 8, 12, 20):
        d = rng.normal(0.6, 1.0, n)
        u, p = signflip_test(d, d)
        t_plus = stats.wilcoxon(d, alternative="greater").statistic
        assert u == 2 * t_plus - n * (n + 1) / 2
        ref = stats.wilcoxon(d, method="exact", alternative="two-sided").pvalue
        assert p == pytest.approx(ref, rel=1e-9)


def test_statistic_counts_walsh_pairs_that_intervals_decide():
    # [1, 2], [3, inf), (-inf, -5]: pairs (1,1) +, (2,2) +, (3,3) -, (1,2) +, (1,3) -, (2,3) 0
    assert gehan_u([1.0, 3.0, -np.inf], [2.0, np.inf, -5.0]) == 3 - 2
    assert signflip_test([], []) == (0, 1.0)


def test_all_seeds_censored_on_one_side_gives_the_smallest_p():
    lo, hi = np.full(8, 100.0), np.full(8, np.inf)  # function emerged, structure never did
    u, p = signflip_test(lo, hi)
    assert u == 36 and p == pytest.approx(2 / 256)
    assert signflip_test(lo, hi, alternative="greater")[1] == pytest.approx(1 / 256)
    # undecided seeds (intervals straddling 0) weaken it
    lo[:3] = -150.0
    assert signflip_test(lo, hi)[1] > 2 / 256


def test_monte_carlo_beyond_the_exact_range_is_seeded_and_close():
    n = EXACT_MAX + 1  # every seed open-ended: more than EXACT_MAX censored, Monte Carlo
    rng = np.random.default_rng(4)
    lo = rng.normal(0.3, 1.0, n)
    hi = lo + rng.uniform(0.5, 2.0, n)
    hi[::3] = np.inf
    _, p1 = signflip_test(lo, hi, n_mc=6000, rng=np.random.default_rng(0))
    _, p2 = signflip_test(lo, hi, n_mc=6000, rng=np.random.default_rng(0))
    assert p1 == p2
    _, exact = _brute(lo, hi, "two-sided")
    assert abs(p1 - exact) <= 4 * math.sqrt(exact * (1 - exact) / 6000) + 1 / 6001


def test_test_holds_its_level_on_symmetric_censored_lags():
    rng = np.random.default_rng(7)
    rejections = 0
    n_cells = 800
    for _ in range(n_cells):
        d = rng.normal(0.0, 1.0, 8)
        lo, hi = d.copy(), d.copy()
        cens = rng.random(8) < 0.3  # right-open and left-open, symmetric in law
        side = rng.random(8) < 0.5
        hi[cens & side] = np.inf
        lo[cens & ~side] = -np.inf
        rejections += signflip_test(lo, hi)[1] <= 0.05
    rate = rejections / n_cells
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / n_cells)


def test_tost_calls_close_lags_equivalent_and_far_ones_not():
    lags = np.array([-0.4, 0.3, 0.1, -0.2, 0.5, -0.1, 0.2, 0.0])  # all within ±0.5 of 0
    p, p1, p2 = tost_test(lags, lags, margin=2.0)
    assert p == max(p1, p2) and p == pytest.approx(1 / 256)
    far = lags + 6.0
    assert tost_test(far, far, margin=2.0)[0] == 1.0
    with pytest.raises(ValueError, match="margin"):
        tost_test(lags, lags, margin=0.0)


def test_lag_interval_from_onsets():
    def ons(lo: float, hi: float, status: str) -> TimingOnset:
        return TimingOnset(
            lo if lo == hi else math.nan,
            lo,
            hi,
            status,
            math.nan,
            math.nan,
            math.nan,
            True,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
        )

    f = ons(100.0, 100.0, "onset")
    assert lag_interval(f, ons(150.0, 150.0, "onset")) == (50.0, 50.0)
    assert lag_interval(f, ons(900.0, math.inf, "not detected")) == (800.0, math.inf)
    assert lag_interval(ons(0.0, 25.0, "left-censored"), ons(60.0, 60.0, "onset")) == (35.0, 60.0)


def test_bh_matches_statsmodels_and_keeps_nan():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.0, 0.2, 12)
    assert np.allclose(bh_adjust(p), multipletests(p, method="fdr_bh")[1])
    q = bh_adjust([0.01, np.nan, 0.04])
    assert math.isnan(q[1]) and q[0] == pytest.approx(0.02) and q[2] == pytest.approx(0.04)


def test_clopper_pearson_and_sign_test_match_scipy():
    for n in range(13):
        for k in range(n + 1):
            ref = stats.binomtest(k, n).pvalue if n else 1.0
            assert sign_test(k, n) == pytest.approx(ref, abs=1e-12)
            if n:
                ci = stats.binomtest(k, n).proportion_ci(method="exact")
                assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert clopper_pearson(0, 0) == (0.0, 1.0)


def test_bad_intervals_are_refused():
    with pytest.raises(ValueError, match="lo <= hi"):
        signflip_test([1.0, 2.0], [0.0, 3.0])
    with pytest.raises(ValueError, match="alternative"):
        signflip_test([1.0], [1.0], alternative="both")


# ---- the ordering test's resolution ---------------------------------------------------------


def test_order_test_without_resolution_is_the_two_sided_signflip_test():
    rng = np.random.default_rng(4)
    d = rng.normal(0.5, 1.0, 12)
    assert order_test(d, d, 0.0) == signflip_test(d, d)


def test_resolution_ignores_a_bias_below_it_and_keeps_a_lead_above_it():
    """Lags N(0.1, 0.25) evaluations at n = 16: a bias of a tenth of an evaluation, which a
    plain test reads as an order in a third of the cells; beyond a resolution of 0.25 it is
    ignored. A
    true lead of 1 evaluation is still found in every cell."""
    rng = np.random.default_rng(5)
    plain = resolved = found = 0
    reps = 200
    for _ in range(reps):
        d = rng.normal(0.1, 0.25, 16)
        plain += signflip_test(d, d)[1] <= 0.05
        resolved += order_test(d, d, 0.25)[1] <= 0.05
        lead = rng.normal(1.0, 0.25, 16)
        u, p = order_test(lead, lead, 0.25)
        found += p <= 0.05 and u > 0
    assert plain / reps >= 0.25  # a paired t-test has power 0.36 here
    assert resolved / reps <= 0.01
    assert found == reps
    # the side follows U; a censored seed still counts through its interval
    lo = np.r_[-rng.normal(1.0, 0.25, 15), -np.inf]
    hi = np.r_[lo[:15], -0.5]
    u, p = order_test(lo, hi, 0.25)
    assert u < 0 and p <= 0.05
