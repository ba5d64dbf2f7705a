"""Synthetic z-score curves with a known time course, and the parameters measured from real ones.

A simulated curve on epochs t_1 … t_T is

    x(t) = A · σ((t − m) / (W · Δ)) + e(t),

with amplitude A (z units), midpoint m (epochs), logistic scale W in evaluations of the
schedule's regular step Δ (:func:`study.contract.rise.regular_step`), and noise e: a
stationary Gaussian process with marginal sd σ_e and correlation ρ^(|t − t'| / Δ) between
evaluations (an AR(1) per regular step, sampled exactly on irregular epochs: successive
evaluations δ apart have correlation ρ^(δ/Δ)). ρ = 0 gives white noise.

:func:`measure_curve_params` estimates (A, W, σ_e, ρ) and the spread of the midpoints from a
study's own curves, so the calibration runs at the study's amplitudes, widths and noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from study.contract.logistic import fit_prefix, make_grid, refine
from study.contract.rise import FRACTION, regular_step, start_level_onset

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CurveParams",
    "MeasuredCurves",
    "ar_noise",
    "earliest_onset",
    "measure_curve_params",
    "midpoints_for_onsets",
    "simulate_curves",
]


@dataclass(frozen=True)
class CurveParams:
    """One metric's curve model: amplitude (z units), width (logistic scale, in regular
    evaluations), noise sd (marginal) and rho (lag-1 autocorrelation per regular step)."""

    amplitude: float
    width: float
    sd: float
    rho: float

    def __post_init__(self) -> None:
        vals = (self.amplitude, self.width, self.sd, self.rho)
        if (
            not all(math.isfinite(v) for v in vals)
            or self.width <= 0
            or self.sd < 0
            or not 0.0 <= self.rho < 1.0
        ):
            raise ValueError(
                f"CurveParams: amplitude must be finite, width > 0, sd >= 0 and "
                f"0 <= rho < 1, but got {self}."
            )

    def to_dict(self) -> dict[str, float]:
        """The four numbers, JSON-ready."""
        return asdict(self)


def ar_noise(
    rng: np.random.Generator, n: int, epochs: np.ndarray, sd: float, rho: float, step: float
) -> np.ndarray:
    """n independent noise paths on ``epochs``: marginal sd ``sd``, correlation
    ρ^(δ/step) between evaluations δ epochs apart, shape (n, T)."""
    t = np.asarray(epochs, float)
    e = rng.standard_normal((n, t.size))
    if rho <= 0.0:
        return sd * e
    phi = rho ** (np.diff(t) / step)  # per-interval autocorrelation
    out = np.empty_like(e)
    out[:, 0] = e[:, 0]
    for i in range(1, t.size):
        out[:, i] = phi[i - 1] * out[:, i - 1] + math.sqrt(1.0 - phi[i - 1] ** 2) * e[:, i]
    return sd * out


def earliest_onset(epochs: Any, params: CurveParams, fraction: float = FRACTION) -> float:
    """The earliest timing onset a rise of ``params``'s width can have on this schedule:
    t₁ + w·ln(1/(1 − f)), the limit of t_f(m) as m → −∞ (the rise then decays towards its
    plateau like an exponential of time constant w from t₁ on)."""
    t = np.asarray(epochs, float)
    return float(t[0] + params.width * regular_step(t) * math.log(1.0 / (1.0 - fraction)))


def midpoints_for_onsets(
    epochs: Any, params: CurveParams, onsets: Any, fraction: float = FRACTION
) -> np.ndarray:
    """The logistic midpoints m at which a rise of ``params``'s width has its timing onset
    (:func:`study.contract.rise.start_level_onset`: ``fraction`` of the way from its level at
    the first evaluation to its plateau) at ``onsets`` (epochs), shape (n,).

    t_f(m) = m + w·logit(σ₁ + f(1 − σ₁)), σ₁ = σ((t₁ − m)/w), increases with m (its slope is
    (1 − σ₁)/(1 + σ₁) at f = ½), so it is inverted by bisection. Two curves of different widths
    whose onsets are equal reach the same fraction of their own rise at the same epoch: "no
    lead" in the calibration. Onsets before :func:`earliest_onset` cannot be reached.

    Raises:
        ValueError: when an onset is before :func:`earliest_onset`.
    """
    t = np.asarray(epochs, float)
    tf = np.asarray(onsets, float).reshape(-1)
    first = earliest_onset(t, params, fraction)
    if tf.size and float(tf.min()) <= first:
        raise ValueError(
            f"midpoints_for_onsets(): a rise of width {params.width:g} evaluations cannot have "
            f"its timing onset before epoch {first:g}, but {float(tf.min()):g} was asked."
        )
    w = params.width * regular_step(t)
    t1 = float(t[0])
    base = w * math.log(fraction / (1.0 - fraction))
    lo = tf - base - 60.0 * w  # t_f(lo) < tf (σ₁ ≈ 1 puts t_f near t₁ at most)
    hi = tf - base + 1e-9  # t_f(m) <= m + w·logit(f)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = start_level_onset(t1, mid, w, fraction) < tf
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def simulate_curves(
    rng: np.random.Generator, epochs: Any, params: CurveParams, midpoints: Any
) -> np.ndarray:
    """Curves that start at 0 at the first evaluation t₁ and rise by A to their plateau along a
    logistic of midpoint m (epochs) and scale W·Δ, plus noise, one per midpoint, shape
    (len(m), T): A·(σ((t − m)/(WΔ)) − σ₁)/(1 − σ₁), σ₁ = σ((t₁ − m)/(WΔ)). With the baseline
    before the rise (σ₁ ≈ 0) this is A·σ((t − m)/(WΔ)); a midpoint well before t₁ gives an
    exponential approach from t₁. Like a modularity z-score, every curve starts at its null
    level, and A is the change training makes. (:func:`midpoints_for_onsets` turns timing
    onsets into midpoints.)"""
    t = np.asarray(epochs, float)
    m = np.asarray(midpoints, float).reshape(-1)
    step = regular_step(t)
    scale = params.width * step
    sig = 0.5 * (1.0 + np.tanh(0.5 * (t[None, :] - m[:, None]) / scale))
    s1 = 0.5 * (1.0 + np.tanh(0.5 * (t[0] - m[:, None]) / scale))
    course = params.amplitude * (sig - s1) / np.maximum(1.0 - s1, 1e-12)
    return course + ar_noise(rng, m.size, t, params.sd, params.rho, step)


@dataclass(frozen=True)
class MeasuredCurves:
    """What :func:`measure_curve_params` measured: the model, the midpoints' 10th and 90th
    percentiles (epochs), and the seeds it used (a rise was fitted)."""

    params: CurveParams
    onset_range: tuple[float, float]
    n_seeds: int


def measure_curve_params(
    curves: pd.DataFrame, column: str, *, direction: int = 1, by: Sequence[str] = ()
) -> MeasuredCurves:
    """Estimate a metric's amplitude, width, noise and autocorrelation from a study's curves.

    Each seed's curve (rows of ``curves`` with ``seed``, ``epoch`` and ``column``; a ``trial_id``
    column, when present, and the cell columns ``by`` are part of the seed's key) is fitted by
    least squares with the logistic of :mod:`study.contract.logistic` on all its evaluations.
    Amplitude, width (in regular evaluations) and midpoint are the medians over seeds with a fitted
    rise in the declared direction. The noise is measured on the residuals r of those fits: sd =
    the pooled root-mean-square residual, rho = the pooled lag-1 autocorrelation of residuals
    between evaluations exactly one regular step apart, clipped to [0, 0.99].

    Raises:
        ValueError: when the column is missing or no seed has a fitted rise.
    """
    keys = [*by, *(k for k in ("trial_id", "seed") if k in curves.columns)]
    need = ["seed", "epoch", column, *by]
    if any(c not in curves.columns for c in need):
        raise ValueError(
            f"measure_curve_params(): curves must have columns {need}, but got "
            f"{list(curves.columns)}."
        )
    amps, widths, mids = [], [], []
    ss = num = den = 0.0
    n_res = 0
    for key, g in curves.sort_values("epoch", kind="stable").groupby(keys, sort=True):
        t = g["epoch"].to_numpy(float)
        x = g[column].to_numpy(float)
        ok = np.isfinite(x)
        if ok.sum() < 5:
            continue
        t, x = t[ok], x[ok]
        if not np.all(np.diff(t) > 0):
            raise ValueError(
                f"measure_curve_params(): each seed's epochs must be strictly "
                f"increasing; seed {key!r} repeats an epoch (is a cell column "
                f"missing from by={list(by)}?)."
            )
        grid = make_grid(t)
        mask = np.ones((1, t.size), dtype=bool)
        idx, _, _ = fit_prefix(x[None, :], mask, grid, t.size - 1, direction)
        if idx[0] < 0:
            continue
        f = refine(
            x[None, :],
            mask,
            t,
            grid.m[idx],
            grid.w[idx],
            0.5 * grid.step_m[idx],
            direction,
            (np.array([grid.m.min()]), t[-1:].copy()),
        )
        step = regular_step(t)
        s1 = 0.5 * (1.0 + math.tanh(0.5 * (t[0] - float(f.m[0])) / float(f.w[0])))
        amps.append(abs(float(f.a[0])) * (1.0 - s1))  # the change from the first level
        widths.append(float(f.w[0]) / step)
        mids.append(start_level_onset(float(t[0]), float(f.m[0]), float(f.w[0])))
        r = x - (f.b[0] + f.a[0] * 0.5 * (1.0 + np.tanh(0.5 * (t - f.m[0]) / f.w[0])))
        ss += float(r @ r)
        n_res += r.size
        pair = np.isclose(np.diff(t), step)
        num += float((r[1:] * r[:-1])[pair].sum())
        den += float((0.5 * (r[1:] ** 2 + r[:-1] ** 2))[pair].sum())
    if not amps:
        raise ValueError(
            f"measure_curve_params(): no seed of {column!r} has a fitted rise "
            f"(direction {direction:+d}) to measure."
        )
    rho = float(np.clip(num / den, 0.0, 0.99)) if den > 0 else 0.0
    params = CurveParams(
        float(np.median(amps)), float(np.median(widths)), math.sqrt(ss / max(n_res, 1)), rho
    )
    lo, hi = np.percentile(mids, [10, 90])
    return MeasuredCurves(params, (float(lo), float(hi)), len(amps))
