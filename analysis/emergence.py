"""Emergence epochs of metric curves and statistics of the structural-minus-functional lag.

Pure NumPy/SciPy (pandas only inside the table helpers). Conventions: a curve is one seed's metric
sampled at evaluation epochs, shape (T,); "did not emerge" is NaN, never a number (method.md §10.3,
DESIGN.md §5); every random step takes an explicit ``np.random.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LagSummary",
    "Onset",
    "chance_modularity",
    "group_sizes",
    "lag_summary",
    "lag_table",
    "onset",
    "rank_correlations",
    "seed_onsets",
]

# Robust noise: a Gaussian's MAD is 0.6745 σ, and a difference of two independent evaluations has
# standard deviation √2 σ, so σ ≈ 1.4826 · MAD(diff) / √2.
_MAD_TO_SIGMA = 1.482602218505602
_MIN_POINTS = 3  # fewest finite evaluations from which a noise scale and a rise can be estimated


@dataclass(frozen=True)
class Onset:
    """Emergence of one curve (see :func:`onset` for the exact definitions)."""

    half_rise: float  # epoch, NaN when the curve did not emerge
    threshold: float  # first epoch from which the curve stays above chance + margin, NaN if never
    emerged: bool
    rise: float  # X_end − X_0 (X_end = mean of the last `final_window` finite values)
    noise: float  # per-evaluation noise scale σ used for the decision


def onset(
    epochs: Any,
    values: Any,
    *,
    chance: float | None = None,
    final_window: int = 3,
    noise_k: float = 3.0,
    min_rise: float = 0.02,
) -> Onset:
    """Half-rise and threshold-crossing epochs of one curve, or "did not emerge".

    Definitions (method.md §10.3; feasibility.md §1 for the averaged end value). Non-finite values
    (a diverged tail, a skipped evaluation) are dropped together with their epochs first; what
    follows uses the remaining T' finite evaluations.

    - ``X_0`` is the first finite value, ``X_end`` the mean of the last ``min(final_window, T'-1)``
      finite values, and ``rise = X_end − X_0``.
    - ``noise`` σ is estimated from the curve itself, robustly: 1.4826 · MAD of the successive
      differences / √2 (a step or sigmoid rise changes only a few differences, so it barely moves
      the MAD, while a linear drift only moves their median).
    - The curve **emerged** iff ``rise >= max(noise_k · σ, min_rise)``; a falling curve never
      emerges. Fewer than 3 finite values never emerge (no noise scale can be estimated).
    - ``half_rise`` is the first evaluation epoch whose value is ``>= X_0 + rise / 2``.
    - ``threshold`` is the first evaluation epoch from which every later finite value is
      ``> chance + max(noise_k · σ, min_rise)``, i.e. the curve leaves the chance level by the
      same margin that decides emergence and never falls back. NaN without ``chance``.

    Both epochs are NaN when the curve did not emerge (censored, not a number).

    Args:
        epochs: evaluation epochs, shape (T,), strictly increasing.
        values: the metric at those epochs, shape (T,); NaN/inf allowed.
        chance: the metric's chance level (e.g. :func:`chance_modularity`), or None.
        final_window: number of last finite evaluations averaged into X_end, >= 1.
        noise_k: how many noise scales the rise must exceed, >= 0.
        min_rise: smallest rise that counts, whatever the noise, >= 0.

    Returns:
        The :class:`Onset` of the curve.

    Raises:
        ValueError: on shapes, non-increasing epochs or out-of-range options.
    """
    t, x = _check_curve("onset()", epochs, values)
    if isinstance(final_window, bool) or not isinstance(final_window, (int, np.integer)):
        raise TypeError(f"onset(): final_window must be an int, but got {final_window!r}.")
    if final_window < 1:
        raise ValueError(
            f"onset(): final_window must be >= 1, but got final_window={final_window}.")
    if not (noise_k >= 0 and min_rise >= 0):
        raise ValueError(
            f"onset(): noise_k and min_rise must be >= 0, but got noise_k={noise_k}, "
            f"min_rise={min_rise}."
        )
    if chance is not None and not math.isfinite(chance):
        raise ValueError(f"onset(): chance must be finite or None, but got chance={chance}.")

    finite = np.isfinite(x)
    t, x = t[finite], x[finite]
    if x.size < _MIN_POINTS:
        return Onset(math.nan, math.nan, False, math.nan, math.nan)

    x0 = float(x[0])
    window = min(final_window, x.size - 1)
    rise = float(np.mean(x[-window:])) - x0
    d = np.diff(x)
    noise = float(_MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))
    margin = max(noise_k * noise, min_rise)
    if not rise >= margin:
        return Onset(math.nan, math.nan, False, rise, noise)

    # X_end >= X_0 + margin > X_0 + rise/2 somewhere in the final window, so argmax finds a hit.
    half_rise = float(t[np.argmax(x >= x0 + 0.5 * rise)])
    threshold = math.nan
    if chance is not None:
        below = np.flatnonzero(~(x > chance + margin))
        start = 0 if below.size == 0 else below[-1] + 1
        if start < x.size:
            threshold = float(t[start])
    return Onset(half_rise, threshold, True, rise, noise)


def _check_curve(where: str, epochs: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and values as float arrays of shape (T,), validated."""
    try:
        t = np.asarray(epochs, dtype=float)
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where}: epochs and values must be numeric arrays ({e}).") from e
    if t.ndim != 1 or x.shape != t.shape:
        raise ValueError(
            f"{where}: epochs and values must have the same shape (T,), but got epochs shape "
            f"{t.shape} and values shape {x.shape}."
        )
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{where}: epochs must be finite, but got {t.tolist()}.")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError(f"{where}: epochs must be strictly increasing, but got {t.tolist()}.")
    return t, x


