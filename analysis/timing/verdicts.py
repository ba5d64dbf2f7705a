"""Per-cell timing verdicts from the seeds' timing onsets: test, equivalence, BH, CI, power.

A cell's seeds give paired onsets (function, structure) → lag intervals (:mod:`.lagtest`). Per
cell: the censoring-aware sign-flip test of the lag (``p_order``), the TOST of co-emergence within
±margin (``p_tost``), the Clopper–Pearson CI of P(function first) over the seeds whose lag interval
excludes 0, and the smallest lead the cell could detect with 80 % power at its n, its lag spread
and its BH family (:mod:`study.contract.power`). Across the cells of one verdict family (one table;
never pooled across cells or λ) both p-values are Benjamini–Hochberg adjusted.

The verdict, in order of precedence (α = 0.05 after BH):

1. ``neither emerged`` / ``structure never emerged`` / ``function never emerged``: more than
   half of the cell's seeds have no confirmed onset of that metric (right-censored); a cell
   where structure mostly never emerged never reads "function first".
2. ``function first`` / ``structure first``: p_order_bh <= α, the side given by U's sign.
3. ``co-emergent``: p_tost_bh <= α.
4. ``inconclusive (power)``: the cell could not detect a lead of ``lead_of_interest`` evaluations
   (its detectable lead is larger); else ``inconclusive``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from study.contract.power import LEAD_OF_INTEREST_EVALS, RESOLUTION_EVALS, detectable_lead
from study.contract.rise import TimingOnset

from .lagtest import bh_adjust, clopper_pearson, gehan_u, lag_interval, signflip_test, tost_test

__all__ = [
    "ALPHA",
    "MARGIN_EVALS",
    "VERDICTS",
    "cell_statistics",
    "label_cells",
    "lag_spread",
    "order_test",
    "robust_sd",
]

ALPHA = 0.05
MARGIN_EVALS = 2.0  # TOST margin: ±2 evaluations of the regular schedule
VERDICTS = (
    "function first",
    "structure first",
    "co-emergent",
    "inconclusive",
    "inconclusive (power)",
    "structure never emerged",
    "function never emerged",
    "neither emerged",
)


def robust_sd(x: Any) -> float:
    """1.4826 · median |x − median x| (the sd of a normal sample), the plain sd when the MAD is
    0; NaN for fewer than 2 values."""
    v = np.asarray(x, float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return math.nan
    mad = 1.4826 * float(np.median(np.abs(v - np.median(v))))
    return mad if mad > 0 else float(np.std(v, ddof=1))


def lag_spread(x: Any) -> float:
    """The lag spread behind a cell's power: max(robust sd, sample sd). The robust sd of a few
    values is biased low (median 0.84 σ at n = 8), the sample sd is inflated by an outlying
    seed; the larger errs towards less power, never more."""
    v = np.asarray(x, float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return math.nan
    return max(robust_sd(v), float(np.std(v, ddof=1)))


def cell_statistics(
    func: Sequence[TimingOnset],
    struct: Sequence[TimingOnset],
    *,
    step: float,
    margin_evals: float = MARGIN_EVALS,
    resolution_evals: float = RESOLUTION_EVALS,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Raw (unadjusted) timing statistics of one cell's seeds.

    Args:
        func, struct: the seeds' timing onsets of the two metrics, paired by position.
        step: the regular evaluation interval (epochs): leads and margins in evaluations are
            in this unit.
        margin_evals: the TOST margin in evaluations.
        resolution_evals: the order test's resolution in evaluations (:func:`order_test`).

    Returns:
        ``n_seeds``; per metric (``func``, ``struct``) the counts ``n_<m>_onset``,
        ``n_<m>_left``, ``n_<m>_unresolved``, ``n_<m>_not_detected``; ``n_func_first`` (lag
        interval > 0), ``n_struct_first`` (< 0), ``n_undecided``; ``p_function_first`` and its
        95 % Clopper–Pearson ``ci_function_first``; ``u`` and ``p_order`` (two-sided),
        ``p_tost``; ``median_lag`` (point lags, epochs; NaN if none), ``lag_sd``
        (:func:`lag_spread` of the point lags, epochs; NaN for fewer than 4); ``lags`` (the
        intervals).
    """
    if len(func) != len(struct):
        raise ValueError(
            f"cell_statistics(): func and struct must pair the same seeds, but "
            f"got {len(func)} and {len(struct)} onsets."
        )
    n = len(func)
    lo = np.empty(n)
    hi = np.empty(n)
    for i, (f, s) in enumerate(zip(func, struct)):
        lo[i], hi[i] = lag_interval(f, s)
    out: dict[str, Any] = {"n_seeds": n}
    for tag, ons in (("func", func), ("struct", struct)):
        st = [o.status for o in ons]
        out[f"n_{tag}_onset"] = st.count("onset")
        out[f"n_{tag}_left"] = st.count("left-censored")
        out[f"n_{tag}_unresolved"] = st.count("unresolved")
        out[f"n_{tag}_not_detected"] = st.count("not detected")
    k_f, k_s = int((lo > 0).sum()), int((hi < 0).sum())
    out.update(n_func_first=k_f, n_struct_first=k_s, n_undecided=n - k_f - k_s)
    dec = k_f + k_s
    out["p_function_first"] = k_f / dec if dec else math.nan
    out["ci_function_first"] = clopper_pearson(k_f, dec)
    u, p = order_test(lo, hi, resolution_evals * step, rng=rng)
    out["u"], out["p_order"] = u, p
    out["p_tost"] = tost_test(lo, hi, margin_evals * step, rng=rng)[0] if n else 1.0
    point = np.isfinite(lo) & (lo == hi)
    out["median_lag"] = float(np.median(lo[point])) if point.any() else math.nan
    out["lag_sd"] = lag_spread(lo[point]) if point.sum() >= 4 else math.nan
    out["lags"] = [(float(a), float(b)) for a, b in zip(lo, hi)]
    return out


