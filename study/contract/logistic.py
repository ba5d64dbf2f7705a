"""Least-squares fits of a logistic rise to the evaluations of one or many curves.

Model of one curve x at evaluation epochs t_1 < … < t_T (possibly irregular):

    x_i = b + a · σ((t_i − m) / w) + e_i,      σ(u) = 1 / (1 + e^(−u)),

with baseline b, amplitude a (its sign is the direction of the rise), midpoint m and scale
w > 0 (the 10–90 % rise takes 2 · ln 9 · w ≈ 4.4 w). For fixed (m, w) the model is linear in
(b, a), so the least-squares (b, a) and the residual sum of squares have a closed form. With
s_i = σ((t_i − m) / w) over the n evaluations used:

    S_xs = Σ (x_i − x̄)(s_i − s̄),   S_ss = Σ (s_i − s̄)²,   S_xx = Σ (x_i − x̄)²,
    â = S_xs / S_ss,   b̂ = x̄ − â s̄,   RSS(m, w) = S_xx − S_xs² / S_ss.

(m, w) is chosen on a grid (:func:`make_grid`) by maximising the explained sum S_xs² / S_ss
among the grid points whose â has the declared sign, then refined by parabolic steps
(:func:`refine`). Scaling x by c > 0 or adding a constant leaves (m̂, ŵ) unchanged exactly:
the fit is amplitude- and offset-invariant by construction.

The grid's scales are tied to the local evaluation spacing Δ(m) (the interval that contains m):
w = ω Δ(m) with ω on a log grid from ½ upward. A rise much sharper than the spacing is a step
whose midpoint anywhere inside the interval fits equally well; bounding ω below keeps m
identified by the evaluations on the rise (it is then estimated as the step's centre).

Part of the run-data contract (``study.contract``): the timing onsets of :mod:`.rise` are built
on these fits, and both the training side (seeds.parquet, online decisions) and ``analysis``
use them. Pure NumPy (threadpoolctl, when installed, only limits BLAS threads); every function
is vectorised over a batch of curves that share one schedule.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Fit",
    "Grid",
    "fit_prefix",
    "grid_gains",
    "make_grid",
    "refine",
    "rss_at",
    "sigmoid",
    "single_thread_blas",
]

OMEGA_MIN = 0.5  # smallest grid scale in local evaluation spacings
OMEGA_RATIO = 1.5  # ratio of successive grid scales
PER_INTERVAL = 2  # grid midpoints per interval between evaluations
_EPS = 1e-12


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """Run the block with one BLAS thread: the grid fits are many small matrix products, for
    which threads only add contention (tenfold slower on a busy machine). A no-op without
    threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with the SciPy stack
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def sigmoid(u: np.ndarray) -> np.ndarray:
    """σ(u) = 1 / (1 + e^(−u)), computed as ½(1 + tanh(u/2)) (no overflow)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(u, float)))


def local_spacing(epochs: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Δ(m): the length of the evaluation interval (t_{i−1}, t_i] that contains m; the first
    interval for m <= t_1, the last one beyond the schedule; shape of ``m``. It uses no
    evaluation after m's interval, so a grid built on a prefix of the schedule agrees with the
    full schedule's grid on that prefix. 1 for a single evaluation."""
    t = np.asarray(epochs, float)
    if t.size < 2:
        return np.ones_like(np.asarray(m, float))
    d = np.diff(t)
    i = np.clip(np.searchsorted(t, m, side="left") - 1, 0, d.size - 1)
    return d[i]


@dataclass(frozen=True)
class Grid:
    """The (m, w) grid of a schedule: ``m``, ``w`` shape (G,), ``basis`` σ((t − m)/w) (G, T)."""

    epochs: np.ndarray
    m: np.ndarray
    w: np.ndarray
    basis: np.ndarray
    step_m: np.ndarray  # distance to the next grid midpoint (the parabolic step), (G,)


AHEAD = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # midpoints past the last evaluation, in its spacings
# rises under way at the first evaluation t₁: midpoints t₁ − c·w for these c, at every scale
# w = OMEGA_MIN · Δ₁ · OMEGA_RATIO^j, j < PRE_SCALES (Δ₁ the first spacing; 0.5 … 2·10⁴ Δ₁)
PRE_OFFSETS = (0.5, 1.0, 2.0, 3.0)
PRE_SCALES = 27


