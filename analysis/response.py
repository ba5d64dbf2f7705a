"""Response of the claims' metrics and the onsets to continuous keys: the adaptive-search view.

When a study is not a full grid (:func:`study_design` states the rule), its trials are points in
a continuous space rather than cells. This module gives, per key, the response of each metric
with a LOWESS fit and a bootstrap band (:func:`response_info`), contours over pairs of keys
(:func:`contour_info`), the λ → 0 limit of a metric with its CI (:func:`limit_info`), declared
bins of a key (:func:`bin_key`) and claims judged per bin against that limit
(:func:`binned_claims`). Conventions: the unit of every fit and bootstrap is the *trial* (its
mean over seeds), never the seed, since seeds of one trial share its hyperparameters; a key is
drawn on a log axis when :func:`log_scale` says so, and then its zero values (λ = 0 controls)
are shown apart, never dropped silently.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.claims import CLAIMS, CLEAR_Z, _column
from analysis.emergence import ALPHA
from analysis.figures import _figure
from analysis.matrix import CLAIM_TITLES, KEY_SYMBOLS
from analysis.tables import format_number
from study.contract.outcomes import SUCCESS_THRESHOLD
from study.contract.params import PARAM_MI_WEIGHT as LAMBDA

__all__ = [
    "Binning",
    "ContourInfo",
    "Design",
    "LimitInfo",
    "ResponseInfo",
    "assign_bins",
    "bin_key",
    "binned_claims",
    "claim_metric",
    "contour_info",
    "limit_info",
    "log_scale",
    "plot_contour",
    "plot_response",
    "response_info",
    "study_design",
    "trial_means",
]

MAX_LEVELS = 8  # a numeric key with more distinct values is continuous
MIN_FILL = 0.5  # a grid with fewer of its combinations present is sparse
LOG_SPAN = 20.0  # positive values spanning more than this factor go on a log axis
MIN_DISTINCT = 4  # distinct key values a smooth fit needs
ACCURACY_MARGIN = 0.02  # equivalence margin of "accuracy kept" (final task metric)


class Design(NamedTuple):
    """Whether a study is a grid or an adaptive search, and which keys are continuous."""

    kind: str  # "grid" (cells are combinations of key values) or "adaptive"
    continuous: list[str]  # keys shown as response curves, in the given order
    levels: dict[str, int]  # distinct values per key
    fill: float  # observed combinations / product of the levels (1 for a full grid)
    reason: str  # one sentence: why this kind


def study_design(
    trials: pd.DataFrame,
    keys: Sequence[str],
    *,
    max_levels: int = MAX_LEVELS,
    min_fill: float = MIN_FILL,
) -> Design:
    """Grid or adaptive: the rule that decides whether claims are judged per cell or per bin.

    A numeric key with more than `max_levels` distinct values is continuous, and then the
    study is adaptive. Otherwise the study is a grid when at least `min_fill` of the
    combinations of the key levels hold a trial, else a sparse grid, also adaptive; then every
    numeric key with at least :data:`MIN_DISTINCT` values gets a response curve.

    Args:
        trials: one row per trial (or per seed; duplicates of a trial count once) with the keys.
        keys: the swept keys (columns of `trials`; absent ones are ignored).
    """
    keys = [k for k in keys if k in trials.columns]
    rows = trials.drop_duplicates("trial_id") if "trial_id" in trials else trials
    levels = {k: int(rows[k].nunique(dropna=True)) for k in keys}
    numeric = [k for k in keys if _numeric(rows[k])]
    n_combos = len(rows[keys].drop_duplicates()) if keys and len(rows) else 0
    full = math.prod(levels.values()) if keys else 0
    fill = n_combos / full if full else 1.0
    wide = [k for k in numeric if levels[k] > max_levels]
    if wide:
        return Design(
            "adaptive",
            wide + [k for k in numeric if k not in wide and levels[k] >= MIN_DISTINCT],
            levels,
            fill,
            f"{', '.join(wide)} take more than {max_levels} values.",
        )
    if fill < min_fill:
        return Design(
            "adaptive",
            [k for k in numeric if levels[k] >= MIN_DISTINCT],
            levels,
            fill,
            f"only {n_combos} of the {full} combinations of the key levels "
            f"hold a trial (< {min_fill:.0%}).",
        )
    return Design(
        "grid",
        [],
        levels,
        fill,
        f"{n_combos} of the {full} combinations of the key levels hold a trial.",
    )


def _numeric(col: pd.Series) -> bool:
    num = pd.to_numeric(col, errors="coerce")
    return bool(num.notna().any()) and int(num.notna().sum()) == int(col.notna().sum())


def log_scale(values: Any) -> bool:
    """Whether values go on a log axis: none negative, the positive ones span more than
    :data:`LOG_SPAN`, and their median sits nearer (in log) to the geometric than to the
    arithmetic middle of their range, as for a log-uniform sampler or a log-spaced grid and
    not for a uniform one. Zeros are allowed: they are shown apart."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    pos = v[v > 0]
    if len(pos) < 2 or (v < 0).any() or pos.max() / pos.min() <= LOG_SPAN:
        return False
    lo, hi, med = math.log(pos.min()), math.log(pos.max()), math.log(float(np.median(pos)))
    return abs(med - (lo + hi) / 2) < abs(med - math.log((pos.min() + pos.max()) / 2))


