"""Timing onsets: half-way from each curve's first level to its fitted plateau, decided online.

A curve's **timing onset** is the epoch at which its fitted logistic rise (:mod:`.logistic`)
b + a·σ((t − m)/w) has covered the fraction f of the way from its level at the first evaluation
t₁ to its plateau b + a (:func:`start_level_onset`):

    t_f = m + w · logit(σ₁ + f·(1 − σ₁)),   σ₁ = σ((t₁ − m)/w)

(f = ½; with the baseline seen before the rise, σ₁ ≈ 0 and t_f = m + w·logit(f)). A rise that
starts with training, as modularity does, is timed from the untrained network's level, so a
wide rise does not need a baseline before the run to be a point (rule 3, :data:`ONSET_RULE`;
docs/timing.md "What changed and why").

It is decided **online**, from the past only. At every evaluation k the grid of the schedule so
far is fitted to the evaluations 0 … k (:func:`.logistic.make_grid` is causal); the
rise is *confirmed* at the first k where

1. the curve is detectable: it has reached ``threshold`` for ``run`` consecutive evaluations
   (the project's detection rule, :func:`study.contract.outcomes.onset`, "detectable from";
   the significance gate, calibrated for false emergence), and
2. the rise is resolved: the best fit with at least ``plateau`` evaluations at or after
   m + c·w (c = ``resolve``; σ(2) = 88 % of the rise) beats every fit of a rise still under
   way at t_k (including midpoints after t_k) by ΔRSS >= ``evidence`` · σ̂², with σ̂² the
   residual variance inflated by (1 + ρ̂)/(1 − ρ̂) for autocorrelated residuals.

The onset is then refitted on a bounded window: up to the first evaluation at least ``extra``
evaluations and ``window`` · ŵ past the confirmation; when the refit finds a wider rise, the
window widens to ``window`` of the new scales and is refitted, until it holds (at most
:data:`ADAPT_STEPS` refits; each uses the evaluations up to the current end only). The
evaluations after the confirmation were not selected by the stopping rule, which damps its
bias. The onset depends on nothing after the window's end, its ``decided_at``: truncating the
curve there never moves it, and :func:`confirm_online` on the history up to any evaluation
agrees with the offline result truncated there.

Why this and not a threshold crossing: t_f is invariant to the curve's amplitude and offset,
because (m̂, ŵ) of a least-squares logistic fit do not change when the curve is scaled or
shifted; a fixed threshold is crossed earlier by a larger curve with the same time course. Why
not a fit to the whole curve: it moves when the run is extended. docs/timing.md argues the
choice and gives the calibration.

Censoring (the onset as an interval [lo, hi]; each bound errs on the safe side under noise):

- ``onset``: confirmed, t_f at or after the second evaluation: lo = hi = t_f.
- ``left-censored``: confirmed, but t_f before the second evaluation (half the change made in
  the first interval). The true onset is at most where the curve reaches y₁ + f(P − y₁), y₁
  the fitted level at t₁ and P the plateau: hi = the evaluation after the last one below that
  level, lo = ``origin`` (default min(0, t₁)).
- ``unresolved``: detectable but not resolved by the last evaluation. The eventual rise is at
  least the one reached, so the onset is at least where the curve first reached
  y₁ + f(y_T − y₁): lo = the evaluation before the first one at or above it, hi = ∞.
- ``not detected``: never detectable. A rise smaller than the threshold may be past its middle
  already, so nothing bounds it: lo = ``origin``, hi = ∞ (undecided in the lag test; the
  cell's "never emerged" labels count it).

This module is the one owner of the timing onset on both sides of the contract: the training
loop decides online with :func:`confirm_online` (e.g. to intervene at the functional onset),
seeds.parquet carries every seed's onsets (:func:`seed_onsets`, called by
:func:`study.contract.outcomes.seed_table`), and ``analysis.timing`` judges cells from them.
Pure NumPy at import time (pandas is imported inside :func:`seed_onsets`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .logistic import fit_prefix, grid_gains, make_grid, refine, single_thread_blas
from .names import TIMING_FUNCTION, TIMING_STRUCTURE

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DETECT_RUN",
    "DETECT_Z",
    "EVIDENCE",
    "EXTRA",
    "FRACTION",
    "ONSET_FIELDS",
    "ONSET_RULE",
    "PLATEAU",
    "RESOLVE",
    "RULE_COLUMN",
    "STATUSES",
    "STEP_COLUMN",
    "WINDOW",
    "TimingOnset",
    "confirm_online",
    "detections",
    "lag_column",
    "onset_column",
    "regular_step",
    "seed_onset_columns",
    "seed_onsets",
    "start_level_onset",
    "timing_onset",
    "timing_onsets",
]

# The detection rule's defaults ("detectable from": z >= DETECT_Z for DETECT_RUN evaluations):
# the numbers of study.contract.outcomes.DEFAULT_Z / DEFAULT_RUN (the `emergence` config
# section), which this module cannot import (outcomes imports it); a test checks they agree.
DETECT_Z = 3.0
DETECT_RUN = 3

FRACTION = 0.5  # the onset is where the fitted rise reaches this fraction of its amplitude
RESOLVE = 2.0  # resolved when evaluations lie beyond m + RESOLVE·w (σ(2) = 88 % of the rise)
PLATEAU = 2  # ... at least this many of them
EXTRA = 2  # evaluations after the confirmation that the final fit also uses
EVIDENCE = 16.0  # ΔRSS / σ̂² by which the resolved fit must beat every still-rising one
WINDOW = 4.0  # ... and at least this many fitted scales ŵ past the confirmation
ADAPT_STEPS = 8  # refits that may widen the window when the refitted scale grows
STATUSES = ("onset", "left-censored", "unresolved", "not detected")


@dataclass(frozen=True)
class TimingOnset:
    """One curve's timing onset and what bounds it (epochs; NaN where not defined).

    ``lo``/``hi``: the interval the onset lies in (equal for ``status == "onset"``, hi = inf
    when right-censored). ``detectable_from``: the detection onset (z >= threshold for ``run``
    evaluations), NaN if never. ``confirmed_at``: the evaluation at which the rise was first
    resolved; ``decided_at``: the last evaluation the reported onset uses (``complete`` false
    when the run ended before the bounded window did). ``midpoint``, ``width``, ``amplitude``,
    ``baseline``: the logistic fit behind the onset (for ``unresolved``, the fit to all data).
    """

    epoch: float
    lo: float
    hi: float
    status: str
    detectable_from: float
    confirmed_at: float
    decided_at: float
    complete: bool
    midpoint: float
    width: float
    amplitude: float
    baseline: float

    @property
    def emerged(self) -> bool:
        """Whether the rise was confirmed (a point or a left-censored onset)."""
        return self.status in ("onset", "left-censored")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (inf and NaN stay floats; the caller's encoder decides)."""
        return asdict(self)