def make_grid(
    epochs: np.ndarray,
    *,
    ahead: bool = False,
    per_interval: int = PER_INTERVAL,
    omega_min: float = OMEGA_MIN,
    omega_ratio: float = OMEGA_RATIO,
) -> Grid:
    """The (m, w) grid of a schedule, built from that schedule only (causal).

    Midpoints: ``per_interval`` equally spaced points in every interval between evaluations,
    the last evaluation, one interval before the first (a rise already under way at the first
    evaluation), and with ``ahead`` the points t_T + Δ_T · {½, 1, 2, 4, 8, 16} (rises still to
    come: the alternatives against which a rise is called resolved). Scales: w = ω Δ(m),
    ω = omega_min · omega_ratio^j, up to w <= 2 · max(m − t_1, Δ(m)). Rises under way at t₁
    of any width: midpoints t₁ − c·w (c in :data:`PRE_OFFSETS`) at :data:`PRE_SCALES` scales
    from omega_min · Δ₁ (a slow rise that starts with training, up to an exponential approach
    from t₁). Everything depends on the epochs so far only.

    Args:
        epochs: the schedule (or its prefix so far), shape (T,), strictly increasing, T >= 2.
    """
    t = np.asarray(epochs, float)
    d = np.diff(t)
    if t.ndim != 1 or t.size < 2 or not np.all(d > 0) or not np.all(np.isfinite(t)):
        raise ValueError(
            f"make_grid(): epochs must be finite, strictly increasing and at "
            f"least 2, but got {t.tolist()}."
        )
    frac = np.arange(per_interval) / per_interval
    inner = (t[:-1, None] + frac[None, :] * d[:, None]).ravel()
    before = t[0] - d[0] + frac * d[0]
    m_pts = np.unique(np.concatenate([before, inner, t[-1:]]))
    step_m = np.diff(np.concatenate([m_pts, [m_pts[-1] + d[-1] / per_interval]]))
    if ahead:
        extra = t[-1] + d[-1] * np.asarray(AHEAD)
        m_pts = np.concatenate([m_pts, extra])
        step_m = np.concatenate([step_m, 0.5 * d[-1] * np.asarray(AHEAD)])
    delta = local_spacing(t, m_pts)
    cap = 2.0 * np.maximum(m_pts - t[0], delta)
    n_omega = np.maximum(
        1,
        np.floor(
            np.log(np.maximum(cap / (omega_min * delta), 1.0)) / math.log(omega_ratio)
        ).astype(int)
        + 1,
    )
    m_all = np.repeat(m_pts, n_omega)
    steps = np.repeat(step_m, n_omega)
    j = np.arange(m_all.size) - np.repeat(np.cumsum(n_omega) - n_omega, n_omega)
    w_all = omega_min * np.repeat(delta, n_omega) * omega_ratio**j
    # rises under way at t₁ (for any width: a slow rise that starts with training), from t₁
    # and Δ₁ only, so every prefix of the schedule has them
    w_pre = np.repeat(omega_min * d[0] * omega_ratio ** np.arange(PRE_SCALES), len(PRE_OFFSETS))
    c_pre = np.tile(np.asarray(PRE_OFFSETS), PRE_SCALES)
    m_all = np.concatenate([t[0] - c_pre * w_pre, m_all])
    w_all = np.concatenate([w_pre, w_all])
    steps = np.concatenate([0.5 * w_pre, steps])
    basis = sigmoid((t[None, :] - m_all[:, None]) / w_all[:, None])
    return Grid(t, m_all, w_all, basis, steps)


@dataclass(frozen=True)
class Fit:
    """Fitted logistic per curve, arrays of shape (A,): NaN where no fit with the declared sign
    exists (fewer than 3 evaluations, or a flat or opposite curve)."""

    m: np.ndarray
    w: np.ndarray
    a: np.ndarray
    b: np.ndarray
    rss: np.ndarray
    n: np.ndarray