def group_sizes(n_hidden: int, n_groups: int, sizes: Sequence[int] | None = None) -> list[int]:
    """Sizes of the K contiguous subgroups of N units (DESIGN.md §3, "Subgroups").

    Args:
        n_hidden: N, the number of units.
        n_groups: K, the number of groups, 1 <= K <= N.
        sizes: explicit sizes (K positive ints summing to N); by default as equal as possible,
            larger groups first (N=10, K=3 gives [4, 3, 3]).

    Returns:
        The K group sizes.

    Raises:
        ValueError: when the sizes cannot partition N units into K groups.
    """
    n, k = int(n_hidden), int(n_groups)
    if not 1 <= k <= n:
        raise ValueError(
            f"group_sizes(): 1 <= n_groups <= n_hidden must hold, but got n_hidden={n_hidden}, "
            f"n_groups={n_groups}."
        )
    if sizes is None:
        base, extra = divmod(n, k)
        return [base + 1] * extra + [base] * (k - extra)
    out = [int(s) for s in sizes]
    if len(out) != k or sum(out) != n or min(out) < 1:
        raise ValueError(
            f"group_sizes(): sizes must be {k} positive ints summing to n_hidden={n}, but got "
            f"sizes={list(sizes)}."
        )
    return out


def chance_modularity(n_hidden: int, n_groups: int, sizes: Sequence[int] | None = None) -> float:
    """Newman Q of the fixed partition on the complete graph with equal weights: Q's chance level.

    Q_chance = Σ_c [n_c(n_c − 1) / (N(N − 1)) − (n_c / N)²], which is −1/(2(N − 1)) for two equal
    halves (ground-truth.md, "Modularity"). A graph with no group structure sits here, not at 0.

    Args:
        n_hidden: N, the number of units.
        n_groups: K, the number of groups.
        sizes: optional explicit group sizes (see :func:`group_sizes`).

    Returns:
        The chance level of Q.
    """
    n = int(n_hidden)
    if n < 2:
        raise ValueError(f"chance_modularity(): n_hidden must be >= 2, but got n_hidden={n}.")
    nc = np.asarray(group_sizes(n, n_groups, sizes), dtype=float)
    return float(np.sum(nc * (nc - 1.0) / (n * (n - 1.0)) - (nc / n) ** 2))


class LagSummary(NamedTuple):
    """Across-seed statistics of lag = t_struct − t_func (epochs); NaN where undefined."""

    n: int  # seeds with a defined lag (both metrics emerged)
    n_censored: int  # seeds without a defined lag
    median: float
    ci_low: float  # bootstrap percentile CI of the median
    ci_high: float
    n_positive: int  # seeds with lag > 0 (structure after function)
    frac_positive: float  # n_positive / n
    statistic: float  # Wilcoxon signed-rank statistic (paired t_struct vs t_func)
    p_value: float  # two-sided


