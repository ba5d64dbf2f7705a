"""Power of the lag test: the detectable lead, checked against an independent simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analysis.timing.lagtest import signflip_test
from study.contract.power import detectable_effect, detectable_lead, power_at, seeds_for_verdict


def test_too_few_seeds_can_never_reach_the_level():
    # the smallest two-sided p of n seeds is 2/2^n: 5 seeds give 0.0625 > 0.05
    assert detectable_effect(5, 0.05) == math.inf
    assert math.isfinite(detectable_effect(6, 0.05))
    # 8 seeds reach 0.0078 but not α/12 = 0.0042: a BH family of 12 cells is out of reach
    assert detectable_lead(8, 1.0, family=12) == math.inf
    assert math.isfinite(detectable_lead(9, 1.0, family=12))


def test_detectable_lead_falls_with_seeds_and_rises_with_the_family():
    leads = [detectable_lead(n, 1.0) for n in (8, 12, 16, 24)]
    assert all(a > b for a, b in itertools.pairwise(leads))
    assert detectable_lead(16, 1.0, family=12) > detectable_lead(16, 1.0, family=1)
    assert detectable_lead(16, 2.0) == pytest.approx(2 * detectable_lead(16, 1.0))
    assert math.isnan(detectable_lead(16, 0.0))


def test_detectable_effect_is_near_the_paired_t_design_value():
    # a paired t-test needs d = 0.75 for 80 % power at n = 16, α = 0.05; the signed-rank test
    # (efficiency 3/π against t for normal data) needs slightly more
    d = detectable_effect(16, 0.05)
    assert 0.74 <= d <= 0.85
    assert power_at(d, 16, 0.05) >= 0.8 > power_at(0.9 * d, 16, 0.05)


def test_power_at_the_detectable_lead_checked_with_the_test_itself():
    n, sd = 10, 1.5
    lead = detectable_lead(n, sd)
    rng = np.random.default_rng(21)
    reps = 500
    hits = sum(signflip_test(d, d)[1] <= 0.05 for d in rng.normal(lead, sd, (reps, n)))
    assert abs(hits / reps - 0.8) <= 3 * math.sqrt(0.8 * 0.2 / reps) + 0.01


def test_seeds_for_verdict_says_whether_a_design_can_see_two_evaluations():
    r = seeds_for_verdict(8, 12)
    assert not r["reachable"] and r["detectable_lead_evals"] == math.inf
    need = r["seeds_needed"]
    assert need is not None and need > 8
    assert seeds_for_verdict(need, 12)["reachable"]
    assert not seeds_for_verdict(need - 1, 12)["reachable"]
    assert seeds_for_verdict(40, 1)["reachable"]
    with pytest.raises(ValueError, match="n_seeds"):
        seeds_for_verdict(0, 1)