def _moments(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n, Σx and Σ(x − x̄)² over the masked evaluations of each curve, shape (A,)."""
    n = mask.sum(1)
    xm = np.where(mask, x, 0.0)
    s1 = xm.sum(1)
    mean = s1 / np.maximum(n, 1)
    sxx = (np.where(mask, x - mean[:, None], 0.0) ** 2).sum(1)
    return n, s1, sxx


def grid_gains(
    x: np.ndarray, mask: np.ndarray, grid: Grid, k: int, direction: int, sel: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Explained sums S_xs² / S_ss of each curve at the grid points ``sel`` from its
    evaluations 0 … k: shape (A, len(sel)), 0 where the fitted â has the wrong sign or the
    basis is flat on the evaluations; also S_xx and n, shape (A,)."""
    B = grid.basis[sel, : k + 1]  # (G, K)
    mk = mask[:, : k + 1]
    xm = np.where(mk, x[:, : k + 1], 0.0)
    n, s1x, sxx = _moments(x[:, : k + 1], mk)
    nn = np.maximum(n, 1)[:, None]
    if mk.all():
        S1 = B.sum(1)
        sss = (B * B).sum(1) - S1 * S1 / (k + 1)
        inv = np.where(sss > 1e-9 * (k + 1), 1.0 / np.where(sss > 0, sss, 1.0), 0.0)[None, :]
        S1 = S1[None, :]
    else:
        mf = mk.astype(float)
        S1 = mf @ B.T
        sss = mf @ (B * B).T - S1 * S1 / nn
        inv = np.where(sss > 1e-9 * nn, 1.0 / np.where(sss > 0, sss, 1.0), 0.0)
    sxs = xm @ B.T
    sxs -= S1 * (s1x[:, None] / nn)
    if direction < 0:
        np.negative(sxs, out=sxs)
    np.maximum(sxs, 0.0, out=sxs)
    sxs *= sxs
    sxs *= inv
    return sxs, sxx, n


def fit_prefix(
    x: np.ndarray, mask: np.ndarray, grid: Grid, k: int, direction: int, m_max: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best grid (m, w) of each curve from its evaluations 0 … k only.

    Args:
        x: values, shape (A, T) (entries outside ``mask`` are ignored).
        mask: bool (A, T): the evaluations that count (finite, and within the curve's window).
        grid: :func:`make_grid` of the schedule.
        k: last evaluation index used.
        direction: +1 (a rise, â > 0) or −1 (a fall, â < 0).
        m_max: largest grid midpoint allowed; default the epoch of evaluation k.

    Returns:
        (index into the grid, shape (A,), −1 where no grid point fits with the declared sign;
        the explained sum S_xs² / S_ss at it; S_xx), each shape (A,).
    """
    t = grid.epochs
    m_max = float(t[k]) if m_max is None else float(m_max)
    sel = np.flatnonzero(grid.m <= m_max + _EPS)
    gain, sxx, n = grid_gains(x, mask, grid, k, direction, sel)
    best = np.argmax(gain, axis=1)
    g = gain[np.arange(gain.shape[0]), best]
    idx = np.where((g > 0) & (n >= 3), sel[best], -1)
    return idx, g, sxx


def rss_at(
    x: np.ndarray,
    mask: np.ndarray,
    epochs: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    direction: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RSS, â and b̂ of each curve at its own (m, w), shape (A,); RSS = S_xx (no rise) where the
    best â has the wrong sign."""
    t = np.asarray(epochs, float)
    s = sigmoid((t[None, :] - m[:, None]) / w[:, None])
    n, s1x, sxx = _moments(x, mask)
    nn = np.maximum(n, 1)
    sm = np.where(mask, s, 0.0)
    s1 = sm.sum(1)
    sss = (sm * sm).sum(1) - s1 * s1 / nn
    sxs = (np.where(mask, x, 0.0) * sm).sum(1) - s1 * s1x / nn
    ok = (sss > 1e-9 * nn) & (direction * sxs > 0)
    a = np.where(ok, sxs / np.where(ok, sss, 1.0), 0.0)
    rss = np.where(ok, sxx - a * sxs, sxx)
    b = (s1x - a * s1) / nn
    return rss, a, b


def _parabola_step(r_minus: np.ndarray, r0: np.ndarray, r_plus: np.ndarray) -> np.ndarray:
    """Vertex offset, in units of the step, of the parabola through (−1, r−), (0, r0), (1, r+);
    clipped to [−1, 1], 0 where the parabola is not convex."""
    curv = r_minus - 2.0 * r0 + r_plus
    off = np.where(curv > _EPS, 0.5 * (r_minus - r_plus) / np.where(curv > _EPS, curv, 1.0), 0.0)
    return np.clip(off, -1.0, 1.0)


def refine(
    x: np.ndarray,
    mask: np.ndarray,
    epochs: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    h_m: np.ndarray,
    direction: int,
    m_bounds: tuple[np.ndarray, np.ndarray],
    rounds: int = 4,
) -> Fit:
    """Refine grid estimates (m, w) by alternating parabolic steps in m and in log w.

    Each round fits a parabola to the RSS at m − h, m, m + h (then at w / r, w, w · r) and
    moves to its vertex when that lowers the RSS; h and log r halve every round. m stays within
    ``m_bounds`` (per curve) and w >= a quarter of the local spacing.

    Args:
        x, mask: (A, T) values and the evaluations that count.
        m, w: starting estimates, (A,); h_m: the starting m step, (A,).
        m_bounds: (lower, upper) bounds of m, each (A,).
    """
    m, w, h = m.astype(float).copy(), w.astype(float).copy(), h_m.astype(float).copy()
    log_r = math.log(OMEGA_RATIO)
    w_floor = 0.25 * local_spacing(epochs, m)
    lo, hi = m_bounds
    r0, _, _ = rss_at(x, mask, epochs, m, w, direction)
    for _ in range(rounds):
        rm, _, _ = rss_at(x, mask, epochs, np.clip(m - h, lo, hi), w, direction)
        rp, _, _ = rss_at(x, mask, epochs, np.clip(m + h, lo, hi), w, direction)
        cand = np.clip(m + _parabola_step(rm, r0, rp) * h, lo, hi)
        rc, _, _ = rss_at(x, mask, epochs, cand, w, direction)
        better = rc < r0
        m, r0 = np.where(better, cand, m), np.where(better, rc, r0)
        f = math.exp(log_r)
        rm, _, _ = rss_at(x, mask, epochs, m, np.maximum(w / f, w_floor), direction)
        rp, _, _ = rss_at(x, mask, epochs, m, w * f, direction)
        cand_w = np.maximum(w * np.exp(_parabola_step(rm, r0, rp) * log_r), w_floor)
        rc, _, _ = rss_at(x, mask, epochs, m, cand_w, direction)
        better = rc < r0
        w, r0 = np.where(better, cand_w, w), np.where(better, rc, r0)
        h, log_r = 0.5 * h, 0.5 * log_r
    rss, a, b = rss_at(x, mask, epochs, m, w, direction)
    return Fit(m, w, a, b, rss, mask.sum(1).astype(float))
