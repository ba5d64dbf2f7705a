"""A censoring-aware paired test of per-seed lags, its equivalence (TOST) twin, BH, and a CI.

Each seed contributes its lag d = t_struct − t_func as an interval [lo, hi] (equal bounds when
both onsets are points; open ends from censoring, :func:`lag_interval`). The statistic is the
Wilcoxon signed-rank statistic written over Walsh pairs and generalised to intervals
(Gehan's treatment of censored comparisons):

    U = Σ_{i <= j} [ 1(lo_i + lo_j > 0) − 1(hi_i + hi_j < 0) ],

a pair scoring +1 when its Walsh sum (d_i + d_j) is certainly positive, −1 when certainly
negative, 0 when the intervals leave it open. For exact lags with distinct |d|, U = 2 T⁺ −
n(n + 1)/2 with T⁺ the signed-rank sum. U > 0 says structure comes after function.

Null hypothesis: each seed's lag is symmetric about 0 (function and structure exchangeable), so
flipping the sign of any seed's lag, [lo, hi] → [−hi, −lo], leaves the joint law unchanged. The
p-value is the fraction of the 2ⁿ sign flips whose U is at least as extreme as the observed one:
exact as long as at most ``EXACT_MAX`` seeds are censored, zero or tied (the other seeds enter
U through their own flip only, so their part is a convolution, :func:`_null_u`), by Monte Carlo
beyond (seeded, so reproducible).

Co-emergence by equivalence (TOST): H₀₁ "the lag's centre <= −δ" is rejected by the one-sided
test on [lo + δ, hi + δ], H₀₂ "centre >= +δ" by the one-sided test on [lo − δ, hi − δ];
p_TOST = max of the two.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from study.contract.rise import TimingOnset

__all__ = [
    "EXACT_MAX",
    "N_MONTE_CARLO",
    "bh_adjust",
    "clopper_pearson",
    "gehan_u",
    "lag_interval",
    "sign_test",
    "signflip_test",
    "tost_test",
]

EXACT_MAX = 12  # exact null while at most this many seeds are censored, zero or tied
N_MONTE_CARLO = 20000  # random sign flips beyond
_CHUNK = 4096  # flip states of the non-linear seeds per block


def lag_interval(func: TimingOnset, struct: TimingOnset) -> tuple[float, float]:
    """Bounds of one seed's lag t_struct − t_func: [s.lo − f.hi, s.hi − f.lo] (epochs)."""
    return struct.lo - func.hi, struct.hi - func.lo


def _check(lo: Any, hi: Any) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds as float arrays (n,), lo <= hi, no NaN."""
    lo, hi = np.asarray(lo, float).reshape(-1), np.asarray(hi, float).reshape(-1)
    if lo.shape != hi.shape or np.isnan(lo).any() or np.isnan(hi).any() or (lo > hi).any():
        raise ValueError(
            f"lag intervals must be paired bounds with lo <= hi and no NaN, but "
            f"got lo={lo.tolist()}, hi={hi.tolist()}."
        )
    return lo, hi


def _pair_scores(
    lo_i: np.ndarray, hi_i: np.ndarray, lo_j: np.ndarray, hi_j: np.ndarray
) -> np.ndarray:
    """Walsh-pair scores under the four flip states: shape (..., 2, 2), entry [f_i, f_j] =
    1(lo'_i + lo'_j > 0) − 1(hi'_i + hi'_j < 0) with a flipped interval [−hi, −lo]."""
    flo_i, fhi_i = np.stack([lo_i, -hi_i], -1), np.stack([hi_i, -lo_i], -1)
    flo_j, fhi_j = np.stack([lo_j, -hi_j], -1), np.stack([hi_j, -lo_j], -1)
    s_lo = flo_i[..., :, None] + flo_j[..., None, :]
    s_hi = fhi_i[..., :, None] + fhi_j[..., None, :]
    return (s_lo > 0).astype(np.int64) - (s_hi < 0).astype(np.int64)


def _pair_table(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i <= j and each pair's score under the four flip states (f_i, f_j) ∈ {0, 1}²:
    table shape (P, 4), column 2 f_i + f_j."""
    ii, jj = np.triu_indices(lo.size)
    return ii, jj, _pair_scores(lo[ii], hi[ii], lo[jj], hi[jj]).reshape(ii.size, 4)