def claim_metric(seeds: pd.DataFrame, name: str, task_metric: str = "accuracy") -> np.ndarray:
    """Per-seed values of a claim's metric (analysis.claims.CLAIMS: ``accuracy`` reads
    ``final.<task_metric>``, ``mi`` the held-out MI excess over its null), or of any column."""
    claim = next((c for c in CLAIMS if c.name == name), None)
    if claim is not None:
        return _column(seeds, claim, task_metric)
    if name not in seeds:
        return np.full(len(seeds), math.nan)
    return pd.to_numeric(seeds[name], errors="coerce").to_numpy(float)


def trial_means(
    seeds: pd.DataFrame, keys: Sequence[str], metric: str, *, task_metric: str = "accuracy"
) -> pd.DataFrame:
    """One row per trial: its key values, ``y`` (mean of the metric over its seeds with a
    finite value), ``n`` (those seeds) and ``n_seeds``; trials with no finite value dropped.

    Without a ``trial_id`` column every row is its own trial.
    """
    ids = (
        seeds["trial_id"]
        if "trial_id" in seeds
        else pd.Series(range(len(seeds)), index=seeds.index)
    )
    frame = pd.DataFrame(
        {"trial_id": ids.to_numpy(), "y": claim_metric(seeds, metric, task_metric)},
        index=seeds.index,
    )
    for k in keys:
        frame[k] = seeds[k].to_numpy()
    g = frame.groupby("trial_id", sort=True)
    out = g[list(keys)].first()
    out["y"] = g["y"].mean()
    out["n"] = g["y"].count()
    out["n_seeds"] = g.size()
    return out[out["n"] > 0].reset_index()