def order_test(
    lo: np.ndarray, hi: np.ndarray, resolution: float, **kwargs: Any
) -> tuple[int, float]:
    """The ordering test: is the lags' centre beyond ±``resolution`` (epochs)?

    Two one-sided sign-flip tests (:func:`.lagtest.signflip_test`), "centre > r" on
    [lo − r, hi − r] and "centre < −r" on [lo + r, hi + r], Bonferroni-combined:
    p = min(1, 2·min(p₊, p₋)). With r = 0 it is the two-sided test up to the factor 2 of a
    discrete law. Returns (U, p), U the statistic of the unshifted lags, its sign the side;
    when the side of the smaller one-sided p disagrees with U's sign, p is 1."""
    if resolution <= 0:
        return signflip_test(lo, hi, **kwargs)
    u = gehan_u(lo, hi) if len(lo) else 0
    _, p_gt = signflip_test(lo - resolution, hi - resolution, alternative="greater", **kwargs)
    _, p_lt = signflip_test(lo + resolution, hi + resolution, alternative="less", **kwargs)
    p = min(1.0, 2.0 * min(p_gt, p_lt))
    if (p_gt < p_lt and u <= 0) or (p_lt < p_gt and u >= 0):
        p = 1.0
    return u, p


def label_cells(
    cells: Sequence[dict[str, Any]],
    *,
    step: float | Sequence[float],
    alpha: float = ALPHA,
    lead_of_interest: float = LEAD_OF_INTEREST_EVALS,
    fallback_sd_evals: float | Sequence[float] = math.nan,
) -> list[dict[str, Any]]:
    """BH across one family of cells, power per cell, and the verdicts.

    Args:
        cells: :func:`cell_statistics` of every cell of the family.
        step: the regular evaluation interval (epochs), one or one per cell.
        lead_of_interest: the lead (evaluations) a cell must be able to see, else an
            inconclusive cell reads "inconclusive (power)".
        fallback_sd_evals: lag spread (evaluations) for the power of cells with fewer than 4
            point lags (e.g. from the calibration); one or one per cell.

    Returns:
        New dicts: the inputs plus ``family``, ``p_order_bh``, ``p_tost_bh``,
        ``detectable_lead_evals``, ``detectable_lead_epochs``, ``power_note`` and ``verdict``.
    """
    m = len(cells)
    steps = np.broadcast_to(np.asarray(step, float), (m,))
    fall = np.broadcast_to(np.asarray(fallback_sd_evals, float), (m,))
    p_ord = bh_adjust([c["p_order"] for c in cells])
    p_tost = bh_adjust([c["p_tost"] for c in cells])
    out = []
    for i, c in enumerate(cells):
        r = dict(c)
        r.update(family=m, p_order_bh=float(p_ord[i]), p_tost_bh=float(p_tost[i]))
        sd_evals = c["lag_sd"] / steps[i] if math.isfinite(c["lag_sd"]) else fall[i]
        lead = detectable_lead(c["n_seeds"], sd_evals, alpha=alpha, family=m) + RESOLUTION_EVALS
        r["detectable_lead_evals"] = lead
        r["detectable_lead_epochs"] = lead * steps[i]
        r["power_note"] = _power_note(c["n_seeds"], m, alpha, lead, sd_evals)
        r["verdict"] = _verdict(r, alpha, lead_of_interest)
        out.append(r)
    return out


def _power_note(n: int, family: int, alpha: float, lead: float, sd_evals: float) -> str:
    """Why the cell can or cannot see a lead, in words."""
    level = alpha / family
    if math.isinf(lead):
        return (
            f"{n} seeds cannot reach p <= {level:.4g} (α/{family}): the smallest possible "
            f"p is {2.0 / 2.0**n:.4g}"
        )
    if math.isnan(lead):
        return "no lag spread to judge power from"
    return (
        f"80 % power for a lead of {lead:.2f} evaluations at n = {n}, lag sd "
        f"{sd_evals:.2f} evaluations, level α/{family} = {level:.4g}"
    )


def _verdict(r: dict[str, Any], alpha: float, lead_of_interest: float) -> str:
    """The label of one cell (module docstring, precedence 1–4)."""
    n = r["n_seeds"]
    miss_s = r["n_struct_unresolved"] + r["n_struct_not_detected"]
    miss_f = r["n_func_unresolved"] + r["n_func_not_detected"]
    if n == 0:
        return "inconclusive"
    if miss_s > n / 2 and miss_f > n / 2:
        return "neither emerged"
    if miss_s > n / 2:
        return "structure never emerged"
    if miss_f > n / 2:
        return "function never emerged"
    if r["p_order_bh"] <= alpha and r["u"] != 0:
        return "function first" if r["u"] > 0 else "structure first"
    if r["p_tost_bh"] <= alpha:
        return "co-emergent"
    lead = r["detectable_lead_evals"]
    if not (lead <= lead_of_interest):
        return "inconclusive (power)"
    return "inconclusive"