def lag_summary(
    lags: Any,
    *,
    rng: np.random.Generator,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> LagSummary:
    """Median lag, its bootstrap CI, the fraction of positive lags and a paired Wilcoxon test.

    The Wilcoxon signed-rank test on the per-seed differences is the paired test of t_struct
    against t_func across seeds (method.md §10.3); zero lags are dropped (``zero_method="wilcox"``)
    and all-zero lags give statistic 0 and p = 1. The CI is the percentile bootstrap of the median
    (``scipy.stats.bootstrap``), which stays defined on the tied values an evaluation grid gives;
    it needs at least 2 lags.

    Args:
        lags: per-seed lags in epochs, shape (S,); NaN marks a censored seed.
        rng: the generator of the bootstrap resamples.
        n_boot: number of bootstrap resamples, >= 100.
        confidence: CI level in (0, 1).

    Returns:
        The :class:`LagSummary`.
    """
    from scipy import stats

    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"lag_summary(): rng must be a numpy Generator, but got {type(rng).__name__}.")
    if not (0.0 < confidence < 1.0) or n_boot < 100:
        raise ValueError(
            f"lag_summary(): 0 < confidence < 1 and n_boot >= 100 must hold, but got "
            f"confidence={confidence}, n_boot={n_boot}."
        )
    x = np.asarray(lags, dtype=float).reshape(-1)
    ok = np.isfinite(x)
    n_censored = int(np.count_nonzero(~ok))
    x = x[ok]
    n = int(x.size)
    if n == 0:
        return LagSummary(0, n_censored, *([math.nan] * 3), 0, math.nan, math.nan, math.nan)
    median = float(np.median(x))
    lo = hi = math.nan
    if n >= 2:
        if np.all(x == x[0]):
            lo = hi = float(x[0])
        else:
            res = stats.bootstrap(
                (x,), np.median, n_resamples=n_boot, confidence_level=confidence,
                method="percentile", rng=rng,
            )
            lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    n_pos = int(np.count_nonzero(x > 0))
    if np.all(x == 0):
        stat, p = 0.0, 1.0
    else:
        res_w = stats.wilcoxon(x, zero_method="wilcox", alternative="two-sided")
        stat, p = float(res_w.statistic), float(res_w.pvalue)
    return LagSummary(n, n_censored, median, lo, hi, n_pos, n_pos / n, stat, p)


def seed_onsets(
    curves: pd.DataFrame,
    chance: Any = None,
    *,
    final_window: Any = 3,
    noise_k: float = 3.0,
    min_rise: float = 0.02,
) -> pd.DataFrame:
    """Onsets of q_func and q_struct for every (trial, seed) of a long curve table.

    Args:
        curves: one row per (trial_id, seed, epoch) with columns ``trial_id``, ``seed``,
            ``epoch``, ``q_func``, ``q_struct`` (the contract's curves.parquet plus trial_id).
        chance: Q's chance level per trial: a float for all, or a mapping/Series trial_id → float.
        final_window: evaluations averaged into X_end: an int, or a mapping trial_id → int.
        noise_k: see :func:`onset`.
        min_rise: see :func:`onset`.

    Returns:
        One row per (trial_id, seed): ``t_func``, ``thr_func``, ``func_emerged``, ``t_struct``,
        ``thr_struct``, ``struct_emerged``, ``lag`` (= t_struct − t_func, NaN unless both emerged),
        ``rise_func``, ``rise_struct``, ``noise_func``, ``noise_struct``.
    """
    import pandas as pd

    required = {"trial_id", "seed", "epoch", "q_func", "q_struct"}
    missing = sorted(required - set(curves.columns))
    if missing:
        raise ValueError(
            f"seed_onsets(): curves must have columns {sorted(required)}, but {missing} are "
            "missing."
        )
    rows = []
    ordered = curves.sort_values("epoch")
    for (trial_id, seed), g in ordered.groupby(["trial_id", "seed"], sort=True):
        c = _lookup(chance, trial_id)
        w = _lookup(final_window, trial_id)
        w = 3 if w is None or not np.isfinite(w) else int(w)
        c = None if c is None or not np.isfinite(c) else float(c)
        row: dict[str, Any] = {"trial_id": trial_id, "seed": seed}
        for metric, tag in (("q_func", "func"), ("q_struct", "struct")):
            o = onset(g["epoch"], g[metric], chance=c, final_window=w, noise_k=noise_k,
                      min_rise=min_rise)
            row |= {f"t_{tag}": o.half_rise, f"thr_{tag}": o.threshold,
                    f"{tag}_emerged": o.emerged, f"rise_{tag}": o.rise, f"noise_{tag}": o.noise}
        row["lag"] = row["t_struct"] - row["t_func"]
        rows.append(row)
    cols = ["trial_id", "seed", "t_func", "thr_func", "func_emerged", "rise_func", "noise_func",
            "t_struct", "thr_struct", "struct_emerged", "rise_struct", "noise_struct", "lag"]
    return pd.DataFrame(rows, columns=cols)