def _check(
    epochs: Any,
    values: Any,
    fraction: float,
    direction: int,
    resolve: float,
    plateau: int,
    extra: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Validated schedule (T,) and values (S, T)."""
    t = np.asarray(epochs, dtype=float)
    x = np.asarray(values, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    if t.ndim != 1 or x.ndim != 2 or x.shape[1] != t.size:
        raise ValueError(
            f"timing_onsets(): epochs must have shape (T,) and values (S, T) or "
            f"(T,), but got epochs {t.shape} and values {x.shape}."
        )
    if t.size < 3 or not np.all(np.isfinite(t)) or not np.all(np.diff(t) > 0):
        raise ValueError(
            f"timing_onsets(): epochs must be finite, strictly increasing and "
            f"at least 3, but got {t.tolist()}."
        )
    if not 0.0 < fraction < 1.0 or abs(math.log(fraction / (1 - fraction))) >= resolve:
        raise ValueError(
            f"timing_onsets(): fraction must lie in (σ(−resolve), σ(resolve)) = "
            f"({1 / (1 + math.exp(resolve)):.3f}, "
            f"{1 / (1 + math.exp(-resolve)):.3f}), but got fraction={fraction}."
        )
    if direction not in (1, -1):
        raise ValueError(
            f"timing_onsets(): direction must be +1 (a rise) or −1 (a fall), but "
            f"got direction={direction!r}."
        )
    if isinstance(plateau, bool) or plateau < 1 or isinstance(extra, bool) or extra < 0:
        raise ValueError(
            f"timing_onsets(): plateau must be >= 1 and extra >= 0 evaluations, "
            f"but got plateau={plateau!r}, extra={extra!r}."
        )
    return t, x


def _confirmations(
    t: np.ndarray,
    x: np.ndarray,
    ok: np.ndarray,
    ready: np.ndarray,
    direction: int,
    resolve: float,
    plateau: int,
    evidence: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Index k* of the evaluation at which each curve's rise is confirmed (−1 if never), and
    the fitted scale ŵ there (NaN if never).

    Curve s is examined at evaluation k >= ready[s] (its detection is complete) when k holds a
    finite value. At k the grid of the schedule so far, t_1 … t_k, is fitted to evaluations
    0 … k (:func:`.logistic.make_grid` with midpoints ahead of t_k). A grid point is
    *resolved* when at least ``plateau`` finite evaluations lie at or after m + c·w. The rise
    is confirmed when the best resolved fit beats every unresolved one (a rise still under way
    at t_k, including midpoints after t_k) by ΔRSS >= evidence · σ̂², where
    σ̂² = RSS/(n − 4) · (1 + ρ̂)/(1 − ρ̂) from the best fit's residuals (ρ̂ their lag-1
    autocorrelation, in [0, 0.95]: autocorrelated residuals weigh less).
    """
    S, T = x.shape
    conf = np.full(S, -1)
    w_conf = np.full(S, np.nan)
    # a fit needs 5 finite evaluations (n >= 5 below): nothing is confirmed before k = 4, and
    # the grid of fewer than 2 epochs does not exist (detection complete at k = 0, run = 1)
    for k in range(max(int(ready[ready >= 0].min(initial=T)), 4), T):
        act = np.flatnonzero((ready >= 0) & (ready <= k) & (conf < 0) & ok[:, k])
        if not act.size:
            continue
        grid = make_grid(t[: k + 1], ahead=True)
        edge = _resolved_edge(float(t[0]), grid.m, grid.w, resolve)
        by_edge = np.argsort(edge, kind="stable")  # resolved grid points come first
        sel = by_edge[grid.m[by_edge] <= t[k] + 4.0 * grid.w[by_edge]]  # visible on 0 … k
        xa, oka = x[act, : k + 1], ok[act, : k + 1]
        gain, sxx, n = grid_gains(xa, oka, grid, k, direction, sel)
        # epoch of each curve's plateau-th last finite evaluation up to k
        cnt = np.cumsum(oka[:, ::-1], axis=1)[:, ::-1]
        j = np.where(cnt >= plateau, np.arange(k + 1)[None, :], -1).max(1)
        limit = np.where(j >= 0, t[np.maximum(j, 0)], -np.inf)
        rows = np.arange(act.size)
        if (limit == limit[0]).all():  # no missing values: one split of the grid for all
            cut = int(np.searchsorted(edge[sel], limit[0], side="right"))
            g_res, g_unr = gain[:, :cut], gain[:, cut:]
            best_r = np.argmax(g_res, axis=1) if cut else np.zeros(act.size, dtype=int)
            gr = g_res[rows, best_r] if cut else np.zeros(act.size)
            gu = g_unr.max(1) if cut < sel.size else np.zeros(act.size)
            alt = cut + (np.argmax(g_unr, axis=1) if cut < sel.size else 0)
        else:
            resolved = edge[sel][None, :] <= limit[:, None]
            g_res = np.where(resolved, gain, -1.0)
            g_unr = np.where(resolved, -1.0, gain)
            best_r = np.argmax(g_res, axis=1)
            gr, gu = np.maximum(g_res[rows, best_r], 0.0), np.maximum(g_unr.max(1), 0.0)
            alt = np.argmax(g_unr, axis=1)
        rss = sxx - np.maximum(gr, gu)
        best = sel[np.where(gr >= gu, best_r, np.minimum(alt, sel.size - 1))]
        sig2 = rss / np.maximum(n - 4, 1) * _ar_inflation(xa, oka, grid.basis[best])
        res = (gr > 0) & (n >= 5) & (gr - gu >= evidence * sig2)
        conf[act[res]] = k
        w_conf[act[res]] = grid.w[sel[best_r[res]]]
    return conf, w_conf


def _resolved_edge(t1: float, m: np.ndarray, w: np.ndarray, resolve: float) -> np.ndarray:
    """Where each rise has made σ(resolve) (88 % at 2) of its change from its level at t₁
    (:func:`start_level_onset` at that fraction): m + c·w when the baseline lies before t₁,
    t₁ + 2.1·w for an exponential approach from t₁ (c = 2)."""
    return start_level_onset(t1, m, w, 1.0 / (1.0 + math.exp(-resolve)))


def _ar_inflation(x: np.ndarray, ok: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(1 + ρ̂)/(1 − ρ̂) of the residuals of each curve x[i] around its least-squares fit
    b + a·s[i] (all shape (A, K)), ρ̂ their lag-1 autocorrelation clipped to [0, 0.95]: the
    variance of a sum of autocorrelated residuals relative to independent ones."""
    mk = ok
    n = np.maximum(mk.sum(1), 1)
    sm = np.where(mk, s, 0.0)
    xm = np.where(mk, x, 0.0)
    s_bar, x_bar = sm.sum(1) / n, xm.sum(1) / n
    ds = np.where(mk, s - s_bar[:, None], 0.0)
    dx = np.where(mk, x - x_bar[:, None], 0.0)
    a = (ds * dx).sum(1) / np.maximum((ds * ds).sum(1), 1e-300)
    r = np.where(mk, dx - a[:, None] * ds, 0.0)
    both = mk[:, 1:] & mk[:, :-1]
    num = (r[:, 1:] * r[:, :-1] * both).sum(1)
    den = (r * r).sum(1)
    rho = np.clip(num / np.maximum(den, 1e-300), 0.0, 0.95)
    return (1.0 + rho) / (1.0 - rho)


def _final_fit(
    t: np.ndarray, x: np.ndarray, ok: np.ndarray, last: np.ndarray, direction: int
) -> dict[str, np.ndarray]:
    """Refined fit of each curve on its evaluations 0 … last[s] only (``last`` shape (A,)):
    the grid of the schedule t_1 … t_last, then :func:`.logistic.refine`."""
    A = x.shape[0]
    out = {key: np.full(A, np.nan) for key in ("m", "w", "a", "b")}
    for k in np.unique(last):
        k = int(k)
        if k < 2:
            continue
        rows = np.flatnonzero(last == k)
        tk, xk, ok_k = t[: k + 1], x[rows, : k + 1], ok[rows, : k + 1]
        grid = make_grid(tk)
        idx, _, _ = fit_prefix(xk, ok_k, grid, k, direction)
        good = np.flatnonzero(idx >= 0)
        if not good.size:
            continue
        g = idx[good]
        f = refine(
            xk[good],
            ok_k[good],
            tk,
            grid.m[g],
            grid.w[g],
            0.5 * grid.step_m[g],
            direction,
            (np.full(good.size, grid.m.min()), np.full(good.size, tk[-1])),
        )
        for key, arr in out.items():
            arr[rows[good]] = getattr(f, key)
    return out


def detections(
    epochs: np.ndarray, y: np.ndarray, threshold: float = DETECT_Z, run: int = DETECT_RUN
) -> tuple[np.ndarray, np.ndarray]:
    """The detection rule of :func:`study.contract.outcomes.onset` ("detectable from") on a
    batch: the first evaluation from which y stays >= threshold for ``run`` evaluations (NaN
    breaks a stretch).

    Args:
        epochs: shape (T,); y: shape (S, T).

    Returns:
        (index of the first evaluation of the stretch, −1 if none; the censoring epoch
        ``epochs[last finite − run + 1]``, NaN if none), each shape (S,).
    """
    t = np.asarray(epochs, float)
    y = np.asarray(y, float)
    S, T = y.shape
    finite = np.isfinite(y)
    last = np.where(finite.any(1), T - 1 - np.argmax(finite[:, ::-1], axis=1), -1)
    ci = last - run + 1
    censor = np.where(ci >= 0, t[np.maximum(ci, 0)], np.nan)
    above = np.zeros((S, T + 1), dtype=np.int64)
    above[:, 1:] = np.cumsum(np.nan_to_num(y, nan=-np.inf) >= threshold, axis=1)
    if T < run:
        return np.full(S, -1), censor
    hit = (above[:, run:] - above[:, :-run]) == run
    first = np.where(hit.any(1), np.argmax(hit, axis=1), -1)
    return first, censor


def timing_onsets(
    epochs: Any,
    values: Any,
    *,
    fraction: float = FRACTION,
    direction: int = 1,
    threshold: float = DETECT_Z,
    run: int = DETECT_RUN,
    resolve: float = RESOLVE,
    plateau: int = PLATEAU,
    extra: int = EXTRA,
    origin: float | None = None,
    evidence: float = EVIDENCE,
    window: float = WINDOW,
) -> list[TimingOnset]:
    """Timing onsets of S curves on one schedule (module docstring: the rule and censoring).

    Args:
        epochs: evaluation epochs, shape (T,), strictly increasing, possibly irregular.
        values: z-score curves, shape (S, T) or (T,); NaN marks a missing evaluation.
        fraction: f, the fraction of the fitted rise that defines the onset.
        direction: +1 for a rising statistic, −1 for a falling one.
        threshold, run: the detection rule (z >= threshold for run evaluations).
        resolve: c; plateau: evaluations at or after m̂ + c·ŵ that resolve the rise.
        extra, window: the bounded window of the final fit reaches at least ``extra``
            evaluations and ``window`` fitted scales ŵ past the confirmation.
        origin: the earliest possible onset (a left-censored onset's lower bound); default
            min(0, first epoch).
        evidence: ΔRSS / σ̂² by which the resolved fit must beat every still-rising one.

    Returns:
        One :class:`TimingOnset` per curve.
    """
    t, x = _check(epochs, values, fraction, direction, resolve, plateau, extra)
    if not (evidence >= 0 and window >= 0):
        raise ValueError(
            f"timing_onsets(): evidence and window must be >= 0, but got "
            f"evidence={evidence}, window={window}."
        )
    with single_thread_blas():
        return _timing_onsets(
            t,
            x,
            fraction,
            direction,
            threshold,
            run,
            resolve,
            plateau,
            extra,
            origin,
            evidence,
            window,
        )


def _timing_onsets(
    t: np.ndarray,
    x: np.ndarray,
    fraction: float,
    direction: int,
    threshold: float,
    run: int,
    resolve: float,
    plateau: int,
    extra: int,
    origin: float | None,
    evidence: float,
    window: float,
) -> list[TimingOnset]:
    """:func:`timing_onsets` on validated arrays."""
    S, T = x.shape
    origin = min(0.0, float(t[0])) if origin is None else float(origin)
    ok = np.isfinite(x)
    det_i, _ = detections(t, direction * x, threshold, run)
    ready = np.where(det_i >= 0, det_i + run - 1, -1)
    conf, w_conf = _confirmations(t, x, ok, ready, direction, resolve, plateau, evidence)
    last_ok = np.array([int(np.flatnonzero(ok[s])[-1]) if ok[s].any() else -1 for s in range(S)])
    # the bounded window: at least `extra` evaluations and `window` fitted scales past k*,
    # the scale refitted on the window and the window widened until it holds (every step uses
    # the evaluations up to the current end only, so the result is causal)
    w_cur = np.nan_to_num(w_conf)
    end = np.full(S, -1)
    settled = np.zeros(S, dtype=bool)  # the window no longer widens, and it was observed
    fits = {key: np.full(S, np.nan) for key in ("m", "w", "a", "b")}
    todo = conf >= 0
    for _ in range(ADAPT_STEPS):
        if not todo.any():
            break
        want = np.where(todo, t[np.maximum(conf, 0)] + window * w_cur, np.inf)
        reach = np.searchsorted(t, want, side="left")
        new_end = np.where(todo, np.maximum(conf + extra, reach), end)
        grow = todo & (new_end > end)
        settled |= todo & ~grow
        end = np.where(grow, new_end, end)
        rows = np.flatnonzero(grow)
        if rows.size:
            sub = _final_fit(t, x[rows], ok[rows], np.minimum(end[rows], T - 1), direction)
            for key, arr in fits.items():
                arr[rows] = sub[key]
        w_new = np.where(np.isfinite(fits["w"]), fits["w"], w_cur)
        wider = w_new > w_cur
        seen = grow & (end <= T - 1)
        settled |= seen & ~wider
        todo = seen & wider
        w_cur = np.where(todo, w_new, w_cur)
    settled |= todo  # the refits stop after ADAPT_STEPS, offline and online alike
    complete = (conf >= 0) & settled
    decided = np.where(conf >= 0, np.minimum(end, T - 1), last_ok)
    rows = np.flatnonzero((conf < 0) & (decided >= 0) & (ready >= 0))
    if rows.size:
        sub = _final_fit(t, x[rows], ok[rows], decided[rows], direction)
        for key, arr in fits.items():
            arr[rows] = sub[key]
    out = []
    for s in range(S):
        m, w = fits["m"][s], fits["w"][s]
        common = {
            "detectable_from": float(t[det_i[s]]) if det_i[s] >= 0 else math.nan,
            "midpoint": m,
            "width": w,
            "amplitude": fits["a"][s],
            "baseline": fits["b"][s],
        }
        k_d = int(decided[s])
        fitted = np.isfinite(m) and k_d >= 0
        seen = np.flatnonzero(ok[s, : k_d + 1]) if fitted else np.zeros(0, dtype=int)
        # the reported fit must itself be resolved on its window: `plateau` evaluations at or
        # past where it has made σ(resolve) of its change (else its onset is extrapolated)
        held = fitted and seen.size >= 2
        if held and conf[s] >= 0:
            edge = _resolved_edge(float(t[seen[0]]), m, w, resolve)
            held = int((t[seen] >= edge).sum()) >= plateau
        if conf[s] >= 0 and held:
            dec = {
                "confirmed_at": float(t[conf[s]]),
                "decided_at": float(t[k_d]),
                "complete": bool(complete[s]),
            }
            tf = start_level_onset(float(t[seen[0]]), m, w, fraction)
            if tf >= t[seen[1]]:
                out.append(TimingOnset(tf, tf, tf, "onset", **dec, **common))
            else:
                hi = _left_bound(
                    t[: k_d + 1],
                    direction * x[s, : k_d + 1],
                    ok[s, : k_d + 1],
                    m,
                    w,
                    direction * fits["a"][s],
                    direction * fits["b"][s],
                    fraction,
                )
                out.append(TimingOnset(math.nan, origin, hi, "left-censored", **dec, **common))
            continue
        undecided = {"confirmed_at": math.nan, "decided_at": math.nan, "complete": False}
        if ready[s] >= 0 and fitted:
            lo = origin
            if seen.size:
                lo = _right_bound(
                    t[: k_d + 1],
                    direction * x[s, : k_d + 1],
                    ok[s, : k_d + 1],
                    m,
                    w,
                    direction * fits["a"][s],
                    direction * fits["b"][s],
                    fraction,
                    origin,
                )
            out.append(TimingOnset(math.nan, lo, math.inf, "unresolved", **undecided, **common))
        else:
            out.append(
                TimingOnset(math.nan, origin, math.inf, "not detected", **undecided, **common)
            )
    return out


def start_level_onset(t1: float, m: Any, w: Any, fraction: float = FRACTION) -> Any:
    """The epoch at which the rise b + a·σ((t − m)/w) has covered ``fraction`` of the way from
    its level at the first evaluation t₁ to its plateau b + a:

        t_f = m + w · logit(σ₁ + f·(1 − σ₁)),   σ₁ = σ((t₁ − m)/w).

    With the baseline seen (σ₁ ≈ 0) this is m + w·logit(f); for a rise under way at t₁ (a
    modularity that starts changing with training) it is still defined and moves with the
    whole course, not with the part the fit extrapolates before t₁. Scale- and offset-free.
    t₁ for a rise complete before t₁ (σ₁ = 1 in floating point). ``m`` and ``w`` may be
    arrays (broadcast); a float for scalars."""
    m_arr, w_arr = np.asarray(m, float), np.asarray(w, float)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        s1 = 1.0 / (1.0 + np.exp(-(t1 - m_arr) / w_arr))
        u = s1 + fraction * (1.0 - s1)
        out = np.where(u >= 1.0, t1, m_arr + w_arr * np.log(u / (1.0 - u)))
    return float(out) if out.ndim == 0 else out


def _left_bound(
    t: np.ndarray,
    y: np.ndarray,
    ok: np.ndarray,
    m: float,
    w: float,
    a: float,
    b: float,
    fraction: float,
) -> float:
    """Upper bound of an onset before the second evaluation (y oriented to rise).

    The onset is where the curve reaches ℓ = y₁ + f(P − y₁), y₁ = b + a·σ((t₁ − m)/w) the
    fitted level at the first evaluation and P = b + a the observed plateau. The onset lies at
    or before the evaluation after the last one with y < ℓ (noise can only delay that
    evaluation: the bound errs late)."""
    i0 = int(np.flatnonzero(ok)[0])
    y1 = b + a / (1.0 + math.exp(-(t[i0] - m) / w))
    level = y1 + fraction * (b + a - y1)
    below = np.flatnonzero(ok & (y < level))
    if not below.size:
        return float(t[i0])
    return float(t[min(int(below[-1]) + 1, t.size - 1)])


def _right_bound(
    t: np.ndarray,
    y: np.ndarray,
    ok: np.ndarray,
    m: float,
    w: float,
    a: float,
    b: float,
    fraction: float,
    origin: float,
) -> float:
    """Lower bound of a rise still under way at the last evaluation (y oriented to rise).

    The eventual change from the first level y₁ = b + a·σ((t₁ − m)/w) is at least what the fit
    has reached, y_T − y₁ with y_T = b + a·σ((t_T − m)/w), so the level at fraction f of the
    eventual change is at least ℓ = y₁ + f(y_T − y₁). The onset lies after the evaluation
    before the first one with y >= ℓ (noise can only bring that evaluation forward: the bound
    errs early)."""
    first, last = int(np.flatnonzero(ok)[0]), int(np.flatnonzero(ok)[-1])
    y1 = b + a / (1.0 + math.exp(-(t[first] - m) / w))
    y_end = b + a / (1.0 + math.exp(-(t[last] - m) / w))
    level = y1 + fraction * (y_end - y1)
    above = np.flatnonzero(ok & (y >= level))
    if not above.size or above[0] == 0:
        return origin
    return float(t[int(above[0]) - 1])


def timing_onset(epochs: Any, values: Any, **kwargs: Any) -> TimingOnset:
    """:func:`timing_onsets` of a single curve, shape (T,)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"timing_onset(): values must have shape (T,), but got {x.shape}.")
    return timing_onsets(epochs, x[None, :], **kwargs)[0]


def confirm_online(epochs: Any, history: Any, **kwargs: Any) -> np.ndarray:
    """Which seeds' timing onsets are decided now, from the history so far only.

    For a training loop that acts at a metric's onset (e.g. switches a penalty off): call it
    after every evaluation with the epochs evaluated so far, shape (k,), and the metric's
    values of S seeds, shape (S, k). A seed is decided when its onset is confirmed and the
    bounded window after the confirmation has been observed (``decided_at <= epochs[-1]``);
    the onset itself is ``timing_onsets(epochs, history)[s]``, the value the offline analysis
    reports for the whole run. Fewer than 3 evaluations decide nothing.

    Returns:
        bool array, shape (S,).
    """
    t = np.asarray(epochs, dtype=float)
    h = np.asarray(history, dtype=float)
    if h.ndim == 1:
        h = h[None, :]
    if t.ndim != 1 or h.ndim != 2 or h.shape[1] != t.size:
        raise ValueError(
            f"confirm_online(): epochs must have shape (k,) and history (S, k), "
            f"but got epochs {t.shape} and history {h.shape}."
        )
    if t.size < 3:
        return np.zeros(h.shape[0], dtype=bool)
    ons = timing_onsets(t, h, **kwargs)
    return np.array([o.emerged and o.complete for o in ons], dtype=bool)


def regular_step(epochs: Any) -> float:
    """The regular evaluation interval of a schedule: the median spacing of its later half.

    A schedule dense early (every epoch for the first tens, then every 25) has regular step 25;
    a regular schedule has its spacing. Widths, leads and margins "in evaluations" are in this
    unit. 1 for fewer than two evaluations.
    """
    t = np.asarray(epochs, dtype=float)
    if t.size < 2:
        return 1.0
    d = np.diff(t)
    return float(np.median(d[d.size // 2 :]))


# -- the per-seed onset columns of seeds.parquet (docs/run-data.md, "Onsets") ---------------

STEP_COLUMN = "onset.step"  # the schedule's regular evaluation interval (epochs)
RULE_COLUMN = "onset.rule"  # the version of the onset rule that computed the columns
# 3: half-way from the level at the first evaluation to the plateau, rises under way at t₁ of
# any width in the grid, resolved at 88 % of the change from t₁, the window refitted until it
# holds 4 scales, the reported fit itself resolved, evidence 16 (docs/timing.md); 2: the same
# without the rises under way at t₁ and the held check (one study only, timing-grid-cpu's
# training-time columns); 1 (no column): the logistic's half-rise, the baseline required,
# window 4 scales, evidence 9
ONSET_RULE = 3
# per metric: onset.<m> (the estimate, NaN unless status is "onset"), then onset.<m>.<field>
ONSET_FIELDS = ("status", "lo", "hi", "decided_at", "detectable_from")
LAG_FIELDS = ("lo", "hi")  # per structure measure s: lag.<s>.lo / .hi, bounds of t_s − t_func


def onset_column(metric: str, field: str | None = None) -> str:
    """``onset.<metric>`` (the estimate) or ``onset.<metric>.<field>``, a field of
    :data:`ONSET_FIELDS`."""
    if field is not None and field not in ONSET_FIELDS:
        raise ValueError(
            f"onset_column(): field must be one of {ONSET_FIELDS}, but got {field!r}."
        )
    return f"onset.{metric}" if field is None else f"onset.{metric}.{field}"


def lag_column(struct: str, bound: str) -> str:
    """``lag.<struct>.lo`` or ``.hi``: a bound of the lag t_struct − t_func (epochs)."""
    if bound not in LAG_FIELDS:
        raise ValueError(f"lag_column(): bound must be 'lo' or 'hi', but got {bound!r}.")
    return f"lag.{struct}.{bound}"


def _structures(structures: Any) -> tuple[tuple[str, int], ...]:
    """(metric, direction) pairs of TIMING_STRUCTURE-like entries (a label may follow)."""
    return tuple((str(s[0]), int(s[1])) for s in structures)


def seed_onset_columns(
    func: str = TIMING_FUNCTION, structures: Any = TIMING_STRUCTURE
) -> tuple[str, ...]:
    """Every column :func:`seed_onsets` adds, in order (``seed`` excluded)."""
    cols = [STEP_COLUMN, RULE_COLUMN]
    for m in (func, *(s for s, _ in _structures(structures))):
        cols += [onset_column(m), *(onset_column(m, f) for f in ONSET_FIELDS)]
    for s, _ in _structures(structures):
        cols += [lag_column(s, b) for b in LAG_FIELDS]
    return tuple(cols)


def seed_onsets(
    curves: pd.DataFrame,
    *,
    func: str = TIMING_FUNCTION,
    structures: Any = TIMING_STRUCTURE,
    threshold: float = DETECT_Z,
    run: int = DETECT_RUN,
) -> pd.DataFrame:
    """Every seed's timing onsets of the functional and each structural curve, one row per seed.

    Columns (:func:`seed_onset_columns`): ``seed``; ``onset.step``, the regular evaluation
    interval (:func:`regular_step`); ``onset.rule``, :data:`ONSET_RULE`; per metric m
    (``func``, then each structure measure): ``onset.<m>`` (the timing onset's epoch, NaN
    unless the status is ``onset``), ``onset.<m>.status`` (:data:`STATUSES`; None when the run
    has no such curve), ``.lo`` and ``.hi`` (the interval the onset lies in; hi = inf when
    right-censored), ``.decided_at`` (the last evaluation the onset uses, NaN if never decided)
    and ``.detectable_from`` (the detection onset, z >= ``threshold`` for ``run`` evaluations;
    NaN if never); per structure measure s: ``lag.<s>.lo`` and ``lag.<s>.hi``, bounds of t_s −
    t_func (epochs; > 0: function first). A metric absent from the curves gives NaN (status
    None) columns; a seed with fewer than 3 evaluations gets NaN everywhere.

    Args:
        curves: one trial's curves: one row per (seed, evaluation) with ``seed``, ``epoch`` and
            the metric columns.
        func: the functional curve; structures: (metric, direction[, label]) of each structural
            one (default :data:`study.contract.names.TIMING_STRUCTURE`).
        threshold, run: the detection rule (``emergence.z``, ``emergence.run``).
    """
    import pandas as pd

    structs = _structures(structures)
    metrics = [(func, 1), *structs]
    cols = seed_onset_columns(func, structs)
    order = curves.sort_values("epoch", kind="stable")
    seeds = [(key, g) for key, g in order.groupby("seed", sort=True)]
    out: dict[str, list[Any]] = {"seed": [k for k, _ in seeds]}
    out.update({c: [math.nan] * len(seeds) for c in cols})
    for c in cols:
        if c.endswith(".status"):
            out[c] = [None] * len(seeds)
    by_sched: dict[tuple[float, ...], list[int]] = {}
    for i, (_, g) in enumerate(seeds):
        t = g["epoch"].to_numpy(float)
        if t.size >= 3 and np.all(np.diff(t) > 0):
            by_sched.setdefault(tuple(t.tolist()), []).append(i)
    for sched, idx in by_sched.items():
        t = np.asarray(sched)
        for i in idx:
            out[STEP_COLUMN][i] = regular_step(t)
            out[RULE_COLUMN][i] = ONSET_RULE
        found: dict[str, list[TimingOnset]] = {}
        for m, direction in metrics:
            if m not in curves.columns:
                continue
            x = np.stack([seeds[i][1][m].to_numpy(float) for i in idx])
            ons = timing_onsets(t, x, direction=direction, threshold=threshold, run=run)
            found[m] = ons
            for i, o in zip(idx, ons):
                out[onset_column(m)][i] = o.epoch
                out[onset_column(m, "status")][i] = o.status
                for f in ONSET_FIELDS[1:]:
                    out[onset_column(m, f)][i] = getattr(o, f)
        if func not in found:
            continue
        for s, _ in structs:
            for j, i in enumerate(idx):
                if s in found:
                    f, g = found[func][j], found[s][j]
                    out[lag_column(s, "lo")][i] = g.lo - f.hi
                    out[lag_column(s, "hi")][i] = g.hi - f.lo
    return pd.DataFrame(out, columns=["seed", *cols])