def gehan_u(lo: Any, hi: Any) -> int:
    """U = Σ_{i<=j} [1(lo_i + lo_j > 0) − 1(hi_i + hi_j < 0)] (module docstring)."""
    lo, hi = _check(lo, hi)
    return int(_pair_table(lo, hi)[2][:, 0].sum(dtype=np.int64))


def _shift_add(dist: np.ndarray, v0: np.ndarray, v1: np.ndarray) -> np.ndarray:
    """Row-wise ½(dist shifted right by v0 + dist shifted right by v1): the law of a sum after
    adding an independent fair two-valued term (v0 or v1, per row). Mass never leaves the
    array (|U| <= n(n + 1)/2 by construction)."""
    R = dist.shape[1]
    out = np.zeros_like(dist)
    for v in (v0, v1):
        for shift in np.unique(v):
            rows = np.flatnonzero(v == shift)
            k = int(shift)
            if k >= 0:
                out[rows, k:] += 0.5 * dist[rows, : R - k]
            else:
                out[rows, : R + k] += 0.5 * dist[rows, -k:]
    return out


def _null_u(
    lo: np.ndarray, hi: np.ndarray, n_mc: int, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Values of U under the 2ⁿ sign flips and their probabilities; exact flag.

    Seeds with a point lag of distinct non-zero |d| ("linear" seeds) enter U through a term
    that depends on their own flip only, given the flips of the other seeds (the censored,
    zero or tied ones, q of them): a Walsh pair of two linear seeds scores the sign of the
    larger |d|. So the law of U is the average over the 2^q flips of the others of a sum of
    independent two-valued terms, computed exactly by convolution. With q > EXACT_MAX, U is
    sampled on n_mc random flips instead (exact flag false).
    """
    n = lo.size
    total = n * (n + 1) // 2
    point = np.isfinite(lo) & (lo == hi) & (lo != 0)
    absd = np.abs(np.where(point, lo, 0.0))
    vals, counts = np.unique(absd[point], return_counts=True)
    linear = point & ~np.isin(absd, vals[counts > 1])
    other, lin = np.flatnonzero(~linear), np.flatnonzero(linear)
    q = other.size
    if q > EXACT_MAX:
        rng = np.random.default_rng(0) if rng is None else rng
        ii, jj, table = _pair_table(lo, hi)
        out = []
        chunk = max(1, 2**22 // max(ii.size, 1))
        for start in range(0, n_mc, chunk):
            bits = rng.integers(0, 2, (min(chunk, n_mc - start), n))
            out.append(table[np.arange(ii.size), 2 * bits[:, ii] + bits[:, jj]].sum(1))
        u = np.concatenate(out).astype(float)
        return u, np.full(u.size, 1.0 / u.size), False
    lo_o, hi_o = lo[other], hi[other]
    ii, jj = np.triu_indices(q)
    g = _pair_scores(lo_o[ii], hi_o[ii], lo_o[jj], hi_o[jj])  # (pairs, 2, 2)
    order = lin[np.argsort(absd[lin], kind="stable")]
    cross = _pair_scores(
        np.repeat(lo[order], q),
        np.repeat(hi[order], q),
        np.tile(lo_o, order.size),
        np.tile(hi_o, order.size),
    )
    cross = cross.reshape(order.size, q, 2, 2)  # [linear seed, other seed, f_lin, f_other]
    law = np.zeros(2 * total + 1)
    for start in range(0, 2**q, _CHUNK):
        codes = np.arange(start, min(start + _CHUNK, 2**q))
        states = (codes[:, None] >> np.arange(q)[None, :]) & 1  # (c, q)
        a = g[np.arange(ii.size)[None, :], states[:, ii], states[:, jj]].sum(1)  # (c,)
        dist = np.zeros((codes.size, 2 * total + 1))
        dist[np.arange(codes.size), a + total] = 1.0
        for r, p in enumerate(order):
            base = int(np.sign(lo[p])) * (r + 1)  # its own pair plus the smaller linear seeds
            c0 = cross[r, np.arange(q)[None, :], 0, states].sum(1)
            c1 = cross[r, np.arange(q)[None, :], 1, states].sum(1)
            dist = _shift_add(dist, base + c0, -base + c1)
        law += dist.sum(0)
    return np.arange(-total, total + 1, dtype=float), law / 2**q, True


def signflip_test(
    lo: Any,
    hi: Any,
    *,
    alternative: str = "two-sided",
    n_mc: int = N_MONTE_CARLO,
    rng: np.random.Generator | None = None,
) -> tuple[int, float]:
    """Sign-flip permutation test of the lag intervals' centre against 0.

    Args:
        lo, hi: per-seed lag bounds (epochs), shape (n,); ±inf allowed.
        alternative: "two-sided", "greater" (lags > 0: structure after function) or "less".
        n_mc: random flips when more than EXACT_MAX seeds are censored, zero or tied (the
            observed assignment is added to the count, so p >= 1/(n_mc + 1)).

    Returns:
        (U, p). p = 1 with no seed.
    """
    lo, hi = _check(lo, hi)
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(
            f"signflip_test(): alternative must be 'two-sided', 'greater' or "
            f"'less', but got {alternative!r}."
        )
    if lo.size == 0:
        return 0, 1.0
    u_obs = gehan_u(lo, hi)
    u, wt, exact = _null_u(lo, hi, n_mc, rng)
    eps = 1e-9
    if alternative == "two-sided":
        hit = np.abs(u) >= abs(u_obs) - eps
    elif alternative == "greater":
        hit = u >= u_obs - eps
    else:
        hit = u <= u_obs + eps
    p = float(wt[hit].sum())
    if not exact:
        p = (p * u.size + 1.0) / (u.size + 1.0)
    return u_obs, min(1.0, p)


def tost_test(lo: Any, hi: Any, margin: float, **kwargs: Any) -> tuple[float, float, float]:
    """TOST of co-emergence: the lag's centre lies within ±margin (epochs, > 0).

    Returns:
        (p_TOST, p_lower, p_upper): p_lower tests "centre <= −margin" on [lo + δ, hi + δ]
        (alternative "greater"), p_upper "centre >= margin" on [lo − δ, hi − δ] ("less").
    """
    lo, hi = _check(lo, hi)
    if not margin > 0:
        raise ValueError(f"tost_test(): margin must be > 0 epochs, but got margin={margin}.")
    if lo.size == 0:
        return 1.0, 1.0, 1.0
    _, p1 = signflip_test(lo + margin, hi + margin, alternative="greater", **kwargs)
    _, p2 = signflip_test(lo - margin, hi - margin, alternative="less", **kwargs)
    return max(p1, p2), p1, p2


def sign_test(k: int, n: int) -> float:
    """Exact two-sided sign (binomial ½) test of k successes in n: min(1, 2 P(X <= min(k,
    n − k))); 1 when n = 0."""
    if n <= 0:
        return 1.0
    j = min(k, n - k)
    return min(1.0, 2.0 * sum(math.comb(n, i) for i in range(j + 1)) / 2.0**n)


def bh_adjust(p: Any) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values: p̃_(i) = min_{j >= i} min(1, m p_(j) / j) over the
    m finite p-values (NaN kept in place)."""
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if not ok.size:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return out


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) CI of a binomial proportion k/n: the a/2 quantile of
    Beta(k, n − k + 1) and the 1 − a/2 quantile of Beta(k + 1, n − k); (0, 1) when n = 0."""
    from scipy.special import betaincinv

    if n <= 0:
        return 0.0, 1.0
    a = 1.0 - level
    lo = 0.0 if k <= 0 else float(betaincinv(k, n - k + 1, a / 2))
    hi = 1.0 if k >= n else float(betaincinv(k + 1, n - k, 1 - a / 2))
    return lo, hi