def _resample(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) trial indices drawn with replacement: the trial bootstrap."""
    return rng.integers(0, n, size=(n_boot, n))


class ResponseInfo(NamedTuple):
    """A metric against one key: points, LOWESS fit and bootstrap band (trials resampled)."""

    key: str
    metric: str
    column: str  # what the metric reads, e.g. "final.q_func_z" for "functional"
    log: bool  # x on a log axis; then trials at x = 0 are in `zero`, apart from the fit
    points: pd.DataFrame  # per trial: trial_id, x, y (mean over seeds), n (seeds with a value)
    grid: np.ndarray  # (G,) x values of the fit, original units
    fit: np.ndarray  # (G,) LOWESS of the trial means
    lo: np.ndarray  # (G,) lower band (percentile bootstrap over trials)
    hi: np.ndarray  # (G,) upper band
    zero: tuple[float, float, float, int] | None  # x = 0 trials on a log axis: mean, t-CI, n
    level: float  # band level, e.g. 0.95
    frac: float  # LOWESS span (fraction of trials per local fit)
    n_seeds: int  # seeds in the trials shown
    n_defined: int  # of them with a finite metric (onsets: seeds that emerged)
    message: str  # why no fit is drawn ("" when there is one)


def response_info(
    seeds: pd.DataFrame,
    key: str,
    metric: str,
    *,
    task_metric: str = "accuracy",
    log: bool | None = None,
    frac: float = 0.6,
    n_boot: int = 200,
    level: float = 0.95,
    n_grid: int = 50,
    rng: np.random.Generator | None = None,
) -> ResponseInfo:
    """The response of `metric` to `key`: trial means, their LOWESS and its bootstrap band.

    The fit is LOWESS (statsmodels, one robustness iteration) of the trial means against the
    key (log10 of it on a log axis), span `frac` (raised so each local fit spans at least
    three distinct key values); the band is the percentile interval of the fit over `n_boot`
    resamples of the trials. Other swept keys are pooled (the marginal response).

    Args:
        seeds: one row per seed with ``trial_id``, `key` and the metric's column(s).
        key: the swept key on the x axis.
        metric: a claim name (``accuracy``, ``functional``, ``structural``, ``mi``) or a column
            (``final.q_func_z``, ``t_func``: NaN where the seed did not emerge).
        log: log axis; default :func:`log_scale` of the key's values.
        rng: generator of the bootstrap; default ``np.random.default_rng(0)``.

    Returns:
        The :class:`ResponseInfo`; fewer than :data:`MIN_DISTINCT` distinct key values (or no
        data) give the points without a fit and a `message`.
    """
    if key not in seeds.columns:
        raise ValueError(
            f"response_info(): key {key!r} must be a column of seeds, but the "
            f"columns are {sorted(map(str, seeds.columns))}."
        )
    rng = np.random.default_rng(0) if rng is None else rng
    t = trial_means(seeds, [key], metric, task_metric=task_metric)
    t["x"] = pd.to_numeric(t[key], errors="coerce")
    t = t[np.isfinite(t["x"].to_numpy(float))]
    log = log_scale(t["x"]) if log is None else log
    at_zero = t["x"].to_numpy(float) <= 0 if log else np.zeros(len(t), bool)
    zero = _mean_ci(t.loc[at_zero, "y"].to_numpy(float), level) if at_zero.any() else None
    body = t[~at_zero]
    points = t[["trial_id", "x", "y", "n"]].reset_index(drop=True)
    n_seeds = int(seeds[seeds[key].notna()].shape[0])
    n_def = int(points["n"].sum())
    empty = np.array([])
    u = np.log10(body["x"].to_numpy(float)) if log else body["x"].to_numpy(float)
    y = body["y"].to_numpy(float)
    if np.unique(u).size < MIN_DISTINCT:
        msg = (
            f"{metric} against {key}: no seed has a value."
            if not len(points)
            else f"{metric} against {key}: {np.unique(u).size} distinct value(s) with data, a "
            f"smooth fit needs {MIN_DISTINCT}."
        )
        return ResponseInfo(
            key,
            metric,
            _metric_label(metric, task_metric),
            log,
            points,
            empty,
            empty,
            empty,
            empty,
            zero,
            level,
            frac,
            n_seeds,
            n_def,
            msg,
        )
    frac = _span(u, frac)
    ug = np.linspace(u.min(), u.max(), n_grid)
    fit = _lowess(y, u, ug, frac)
    boots = np.array([_lowess(y[i], u[i], ug, frac) for i in _resample(len(u), n_boot, rng)])
    lo, hi = _band(boots, level)
    grid = 10**ug if log else ug
    return ResponseInfo(
        key,
        metric,
        _metric_label(metric, task_metric),
        log,
        points,
        grid,
        fit,
        lo,
        hi,
        zero,
        level,
        frac,
        n_seeds,
        n_def,
        "",
    )


def _span(u: np.ndarray, frac: float) -> float:
    """LOWESS span raised so that a local fit reaches three distinct values despite ties."""
    _, counts = np.unique(u, return_counts=True)
    need = np.sort(counts)[-3:].sum() / len(u)
    return float(min(1.0, max(frac, need)))


def _lowess(y: np.ndarray, u: np.ndarray, at: np.ndarray, frac: float) -> np.ndarray:
    """LOWESS of y on u evaluated at `at` (NaN where a resample cannot fit)."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    if np.unique(u).size < 3:
        return np.full(len(at), math.nan)
    with np.errstate(all="ignore"):
        out = lowess(y, u, frac=frac, it=1, xvals=at)
    # a resample never extrapolates: outside its own range the fit is undefined
    out[(at < u.min()) | (at > u.max())] = math.nan
    return out