def _lookup(value: Any, key: Any) -> Any:
    """A per-trial setting: the value itself, or value[key] for mappings and Series."""
    if value is None or np.isscalar(value):
        return value
    try:
        return value[key]
    except (KeyError, IndexError):
        return None


def lag_table(
    seeds: pd.DataFrame,
    by: Sequence[str],
    *,
    rng: np.random.Generator,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """Lag statistics (:func:`lag_summary`) per group of seeds, e.g. per trial or phase cell.

    Args:
        seeds: one row per (trial, seed) with ``lag``, ``func_emerged``, ``struct_emerged``.
        by: the grouping columns; empty pools all seeds into one row.
        rng: the generator of the bootstrap resamples (used group after group).
        n_boot: bootstrap resamples per group.

    Returns:
        One row per group: the ``by`` columns, ``n_seeds``, ``n_func_emerged``,
        ``n_struct_emerged``, ``n_func_only`` (q_func emerged, q_struct never did: structure
        later than the run, i.e. right-censored lag > 0), then the :class:`LagSummary` fields.
    """
    import pandas as pd

    by = list(by)
    missing = sorted({"lag", "func_emerged", "struct_emerged", *by} - set(seeds.columns))
    if missing:
        raise ValueError(f"lag_table(): seeds must have columns {missing}, which are missing.")
    groups = seeds.groupby(by, sort=True, dropna=False) if by else [((), seeds)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        func = g["func_emerged"].astype(bool)
        struct = g["struct_emerged"].astype(bool)
        s = lag_summary(g["lag"].to_numpy(float), rng=rng, n_boot=n_boot)
        rows.append({**dict(zip(by, key)), "n_seeds": len(g),
                     "n_func_emerged": int(func.sum()), "n_struct_emerged": int(struct.sum()),
                     "n_func_only": int((func & ~struct).sum()), **s._asdict()})
    cols = [*by, "n_seeds", "n_func_emerged", "n_struct_emerged", "n_func_only",
            *LagSummary._fields]
    return pd.DataFrame(rows, columns=cols)


DEFAULT_TARGETS = ("t_func", "t_struct", "lag", "final.q_func", "final.q_struct")


def rank_correlations(
    seeds: pd.DataFrame,
    params: Sequence[str],
    targets: Sequence[str] = DEFAULT_TARGETS,
) -> pd.DataFrame:
    """Spearman rank correlation of each hyperparameter with each target, over seeds.

    Each (trial, seed) is one independent network, so seeds are the observations; rows with a NaN
    in either column (a censored onset) are left out. Non-numeric parameters, constant columns and
    fewer than 3 pairs give NaN.

    Args:
        seeds: one row per (trial, seed) with the parameter and target columns.
        params: swept hyperparameter columns (dotted keys, e.g. ``mi.weight``).
        targets: outcome columns.

    Returns:
        One row per (param, target): ``param``, ``target``, ``n``, ``rho``, ``p_value``.
    """
    import pandas as pd
    from scipy import stats

    rows = []
    for p in params:
        for t in targets:
            rho = pval = math.nan
            n = 0
            if p in seeds.columns and t in seeds.columns:
                x = pd.to_numeric(seeds[p], errors="coerce")
                y = pd.to_numeric(seeds[t], errors="coerce")
                ok = np.isfinite(x.astype(float)) & np.isfinite(y.astype(float))
                n = int(ok.sum())
                if n >= 3 and x[ok].nunique() > 1 and y[ok].nunique() > 1:
                    r = stats.spearmanr(x[ok].to_numpy(float), y[ok].to_numpy(float))
                    rho, pval = float(r.statistic), float(r.pvalue)
            rows.append({"param": p, "target": t, "n": n, "rho": rho, "p_value": pval})
    return pd.DataFrame(rows, columns=["param", "target", "n", "rho", "p_value"])
