"""Power of the lag test: the smallest lead a cell can detect, and the seeds a design needs.

Model: a cell's n per-seed lags are d_i = L + s·z_i, z_i ~ N(0, 1) independent, with L the
lead (epochs, or evaluations) and s the lag's spread (onset estimation noise plus the seeds'
own variation). The test is the two-sided sign-flip signed-rank test of
``analysis.timing.lagtest`` (on point lags its null is the closed-form signed-rank law,
:func:`signed_rank_counts`). A
cell judged inside a Benjamini–Hochberg family of m cells is tested, in the worst case (every
other cell null), at α/m; that is the level used here, so the detectable lead is what the cell
reaches on its own evidence.

The power at L/s is estimated on ``N_POWER`` fixed standard-normal draws (common random numbers:
the power curve is smooth and monotone in L/s), and the lead with 80 % power is found by
bisection. Power depends on L and s only through L/s, so one search per (n, level) serves every
cell (cached).

:data:`DEFAULT_LAG_SD_EVALS` is the documented default noise model for planning (``study
validate``): per-seed lags spread with sd 2 regular evaluations. phase-cpu's per-seed lags
(threshold onsets, 12 treated cells of 8 seeds) have a median within-cell spread of 1.5
(robust sd, 1.4826 · MAD) to 3.2 (sample sd) evaluations; half-rise onsets add 0.3–0.7
evaluations of estimation noise (docs/timing.md); 2 sits between. Replace it with a study's
own spread once its half-rise lags are measured.

Part of the contract so that ``study validate`` can plan a design without ``analysis`` (and
without torch): pure NumPy.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_LAG_SD_EVALS",
    "LEAD_OF_INTEREST_EVALS",
    "POWER",
    "detectable_effect",
    "detectable_lead",
    "power_at",
    "seeds_for_verdict",
    "signed_rank_counts",
]

POWER = 0.8
DEFAULT_LAG_SD_EVALS = 2.0
LEAD_OF_INTEREST_EVALS = 2.0  # the lead a design should be able to see (study validate)
# the ordering test's resolution: an order is called only for a lag centre beyond ±this many
# regular evaluations (below it the onset estimators' own small biases, a tenth of an
# evaluation or so, would be read as an order by a precise enough cell; docs/timing.md)
RESOLUTION_EVALS = 0.25
N_POWER = 4000
MAX_SEEDS = 200


@lru_cache(maxsize=64)
def signed_rank_counts(n: int) -> np.ndarray:
    """Number of sign assignments of ranks 1..n with T⁺ = s, s = 0 … n(n + 1)/2 (float): the
    null law of the Wilcoxon signed-rank sum times 2ⁿ."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts


@lru_cache(maxsize=256)
def _two_sided_p(n: int) -> np.ndarray:
    """P(|U| >= |u|) under the null for T⁺ = 0 … n(n+1)/2 (U = 2T⁺ − n(n+1)/2)."""
    counts = signed_rank_counts(n)
    prob = counts / counts.sum()
    total = n * (n + 1) // 2
    u = np.abs(2.0 * np.arange(total + 1) - total)
    _, inv = np.unique(u, return_inverse=True)
    mass = np.bincount(inv, weights=prob)
    return mass[::-1].cumsum()[::-1][inv]


@lru_cache(maxsize=64)
def _draws(n: int) -> np.ndarray:
    """Fixed standard-normal draws, shape (N_POWER, n) (common random numbers)."""
    return np.random.default_rng(12345 + n).standard_normal((N_POWER, n))


def power_at(effect: float, n: int, level: float) -> float:
    """Power of the two-sided signed-rank test at ``level`` for lags N(effect, 1), n seeds."""
    if n < 1:
        return 0.0
    d = effect + _draws(n)
    ranks = np.argsort(np.argsort(np.abs(d), axis=1), axis=1) + 1
    t_plus = np.where(d > 0, ranks, 0).sum(1)
    p = _two_sided_p(n)[t_plus]
    return float(np.mean(p <= level + 1e-12))


@lru_cache(maxsize=1024)
def detectable_effect(n: int, level: float, power: float = POWER) -> float:
    """Smallest L/s with the given power at ``level`` for n seeds; inf when even the most
    extreme outcome (all 2ⁿ flips, p = 2/2ⁿ) cannot reach the level."""
    if n < 1 or 2.0 / 2.0**n > level + 1e-12:
        return math.inf
    lo, hi = 0.0, 1.0
    while power_at(hi, n, level) < power:
        hi *= 2.0
        if hi > 1e3:
            return math.inf
    for _ in range(16):
        mid = 0.5 * (lo + hi)
        if power_at(mid, n, level) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def detectable_lead(
    n: int, sd: float, *, alpha: float = 0.05, family: int = 1, power: float = POWER
) -> float:
    """Smallest |lead| (units of ``sd``) a cell of n seeds detects with ``power`` at α/family.

    inf when n seeds cannot reach α/family at all, NaN when sd is not finite and positive.
    """
    if not (math.isfinite(sd) and sd > 0):
        return math.nan
    return detectable_effect(int(n), float(alpha) / max(int(family), 1), power) * sd


def seeds_for_verdict(
    n_seeds: int,
    family: int,
    *,
    lead_evals: float = LEAD_OF_INTEREST_EVALS,
    lag_sd_evals: float = DEFAULT_LAG_SD_EVALS,
    alpha: float = 0.05,
    power: float = POWER,
) -> dict[str, Any]:
    """Whether cells of ``n_seeds`` seeds in a BH family of ``family`` cells can call a lead.

    For ``study validate``: under the default noise model (lags spread by ``lag_sd_evals``
    regular evaluations) a cell must detect a lead of ``lead_evals`` evaluations with
    ``power`` at α/family, beyond the test's resolution (:data:`RESOLUTION_EVALS`: the
    detectable lead is the plain signed-rank test's plus the resolution).

    Returns:
        ``reachable`` (bool), ``detectable_lead_evals`` (inf when n cannot reach α/family),
        ``seeds_needed`` (the smallest n that can, or None beyond 200), and the inputs.
    """
    if n_seeds < 1 or family < 1:
        raise ValueError(
            f"seeds_for_verdict(): n_seeds and family must be >= 1, but got "
            f"n_seeds={n_seeds}, family={family}."
        )
    lead = detectable_lead(n_seeds, lag_sd_evals, alpha=alpha, family=family, power=power)
    lead += RESOLUTION_EVALS  # the order test sees the lag beyond its resolution only
    effect = max(lead_evals - RESOLUTION_EVALS, 0.0) / lag_sd_evals
    needed, n = None, 1
    while n <= MAX_SEEDS:
        level = alpha / family
        if 2.0 / 2.0**n <= level and power_at(effect, n, level) >= power:
            needed = n
            break
        n += 1 if n < 32 else 4
    return {
        "n_seeds": int(n_seeds),
        "family": int(family),
        "alpha": float(alpha),
        "power": float(power),
        "lead_evals": float(lead_evals),
        "lag_sd_evals": float(lag_sd_evals),
        "detectable_lead_evals": lead,
        "reachable": bool(lead <= lead_evals),
        "seeds_needed": needed,
    }