def _band(boots: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile band of bootstrap fits (B, G); NaN where under half the resamples fit."""
    ok = np.isfinite(boots).mean(axis=0) >= 0.5
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    with np.errstate(all="ignore"):
        lo, hi = (
            np.nanpercentile(np.where(ok, boots, 0.0), q, axis=0)
            if boots.size
            else (np.array([]), np.array([]))
        )
    return np.where(ok, lo, math.nan), np.where(ok, hi, math.nan)


def _mean_ci(y: np.ndarray, level: float) -> tuple[float, float, float, int]:
    """Mean of trial values with its t-interval (NaN bounds for one trial), and the count."""
    m = len(y)
    if m == 1:
        return float(y[0]), math.nan, math.nan, 1
    half = _t_quantile(m - 1, level) * float(np.std(y, ddof=1)) / math.sqrt(m)
    return float(y.mean()), float(y.mean() - half), float(y.mean() + half), m


class LimitInfo(NamedTuple):
    """A metric's λ → 0 limit, extrapolated from the smallest positive λ."""

    key: str
    metric: str
    estimate: float  # the fitted line at key = 0
    lo: float  # t-interval over the window's trials
    hi: float
    level: float
    window: float  # the largest key value in the fit
    n_trials: int  # trials in the fit
    observed: float  # mean of the trials at key = 0 (a check), NaN without any
    n_observed: int
    method: str  # one sentence for the report
    message: str  # why there is no estimate ("" when there is one)


def limit_info(
    seeds: pd.DataFrame,
    metric: str,
    *,
    key: str = LAMBDA,
    task_metric: str = "accuracy",
    frac: float = 0.3,
    level: float = 0.95,
) -> LimitInfo:
    """The metric's limit as the key → 0, so claims can be judged without a key = 0 cell.

    A straight line (least squares) through the trial means of the trials with the smallest
    positive key values (the lowest `frac` of them, at least four trials on three distinct
    values), evaluated at 0, with the t-interval of that intercept (n − 2 degrees of freedom;
    trials are the independent units). It assumes the response is linear in the key over
    that window, which is short when the key is sampled log-uniformly. Trials at key = 0 are
    left out of the fit and reported as ``observed``, a check of the extrapolation.

    A trial bootstrap is not used here: a resample can lose the window's spread in the key
    and extrapolate without bound, and with a window of four trials its percentile interval
    covered 73 % at a 95 % level in simulation (this t-interval: 94 %).

    Returns:
        The :class:`LimitInfo`; too few trials give NaN and a `message`.
    """
    if key not in seeds.columns:
        raise ValueError(
            f"limit_info(): key {key!r} must be a column of seeds, but the "
            f"columns are {sorted(map(str, seeds.columns))}."
        )
    t = trial_means(seeds, [key], metric, task_metric=task_metric)
    x, y = pd.to_numeric(t[key], errors="coerce").to_numpy(float), t["y"].to_numpy(float)
    obs = y[x == 0]
    observed, n_obs = (float(obs.mean()), len(obs)) if len(obs) else (math.nan, 0)
    win = _window(x, frac)
    nan = math.nan
    if win is None:
        msg = (
            f"λ → 0 limit of {metric}: needs four trials at three or more positive values "
            f"of {key}, got {int((x > 0).sum())} at {int(np.unique(x[x > 0]).size)}."
        )
        return LimitInfo(key, metric, nan, nan, nan, level, nan, 0, observed, n_obs, "", msg)
    est, se, df = _contrast(y, x, win, _limit_weights(x, win), {})
    half = _t_quantile(df, level) * se
    xw = x[win]
    method = (
        f"line through the {len(xw)} trials with {key} ≤ {xw.max():.3g}, evaluated at "
        f"0; {level:.0%} t-interval ({df:.0f} df)"
    )
    return LimitInfo(
        key,
        metric,
        est,
        est - half,
        est + half,
        level,
        float(xw.max()),
        len(xw),
        observed,
        n_obs,
        method,
        "",
    )


def _window(x: np.ndarray, frac: float) -> np.ndarray | None:
    """Mask of the trials with the smallest positive x: the lowest `frac`, widened to at
    least four trials on three distinct values; None when that cannot be had."""
    pos = np.sort(x[x > 0])
    distinct = np.unique(pos)
    if distinct.size < 3 or len(pos) < 4:
        return None
    k = max(4, math.ceil(frac * len(pos)))
    edge = max(pos[k - 1], distinct[2])
    return (x > 0) & (x <= edge)


def _limit_weights(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Weights a with Σ a_i y_i = the least-squares intercept of the window trials (0 outside):
    a_i = 1/n − x̄ (x_i − x̄) / Sxx."""
    xw = x[win]
    xm = xw.mean()
    a = np.zeros(len(x))
    a[win] = 1 / len(xw) - xm * (xw - xm) / ((xw - xm) ** 2).sum()
    return a


def _contrast(
    y: np.ndarray, x: np.ndarray, win: np.ndarray, c: np.ndarray, groups: Mapping[Any, np.ndarray]
) -> tuple[float, float, float]:
    """A linear contrast Σ c_i y_i of trial values, its standard error and Satterthwaite df.

    Variance groups: the window trials (residual variance of their line, n − 2 df) and each
    mask in `groups` (trials outside the window, sample variance, m − 1 df); a group of one
    trial borrows the window's variance and df.
    """
    xw, yw = x[win], y[win]
    xm = xw.mean()
    slope = ((xw - xm) * (yw - yw.mean())).sum() / ((xw - xm) ** 2).sum()
    s2_w, df_w = ((yw - yw.mean() - slope * (xw - xm)) ** 2).sum() / (len(xw) - 2), len(xw) - 2
    parts = [(s2_w * (c[win] ** 2).sum(), df_w)]
    for mask in groups.values():
        sel = mask & ~win
        m = int(sel.sum())
        s2, df = (float(np.var(y[sel], ddof=1)), m - 1) if m > 1 else (s2_w, df_w)
        if m:
            parts.append((s2 * (c[sel] ** 2).sum(), df))
    var = sum(v for v, _ in parts)
    denom = sum(v**2 / d for v, d in parts if v > 0)
    df = var**2 / denom if denom > 0 else float(df_w)
    return float((c * y).sum()), math.sqrt(var), float(df)


def _t_quantile(df: float, level: float) -> float:
    """The two-sided t quantile of a `level` interval with `df` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf((1 + level) / 2, max(df, 1e-9)))


class Binning(NamedTuple):
    """Declared bins of a continuous key: they make the "cells" of an adaptive study."""

    key: str
    method: str  # "log" (log-spaced edges), "linear" (equal width) or "quantile" (equal count)
    edges: list[float]  # n_bins + 1 edges over the positive (or all) values
    labels: list[str]  # "[a, b)" per bin, the last closed "[a, b]"; "0" first when zero_apart
    zero_apart: bool  # the value 0 is its own bin (λ = 0 controls are never pooled)
    statement: str  # the binning in one sentence, for the report


_METHOD_WORDS = {"log": "log-spaced", "linear": "equal-width", "quantile": "equal-count"}


def bin_key(values: Any, key: str, *, method: str = "auto", n_bins: int = 4) -> Binning:
    """Bins of a key's values, declared: method, edges, labels and a sentence.

    Args:
        values: one value per trial (duplicates weigh in the quantile method).
        key: the key's name (for the labels and the sentence).
        method: ``log``, ``linear``, ``quantile`` or ``auto`` (``log`` when :func:`log_scale`
            holds, else ``linear``). Quantile edges come from the trials' values, so each bin
            holds about the same number of trials; repeated edges are merged.
        n_bins: bins over the nonzero values (fewer when there are fewer distinct values).

    Raises:
        ValueError: for an unknown method, n_bins < 1, or values with no finite number.
    """
    if method not in ("auto", *_METHOD_WORDS):
        raise ValueError(
            f"bin_key(): method must be one of auto, log, linear, quantile, but got {method!r}."
        )
    if n_bins < 1:
        raise ValueError(f"bin_key(): n_bins must be >= 1, but got n_bins={n_bins}.")
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    if not len(v):
        raise ValueError(f"bin_key(): {key} has no finite numeric value to bin.")
    method = ("log" if log_scale(v) else "linear") if method == "auto" else method
    zero_apart = bool((v == 0).any() and (v != 0).any())
    body = v[v != 0] if zero_apart else v
    if method == "log" and (body <= 0).any():
        raise ValueError(
            f"bin_key(): log bins need positive values of {key}, but got min={body.min():g}."
        )
    n = min(n_bins, np.unique(body).size)
    lo, hi = float(body.min()), float(body.max())
    if method == "log":
        edges = np.geomspace(lo, hi, n + 1) if hi > lo else np.array([lo, hi])
    elif method == "quantile":
        edges = np.unique(np.quantile(body, np.linspace(0, 1, n + 1)))
    else:
        edges = np.linspace(lo, hi, n + 1) if hi > lo else np.array([lo, hi])
    edges = edges if len(edges) > 1 else np.array([lo, hi])
    m = len(edges) - 1
    # 2 significant figures, never more than 4 decimals (analysis.tables' display rule)
    labels = [
        f"[{format_number(a, digits=2)}, {format_number(b, digits=2)}{']' if i == m - 1 else ')'}"
        for i, (a, b) in enumerate(itertools.pairwise(edges))
    ]
    sym = _symbol(key)
    text = (
        f"{sym} binned into {m} {_METHOD_WORDS[method]} bin{'s' * (m > 1)} over "
        f"[{lo:.3g}, {hi:.3g}] (edges {', '.join(f'{e:.3g}' for e in edges)})"
        + (f"; {sym} = 0 is its own cell." if zero_apart else ".")
    )
    return Binning(
        key, method, edges.tolist(), (["0"] if zero_apart else []) + labels, zero_apart, text
    )


def _symbol(key: str) -> str:
    return KEY_SYMBOLS.get(key, key)


def assign_bins(values: Any, binning: Binning) -> pd.Series:
    """Each value's bin label (None for a missing value or one outside the edges)."""
    s = pd.Series(values)
    v = pd.to_numeric(s, errors="coerce").to_numpy(float)
    edges = np.asarray(binning.edges, float)
    body = binning.labels[1:] if binning.zero_apart else binning.labels
    idx = np.clip(np.searchsorted(edges[1:-1], v, side="right"), 0, len(body) - 1)
    tol = 1e-9 * max(1.0, float(np.abs(edges).max()))
    inside = np.isfinite(v) & (v >= edges[0] - tol) & (v <= edges[-1] + tol)
    out = np.array([body[i] if ok else None for i, ok in zip(idx, inside)], dtype=object)
    if binning.zero_apart:
        out[v == 0] = "0"
    return pd.Series(out, index=s.index, name=binning.key)


def binned_claims(
    seeds: pd.DataFrame,
    binning: Binning,
    *,
    by: Sequence[str] = (),
    task_metric: str = "accuracy",
    margin: float = ACCURACY_MARGIN,
    alpha: float = ALPHA,
    frac: float = 0.3,
) -> pd.DataFrame:
    """The claims per bin of a key, each against the key → 0 limit of the same `by` cell.

    Per (by cell, nonzero bin, claim): the bin's mean of trial means minus the λ → 0 limit
    (:func:`limit_info`'s line): one linear contrast of the trial means (their trials may
    overlap), with a Welch–Satterthwaite t-interval (the window's residual variance and each
    bin's own), Bonferroni over the m bins of the cell: level 1 − α/m, and 1 − 2α/m for the
    equivalence of accuracy (TOST-style). Verdicts:

    - accuracy: *holds* when the CI lies within ±`margin` and the bin's mean is above the
      success threshold; *breaks* when the CI lies below −`margin`; else *inconclusive*.
    - functional / structural: *holds* when the CI lies above 0 and the bin's mean z is above
      :data:`analysis.claims.CLEAR_Z`; *weak* when above 0 but not clear; *breaks* when below
      0; else *inconclusive*.
    - mi: *holds* when the CI lies below 0; *breaks* when above; else *inconclusive*.
    The λ = 0 bin, when there is one, is the control and has no claim row.

    Returns:
        Columns: the `by` keys, the binned key (its bin label), ``claim``, ``n_trials``,
        ``n`` (seeds with a value), ``mean``, ``limit``, ``effect``, ``ci_lo``, ``ci_hi``,
        ``level``, ``verdict``; empty when no cell has a limit.
    """
    key, by = binning.key, list(by)
    cols = [
        *by,
        key,
        "claim",
        "n_trials",
        "n",
        "mean",
        "limit",
        "effect",
        "ci_lo",
        "ci_hi",
        "level",
        "verdict",
    ]
    groups = seeds.groupby(by, sort=True, dropna=False) if by else [((), seeds)]
    rows = []
    for cell, part in groups:
        cell = cell if isinstance(cell, tuple) else (cell,)
        for claim in CLAIMS:
            for r in _claim_rows(part, binning, claim.name, task_metric, margin, alpha, frac):
                rows.append({**dict(zip(by, cell)), **r})
    return pd.DataFrame(rows, columns=cols)


def _claim_rows(
    part: pd.DataFrame,
    binning: Binning,
    claim: str,
    task_metric: str,
    margin: float,
    alpha: float,
    frac: float,
) -> list[dict[str, Any]]:
    """The rows of one claim in one `by` cell (none without a limit)."""
    t = trial_means(part, [binning.key], claim, task_metric=task_metric)
    x = pd.to_numeric(t[binning.key], errors="coerce").to_numpy(float)
    y = t["y"].to_numpy(float)
    win = _window(x, frac)
    if win is None:
        return []
    bins = assign_bins(x, binning).to_numpy(object)
    shown = [b for b in binning.labels if b != "0" and (bins == b).any()]
    m = max(len(shown), 1)
    level = 1 - (2 * alpha if claim == "accuracy" else alpha) / m
    a = _limit_weights(x, win)
    limit = float((a * y).sum())
    groups = {b: bins == b for b in shown}
    out = []
    for b in shown:
        inb = groups[b]
        effect, se, df = _contrast(y, x, win, inb / inb.sum() - a, groups)
        half = _t_quantile(df, level) * se
        mean = float(y[inb].mean())
        out.append(
            {
                binning.key: b,
                "claim": claim,
                "n_trials": int(inb.sum()),
                "n": int(t.loc[inb, "n"].sum()),
                "mean": mean,
                "limit": limit,
                "effect": effect,
                "ci_lo": effect - half,
                "ci_hi": effect + half,
                "level": level,
                "verdict": _bin_verdict(
                    claim, mean, effect - half, effect + half, margin, task_metric
                ),
            }
        )
    return out


def _bin_verdict(
    claim: str, mean: float, lo: float, hi: float, margin: float, task_metric: str
) -> str:
    """binned_claims()'s declared rule for one row."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not measured"
    if claim == "accuracy":
        if hi < -margin:
            return "breaks"
        ok = -margin < lo and hi < margin and mean > SUCCESS_THRESHOLD[task_metric]
        return "holds" if ok else "inconclusive"
    sign = -1 if claim == "mi" else 1
    lo, hi = sorted((sign * lo, sign * hi))
    if hi < 0:
        return "breaks"
    if lo <= 0:
        return "inconclusive"
    if claim == "mi":
        return "holds"
    return "holds" if mean > CLEAR_Z else "weak"


class ContourInfo(NamedTuple):
    """A metric over a pair of keys: trial means and their linear interpolation."""

    x: str
    y: str
    metric: str
    column: str  # what the metric reads
    x_log: bool
    y_log: bool
    points: pd.DataFrame  # per trial: trial_id, x, y, z (mean over seeds)
    gx: np.ndarray  # (G,) x of the grid, original units
    gy: np.ndarray  # (G,) y of the grid
    gz: np.ndarray  # (G, G) interpolated z, rows along y; NaN outside the trials' hull
    n_left_out: int  # trials at 0 on a log axis (not placeable)
    message: str  # why there is no surface ("" when there is one)


def contour_info(
    seeds: pd.DataFrame,
    x: str,
    y: str,
    metric: str,
    *,
    task_metric: str = "accuracy",
    n_grid: int = 40,
    log: Mapping[str, bool] | None = None,
) -> ContourInfo:
    """Trial means of `metric` over (x, y), linearly interpolated on a grid.

    The interpolation (SciPy ``griddata``, linear on the Delaunay triangulation) runs in
    coordinates rescaled to [0, 1] (log10 first on a log axis), so neither key's units shape
    the triangles; outside the convex hull of the trials the surface is NaN, never
    extrapolated.

    Args:
        log: key -> log axis; default :func:`log_scale` of each key's values.
    """
    for k in (x, y):
        if k not in seeds.columns:
            raise ValueError(
                f"contour_info(): key {k!r} must be a column of seeds, but the "
                f"columns are {sorted(map(str, seeds.columns))}."
            )
    t = trial_means(seeds, [x, y], metric, task_metric=task_metric)
    u = {k: pd.to_numeric(t[k], errors="coerce").to_numpy(float) for k in (x, y)}
    logs = {k: (log or {}).get(k, log_scale(u[k])) for k in (x, y)}
    ok = np.isfinite(u[x]) & np.isfinite(u[y])
    placeable = ok & ~((logs[x] & (u[x] <= 0)) | (logs[y] & (u[y] <= 0)))
    pts = pd.DataFrame({"trial_id": t["trial_id"], "x": u[x], "y": u[y], "z": t["y"]})[placeable]
    empty = np.array([])
    out = ContourInfo(
        x,
        y,
        metric,
        _metric_label(metric, task_metric),
        logs[x],
        logs[y],
        pts.reset_index(drop=True),
        empty,
        empty,
        np.empty((0, 0)),
        int((ok & ~placeable).sum()),
        "",
    )
    tx = np.log10(pts["x"].to_numpy()) if logs[x] else pts["x"].to_numpy(float)
    ty = np.log10(pts["y"].to_numpy()) if logs[y] else pts["y"].to_numpy(float)
    if len(pts) < 3 or np.ptp(tx) == 0 or np.ptp(ty) == 0:
        return out._replace(
            message=f"{metric} over {x} × {y}: a surface needs three trials "
            f"spread over both keys, got {len(pts)}."
        )
    gz, ux, uy = _interpolate(tx, ty, pts["z"].to_numpy(float), n_grid)
    if gz is None:
        return out._replace(
            message=f"{metric} over {x} × {y}: the trials lie on a line, no surface."
        )
    return out._replace(gx=10**ux if logs[x] else ux, gy=10**uy if logs[y] else uy, gz=gz)


def _interpolate(
    tx: np.ndarray, ty: np.ndarray, z: np.ndarray, n_grid: int
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Linear interpolation of z on an n_grid² grid over the box of (tx, ty)."""
    from scipy.interpolate import griddata
    from scipy.spatial import QhullError

    ux = np.linspace(tx.min(), tx.max(), n_grid)
    uy = np.linspace(ty.min(), ty.max(), n_grid)
    sx, sy = np.ptp(tx), np.ptp(ty)
    gx, gy = np.meshgrid((ux - tx.min()) / sx, (uy - ty.min()) / sy)
    try:
        gz = griddata(
            np.c_[(tx - tx.min()) / sx, (ty - ty.min()) / sy], z, (gx, gy), method="linear"
        )
    except QhullError:
        return None, ux, uy
    return gz, ux, uy


# ---- figures -----------------------------------------------------------------------------------


def plot_response(
    infos: Sequence[ResponseInfo], limits: Mapping[str, LimitInfo] | None = None, *, ncols: int = 3
) -> Figure:
    """One panel per response: trial means (dots, size ∝ seeds), the LOWESS (line) and its
    band; on a log axis a narrow panel at its left shows the key = 0 trials (mean and CI) and
    the λ → 0 limit of `limits[metric]` (diamond and CI)."""
    limits = limits or {}
    n = max(len(infos), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(3.9 * ncols, 3.0 * nrows)
    subs = np.atleast_1d(fig.subfigures(nrows, ncols, squeeze=False).ravel())
    for sub, info in zip(subs, infos):
        _response_panel(sub, info, limits.get(info.metric))
    if not infos:
        fig.text(0.5, 0.5, "No response to show.", ha="center", va="center")
    return fig


def _response_panel(sub: Any, info: ResponseInfo, limit: LimitInfo | None) -> None:
    """The axes of one response (a zero panel first when the key has a log axis)."""
    apart = info.log and (info.zero is not None or (limit is not None and not limit.message))
    if apart:
        ax0, ax = sub.subplots(1, 2, width_ratios=[1, 5], sharey=True)
        _zero_panel(ax0, info, limit)
    else:
        ax = sub.subplots()
    if not len(info.points):
        ax.set_axis_off()
        ax.text(
            0.5,
            0.5,
            f"{info.column}: no seed has a value.",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=8,
        )
        return
    body = info.points[~((info.points["x"] <= 0) & info.log)]
    ax.scatter(body["x"], body["y"], s=6 + 3 * body["n"], color="tab:blue", alpha=0.5, lw=0)
    if len(info.grid):
        ax.plot(info.grid, info.fit, color="tab:blue", lw=1.6)
        ax.fill_between(info.grid, info.lo, info.hi, color="tab:blue", alpha=0.2, lw=0)
    if info.log:
        ax.set_xscale("log")
    ax.set_xlabel(_symbol(info.key))
    if not apart:
        ax.set_ylabel(info.column, fontsize=8)
    ax.set_title(f"{_title(info.metric)} ({info.n_defined}/{info.n_seeds} seeds)", fontsize=8)
    if info.message:
        ax.text(
            0.5,
            0.5,
            info.message,
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=7,
            wrap=True,
        )
    ax.tick_params(labelsize=7)


def _zero_panel(ax: Any, info: ResponseInfo, limit: LimitInfo | None) -> None:
    """The key = 0 trials (black) and the λ → 0 limit (red) with their CIs."""
    ticks = []
    if info.zero is not None:
        m, lo, hi, _ = info.zero
        ax.errorbar(
            [0],
            [m],
            yerr=[[m - lo], [hi - m]] if np.isfinite(lo) else None,
            fmt="o",
            color="black",
            ms=4,
            capsize=2,
        )
        ticks.append((0, "0"))
    if limit is not None and not limit.message:
        ax.errorbar(
            [1],
            [limit.estimate],
            yerr=[[limit.estimate - limit.lo], [limit.hi - limit.estimate]],
            fmt="D",
            color="crimson",
            ms=4,
            capsize=2,
        )
        ticks.append((1, "→0"))
    ax.set_xlim(-0.7, 1.7)
    ax.set_xticks([t for t, _ in ticks], [s for _, s in ticks], fontsize=7)
    ax.set_ylabel(info.column, fontsize=8)
    ax.tick_params(labelsize=7)


def _metric_label(metric: str, task_metric: str = "accuracy") -> str:
    """The column a claim reads (``final.q_func_z`` for ``functional``), else the metric."""
    claim = next((c for c in CLAIMS if c.name == metric), None)
    if claim is None:
        return metric
    if claim.column == "mi_excess":
        return "final.mi_heldout − final.mi_heldout_null"
    return claim.column.replace("<task>", task_metric)


def _title(metric: str) -> str:
    return CLAIM_TITLES.get(metric, metric)


def plot_contour(info: ContourInfo) -> Figure:
    """Filled contours of the interpolated surface with the trials as dots."""
    fig = _figure(4.4, 3.6)
    ax = fig.subplots()
    if info.gz.size and np.isfinite(info.gz).any():
        cs = ax.contourf(
            info.gx, info.gy, np.ma.masked_invalid(info.gz), levels=12, cmap="viridis"
        )
        fig.colorbar(cs, ax=ax, label=info.column)
    ax.scatter(info.points["x"], info.points["y"], s=8, color="black", lw=0)
    for axis, log in (("x", info.x_log), ("y", info.y_log)):
        if log:
            getattr(ax, f"set_{axis}scale")("log")
    ax.set_xlabel(_symbol(info.x))
    ax.set_ylabel(_symbol(info.y))
    note = f" ({info.n_left_out} trials at 0 not shown)" if info.n_left_out else ""
    ax.set_title(f"{_title(info.metric)}: trial means{note}", fontsize=8)
    if info.message:
        ax.text(
            0.5,
            0.5,
            info.message,
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=7,
            wrap=True,
        )
    return fig
