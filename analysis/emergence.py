"""Timing statistics of functional vs structural emergence, censoring-aware, never pooled over λ.

Per-seed onsets and the which-first outcome come from :mod:`study.contract.outcomes` (their one
owner). Here: per group of seeds (a λ, a phase cell) an exact sign test of function-first against
structure-first, a TOST equivalence test of co-emergence with a declared margin, Benjamini–Hochberg
across the groups of a table, the verdict; Kaplan–Meier curves of time to emergence (lifelines);
censored regressions of the onsets on the swept keys (Weibull AFT, lifelines) and of the
which-first outcome (logistic, statsmodels); and the calibration of the whole pipeline on
synthetic curve pairs with an identical time course and the study's own measured noise.

SciPy, pandas, lifelines and statsmodels are imported inside the functions that need them, so
``import analysis.emergence`` stays as light as NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from study.contract.outcomes import (
    DEFAULT_RUN,
    DEFAULT_Z,
    TIE_EVALS,
    Onset,
    chance_modularity,
    group_sizes,
    onset,
    which_first,
)
from study.contract.params import PARAM_EVAL_EVERY, PARAM_MI_WEIGHT

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ALPHA",
    "FAILED_TASK",
    "MARGIN_EVALS",
    "Calibration",
    "Noise",
    "bh_adjust",
    "calibrate",
    "censored_regression",
    "chance_modularity",
    "false_emergence",
    "group_sizes",
    "km_table",
    "measure_noise",
    "sign_test",
    "timing_seeds",
    "tost_lag",
    "never_emerged",
    "verdict",
    "verdict_table",
]

# declared level of every test, timing and claims (analysis.claims), after BH across a table
ALPHA = 0.05
# Declared TOST margin: co-emergent when the median lag is within ±2 evaluations. A lag of one
# evaluation is already a tie (outcomes.TIE_EVALS); the margin allows one more for the jitter of
# onsets on noisy curves.
MARGIN_EVALS = 2.0
VERDICTS = (
    "function first",
    "structure first",
    "co-emergent",
    "inconclusive",
    "structure never emerged",
    "function never emerged",
    "neither emerged",
)
# the reason a seed of a network that did not learn the task is left out of the timing
FAILED_TASK = "failed the task"


def sign_test(n_func: int, n_struct: int) -> float:
    """Two-sided exact binomial (sign) test of function-first against structure-first seeds.

    Ties and seeds where neither emerged carry no sign and are left out (the sign test's usual
    treatment of zero differences). p = 1 with no decided seed.
    """
    from scipy.stats import binomtest

    n = int(n_func) + int(n_struct)
    if n == 0:
        return 1.0
    return float(binomtest(int(n_func), n, 0.5, alternative="two-sided").pvalue)


def _lag_bounds(seeds: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed bounds [lo, hi] of lag = t_struct − t_func, using the censoring epochs.

    Both emerged: the lag itself. Only q_func emerged: t_struct is after its censoring epoch, so
    lag > t_struct_censor − t_func. Only q_struct: lag < t_struct − t_func_censor. Neither: no
    bound.
    """
    tf, ts = seeds["t_func"].to_numpy(float), seeds["t_struct"].to_numpy(float)
    cf = seeds["t_func_censor"].to_numpy(float)
    cs = seeds["t_struct_censor"].to_numpy(float)
    ef = seeds["func_emerged"].to_numpy(bool)
    es = seeds["struct_emerged"].to_numpy(bool)
    lo = np.full(len(seeds), -np.inf)
    hi = np.full(len(seeds), np.inf)
    both = ef & es
    lo[both] = hi[both] = (ts - tf)[both]
    only_f = ef & ~es & np.isfinite(cs)
    lo[only_f] = (cs - tf)[only_f]
    only_s = es & ~ef & np.isfinite(cf)
    hi[only_s] = (ts - cf)[only_s]
    return lo, hi


def tost_lag(lo: Any, hi: Any, margin: Any) -> tuple[float, int, int]:
    """TOST equivalence of the median lag with 0 within ±margin, by two exact sign tests.

    H01: median lag <= −margin, rejected when significantly more than half of the seeds have
    lag > −margin; H02: median lag >= +margin, rejected when more than half have lag < +margin.
    Each seed counts in a test where its lag bounds decide the side (censored seeds often do:
    q_func emerged and q_struct never did by a wide margin is a lag > +margin) and is left out
    where they do not. p = max of the two one-sided exact binomial p-values; 1 without data.

    Args:
        lo, hi: per-seed lower and upper bounds of the lag (equal when known), epochs.
        margin: the equivalence margin in epochs, a scalar or one per seed, > 0.

    Returns:
        (p, n1, n2): the TOST p-value and the seeds used in each one-sided test.
    """
    from scipy.stats import binomtest

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    d = np.broadcast_to(np.asarray(margin, float), lo.shape)
    s1, f1 = lo > -d, hi <= -d
    s2, f2 = hi < d, lo >= d
    n1, n2 = int(s1.sum() + f1.sum()), int(s2.sum() + f2.sum())
    if n1 == 0 or n2 == 0:
        return 1.0, n1, n2
    p1 = binomtest(int(s1.sum()), n1, 0.5, alternative="greater").pvalue
    p2 = binomtest(int(s2.sum()), n2, 0.5, alternative="greater").pvalue
    return float(max(p1, p2)), n1, n2


def bh_adjust(p: Any) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (statsmodels), NaN kept in place."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def verdict(n_func: int, n_struct: int, p_sign: float, p_tost: float, alpha: float = ALPHA) -> str:
    """The cell's reading from its (adjusted) p-values: a significant sign test names the side
    that came first; else a significant TOST says co-emergent; else inconclusive."""
    if p_sign <= alpha and n_func != n_struct:
        return "function first" if n_func > n_struct else "structure first"
    if p_tost <= alpha:
        return "co-emergent"
    return "inconclusive"


def never_emerged(n_seeds: int, n_func: int, n_struct: int) -> str | None:
    """The censored label of a cell, or None: when more than half of its seeds have no onset
    of a metric, the cell is "structure never emerged", "function never emerged" or "neither
    emerged" whatever the order of the few that did (a cell where structure mostly never
    emerged never reads "function first")."""
    f_never = 2 * (n_seeds - n_func) > n_seeds
    s_never = 2 * (n_seeds - n_struct) > n_seeds
    if f_never and s_never:
        return "neither emerged"
    if s_never:
        return "structure never emerged"
    if f_never:
        return "function never emerged"
    return None


def timing_seeds(
    seeds: pd.DataFrame, *, require_success: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeds usable for timing statistics, and those excluded with the reason.

    Trials cut short (diverged, stopped by a scheduler, failed, still running) have no complete
    curves, so their onsets are not comparable: they are excluded and listed. Seeds of a study
    without the z-score curves (``onsets_measured`` false) are excluded too. With
    `require_success` (the default), so are networks that failed the task (``success`` false:
    final task metric at or below its threshold): the order in which modularity appears in a
    network that did not learn the task says nothing about the claim.
    """
    import pandas as pd

    reason = pd.Series("", index=seeds.index, dtype=object)
    if "status" in seeds:
        bad = ~seeds["status"].fillna("finished").eq("finished")
        reason[bad] = "trial " + seeds.loc[bad, "status"].astype(str)
    if "onsets_measured" in seeds:
        unmeasured = ~seeds["onsets_measured"].fillna(False).astype(bool) & reason.eq("")
        reason[unmeasured] = "no z-score curves (onsets not measured)"
    if require_success and "success" in seeds:
        failed = ~seeds["success"].astype("boolean").fillna(False).astype(bool) & reason.eq("")
        reason[failed] = FAILED_TASK
    keep = reason.eq("")
    excluded = seeds.loc[~keep].assign(reason=reason[~keep])
    return seeds.loc[keep], excluded


def _margins(seeds: pd.DataFrame, step: float | None, margin_evals: float) -> np.ndarray:
    """The TOST margin in epochs for each seed (margin_evals evaluations of its trial)."""
    import pandas as pd

    if step is not None:
        return np.full(len(seeds), margin_evals * float(step))
    if PARAM_EVAL_EVERY in seeds:
        s = pd.to_numeric(seeds[PARAM_EVAL_EVERY], errors="coerce").to_numpy(float)
        return margin_evals * np.where(np.isfinite(s), s, 1.0)
    return np.full(len(seeds), float(margin_evals))


def verdict_table(
    seeds: pd.DataFrame,
    by: Sequence[str],
    *,
    step: float | None = None,
    alpha: float = ALPHA,
    margin_evals: float = MARGIN_EVALS,
) -> pd.DataFrame:
    """Per group of seeds: n, the four which-first counts, sign test, TOST, BH, verdict.

    Args:
        seeds: per-seed outcomes (:func:`study.contract.outcomes.seed_table` columns), already
            restricted to the seeds usable for timing (:func:`timing_seeds`).
        by: grouping columns (e.g. ``["mi.weight"]``, or every swept key for phase cells). Each
            group is tested on its own; λ is never pooled when it is one of ``by``.
        step: evaluation interval in epochs; default each seed's ``train.eval_every``.
        alpha: the declared level.
        margin_evals: the TOST margin in evaluations.

    Returns:
        One row per group: the ``by`` columns, ``n_seeds``, ``n_func_first``,
        ``n_struct_first``, ``n_tie``, ``n_neither``, ``p_sign``, ``p_tost``, ``p_sign_bh``,
        ``p_tost_bh`` (BH across the treated rows of this table; λ = 0 control rows keep their
        raw p), ``n_func_emerged``, ``n_struct_emerged`` (seeds with an onset), ``verdict``
        (:func:`never_emerged`'s label first, then :func:`verdict`), ``median_lag`` (seeds
        where both emerged; descriptive),
        ``t_func_km``, ``t_struct_km`` (Kaplan–Meier median onsets, censored seeds included;
        inf when fewer than half emerged).
    """
    import pandas as pd

    by = list(by)
    cols = [
        *by,
        "n_seeds",
        "n_func_first",
        "n_struct_first",
        "n_tie",
        "n_neither",
        "p_sign",
        "p_tost",
        "p_sign_bh",
        "p_tost_bh",
        "n_func_emerged",
        "n_struct_emerged",
        "verdict",
        "median_lag",
        "t_func_km",
        "t_struct_km",
    ]
    if not len(seeds):
        return pd.DataFrame(columns=cols)
    margins = _margins(seeds, step, margin_evals)
    lo, hi = _lag_bounds(seeds)
    frame = seeds.assign(_lo=lo, _hi=hi, _d=margins)
    groups = frame.groupby(by, sort=True, dropna=False) if by else [((), frame)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        first = g["first"].astype(str)
        n_f, n_s = int((first == "function").sum()), int((first == "structure").sum())
        p_tost, _, _ = tost_lag(g["_lo"], g["_hi"], g["_d"])
        lag = g["lag"].to_numpy(float)
        km = {f"t_{tag}_km": _km_median(g, tag) for tag in ("func", "struct")}
        rows.append(
            {
                **dict(zip(by, key)),
                **km,
                "n_seeds": len(g),
                "n_func_first": n_f,
                "n_struct_first": n_s,
                "n_tie": int((first == "tie").sum()),
                "n_neither": int((first == "neither").sum()),
                "n_func_emerged": int(g["func_emerged"].astype(bool).sum()),
                "n_struct_emerged": int(g["struct_emerged"].astype(bool).sum()),
                "p_sign": sign_test(n_f, n_s),
                "p_tost": p_tost,
                "median_lag": float(np.median(lag[np.isfinite(lag)]))
                if np.isfinite(lag).any()
                else math.nan,
            }
        )
    out = pd.DataFrame(rows)
    # The family is the treated groups: λ = 0 control rows are judged on their raw p (any
    # verdict there is a false one) and do not dilute the treated rows' adjustment.
    control = (
        pd.to_numeric(out[PARAM_MI_WEIGHT], errors="coerce").eq(0.0)
        if PARAM_MI_WEIGHT in by
        else pd.Series(False, index=out.index)
    ).to_numpy(bool)
    for raw in ("p_sign", "p_tost"):
        adj = out[raw].to_numpy(float).copy()
        adj[~control] = bh_adjust(adj[~control])
        out[f"{raw}_bh"] = adj
    out["verdict"] = [
        never_emerged(r.n_seeds, r.n_func_emerged, r.n_struct_emerged)
        or verdict(r.n_func_first, r.n_struct_first, r.p_sign_bh, r.p_tost_bh, alpha)
        for r in out.itertuples()
    ]
    return out[cols]


def _km_median(g: pd.DataFrame, tag: str) -> float:
    """Kaplan–Meier median time to emergence of one metric over a group's seeds (NaN if none)."""
    from lifelines import KaplanMeierFitter

    ev = g[f"{tag}_emerged"].to_numpy(bool)
    dur = np.where(ev, g[f"t_{tag}"].to_numpy(float), g[f"t_{tag}_censor"].to_numpy(float))
    ok = np.isfinite(dur)
    if not ok.any():
        return math.nan
    return float(KaplanMeierFitter().fit(dur[ok], event_observed=ev[ok]).median_survival_time_)


def km_table(seeds: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Kaplan–Meier estimate of the fraction emerged against epoch, per metric and level.

    Durations are the onset epochs, or the censoring epochs for seeds where the metric did not
    emerge (lifelines ``KaplanMeierFitter``). Returns one row per (level, metric, epoch of the
    estimate's timeline): ``level``, ``metric`` (``func``/``struct``), ``epoch``, ``emerged``
    (1 − S(t)), ``n`` (seeds), ``events``, ``median`` (epoch where half have emerged, inf if
    not reached).
    """
    import pandas as pd
    from lifelines import KaplanMeierFitter

    cols = ["level", "metric", "epoch", "emerged", "n", "events", "median"]
    rows = []
    if not len(seeds):
        return pd.DataFrame(columns=cols)
    groups = seeds.groupby(by, sort=True) if by and by in seeds else [("all", seeds)]
    for level, g in groups:
        for tag in ("func", "struct"):
            ev = g[f"{tag}_emerged"].to_numpy(bool)
            dur = np.where(ev, g[f"t_{tag}"].to_numpy(float), g[f"t_{tag}_censor"].to_numpy(float))
            ok = np.isfinite(dur)
            if not ok.any():
                continue
            kmf = KaplanMeierFitter().fit(dur[ok], event_observed=ev[ok])
            sf = kmf.survival_function_.iloc[:, 0]
            med = float(kmf.median_survival_time_)
            for t, s in sf.items():
                rows.append(
                    {
                        "level": level,
                        "metric": tag,
                        "epoch": float(t),
                        "emerged": 1.0 - float(s),
                        "n": int(ok.sum()),
                        "events": int(ev[ok].sum()),
                        "median": med,
                    }
                )
    return pd.DataFrame(rows, columns=cols)


# a fit whose standard error exceeds this many times (1 + |coef|) has not converged to a finite
# estimate (separation, a flat likelihood): its coefficient says nothing
SE_LIMIT = 100.0
_REGRESSION_COLUMNS = ["target", "param", "coef", "se", "n", "n_events", "converged", "note"]


def censored_regression(
    seeds: pd.DataFrame, params: Sequence[str], *, step: float | None = None
) -> pd.DataFrame:
    """Relate timing to the hyperparameters without dropping the seeds that did not emerge:
    descriptive coefficients, no p-values.

    For t_func and t_struct: a Weibull accelerated-failure-time model (lifelines
    ``WeibullAFTFitter``) of the time to emergence, censored at the censoring epoch, on the
    numeric swept keys that vary; durations are shifted by one evaluation so an onset at epoch 0
    is positive. ``coef`` is the change of log time per unit of the key (exp(coef) the time
    ratio). For the which-first outcome: a logistic regression (statsmodels ``Logit``) of
    function-first (1) against structure-first (0) over the seeds with a sign.

    The seeds are pooled over cells that share their seed values (a grid runs the same seeds in
    every cell) and over seeds of one trial that share its hyperparameters, so they are not
    independent observations: a p-value from such a fit would count one seed several times, and
    none is given. A fit that did not converge (the optimiser says so, a convergence or
    separation warning, or an SE above :data:`SE_LIMIT` · (1 + |coef|)) gives NaN coefficients,
    ``converged`` false and the reason in ``note``; a model that cannot be fitted (too few
    seeds or events) gives one row with ``note``.

    Returns:
        Rows ``target``, ``param``, ``coef``, ``se``, ``n``, ``n_events``, ``converged``,
        ``note``.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    num = {p: pd.to_numeric(seeds[p], errors="coerce") for p in params if p in seeds}
    keys = [p for p, v in num.items() if v.notna().all() and v.nunique() > 1]
    if not keys or not len(seeds):
        return pd.DataFrame(
            [_failed_fit("all", len(seeds), 0, "no swept numeric key varies")],
            columns=_REGRESSION_COLUMNS,
        )
    x = pd.DataFrame({f"x{i}": num[p].to_numpy(float) for i, p in enumerate(keys)})
    names = {f"x{i}": p for i, p in enumerate(keys)}
    margins = _margins(seeds, step, 1.0)
    for tag in ("func", "struct"):
        ev = seeds[f"{tag}_emerged"].to_numpy(bool)
        dur = (
            np.where(
                ev, seeds[f"t_{tag}"].to_numpy(float), seeds[f"t_{tag}_censor"].to_numpy(float)
            )
            + margins
        )
        ok = np.isfinite(dur)
        rows += _aft(x[ok], dur[ok], ev[ok], f"t_{tag}", names)
    first = seeds["first"].astype(str).to_numpy()
    sel = np.isin(first, ("function", "structure"))
    rows += _logit(x[sel], (first[sel] == "function").astype(float), names)
    return pd.DataFrame(rows, columns=_REGRESSION_COLUMNS)


def _failed_fit(target: str, n: int, k: int, note: str) -> dict[str, Any]:
    """The one row of a model that was not fitted, with the reason."""
    return {
        "target": target,
        "param": "",
        "coef": math.nan,
        "se": math.nan,
        "n": n,
        "n_events": k,
        "converged": False,
        "note": note,
    }


def _fit_rows(
    target: str,
    names: dict[str, str],
    coef: Sequence[float],
    se: Sequence[float],
    n: int,
    k: int,
    problem: str,
) -> list[dict[str, Any]]:
    """One row per key; NaN coefficients and ``converged`` false when the fit did not converge
    (`problem` says why) or an SE is beyond :data:`SE_LIMIT`."""
    coef, se = np.asarray(coef, float), np.asarray(se, float)
    if not problem:
        bad = ~np.isfinite(se) | (se > SE_LIMIT * (1.0 + np.abs(coef)))
        if bad.any():
            i = int(np.argmax(bad))
            problem = (
                f"SE {se[i]:.3g} of coef {coef[i]:.3g} (more than {SE_LIMIT:g} · (1 + |coef|): "
                "separation or a flat likelihood)"
            )
    note = f"did not converge: {problem}" if problem else ""
    return [
        {
            "target": target,
            "param": p,
            "coef": math.nan if problem else float(coef[i]),
            "se": math.nan if problem else float(se[i]),
            "n": n,
            "n_events": k,
            "converged": not problem,
            "note": note,
        }
        for i, p in enumerate(names.values())
    ]


def _warned(caught: Sequence[Any], words: Sequence[str]) -> str:
    """The first caught warning whose category or text names one of `words`, as text."""
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if any(word in text.lower() for word in words):
            return " ".join(text.split())[:160]
    return ""


def _aft(
    x: pd.DataFrame, dur: np.ndarray, ev: np.ndarray, target: str, names: dict[str, str]
) -> list[dict[str, Any]]:
    """Weibull AFT coefficient rows of one onset, or one row with the reason it failed."""
    import warnings

    from lifelines import WeibullAFTFitter

    n, k = len(dur), int(ev.sum())
    if k < 2 or n < len(names) + 3:
        return [_failed_fit(target, n, k, f"too few seeds or onsets (n={n}, onsets={k})")]
    df = x.reset_index(drop=True).assign(_T=dur, _E=ev.astype(int))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = WeibullAFTFitter().fit(df, duration_col="_T", event_col="_E")
    except Exception as e:
        return [_failed_fit(target, n, k, f"did not converge: {type(e).__name__}")]
    s = fit.summary
    rows = [s.loc[("lambda_", col)] for col in names]
    problem = _warned(caught, ("convergence", "converge"))
    return _fit_rows(
        target, names, [r["coef"] for r in rows], [r["se(coef)"] for r in rows], n, k, problem
    )


def _logit(x: pd.DataFrame, y: np.ndarray, names: dict[str, str]) -> list[dict[str, Any]]:
    """Logistic-regression rows of function-first on the keys, or one row with the reason."""
    import warnings

    import statsmodels.api as sm

    n, k = len(y), int(y.sum())
    target = "function_first"
    if n < len(names) + 3 or k in (0, n):
        return [
            _failed_fit(
                target,
                n,
                k,
                f"too few seeds with a sign or one side only (n={n}, function first={k})",
            )
        ]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = sm.Logit(y, sm.add_constant(x.to_numpy(float), has_constant="add")).fit(
                disp=0, maxiter=100
            )
    except Exception as e:
        return [_failed_fit(target, n, k, f"did not converge: {type(e).__name__}")]
    problem = _warned(caught, ("convergence", "converge", "separation"))
    if not problem and not fit.mle_retvals.get("converged", True):
        problem = "the optimiser did not converge"
    return _fit_rows(target, names, fit.params[1:], fit.bse[1:], n, k, problem)


class Noise(NamedTuple):
    """A z-score curve's measured noise: marginal sd and lag-1 autocorrelation (AR(1))."""

    sd: float
    rho: float
    n_seeds: int


def measure_noise(curves: pd.DataFrame, column: str) -> Noise:
    """Noise of one metric's z-score curves, pooled over the given (λ = 0) seeds.

    Each seed's curve is centred on its own mean (so a steady offset is not noise); ``sd`` is the
    pooled sd of the deviations and ``rho`` their pooled lag-1 autocorrelation, clipped to
    [0, 0.99]: a smooth curve (q_struct's, a function of the weights) has small successive
    differences but a high rho, which is what makes its slow wander look like emergence.
    """
    if column not in curves or not len(curves):
        return Noise(math.nan, math.nan, 0)
    num = den = ss = 0.0
    n_dev, n_seeds = 0, 0
    keys = ["trial_id", "seed"] if "trial_id" in curves else ["seed"]
    for _, g in curves.sort_values("epoch").groupby(keys):
        v = g[column].to_numpy(float)
        v = v[np.isfinite(v)]
        if v.size < 3:
            continue
        d = v - v.mean()
        ss += float(d @ d)
        n_dev += v.size - 1
        num += float(d[1:] @ d[:-1])
        den += float(d @ d)
        n_seeds += 1
    if not n_seeds:
        return Noise(math.nan, math.nan, 0)
    rho = float(np.clip(num / den, 0.0, 0.99)) if den > 0 else 0.0
    return Noise(math.sqrt(ss / max(n_dev, 1)), rho, n_seeds)


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], noise: Noise) -> np.ndarray:
    """AR(1) noise with marginal sd ``noise.sd`` and lag-1 autocorrelation ``noise.rho``."""
    e = rng.normal(0.0, noise.sd, shape)
    out = np.empty(shape)
    out[..., 0] = e[..., 0]
    c = math.sqrt(1.0 - noise.rho**2)
    for t in range(1, shape[-1]):
        out[..., t] = noise.rho * out[..., t - 1] + c * e[..., t]
    return out


class Calibration(NamedTuple):
    """What the pipeline concludes from curve pairs that emerge at the same time, by design."""

    false_function_first: float  # fraction of simulated cells whose verdict is "function first"
    false_structure_first: float
    seed_function_first: float  # fraction of simulated seeds read as function first
    seed_structure_first: float
    false_emergence_func: float  # fraction of pure-noise q_func_z curves with an onset
    false_emergence_struct: float
    n_cells: int
    n_seeds: int
    alpha: float
    z: float
    run: int


def calibrate(
    func: Noise,
    struct: Noise,
    *,
    epochs: Any,
    n_seeds: int = 8,
    n_cells: int = 400,
    amplitude: float = 10.0,
    width_evals: float = 2.0,
    z: float = DEFAULT_Z,
    run: int = DEFAULT_RUN,
    tie_evals: int = TIE_EVALS,
    alpha: float = ALPHA,
    margin_evals: float = MARGIN_EVALS,
    rng: np.random.Generator,
) -> Calibration:
    """Run onsets → which-first → sign test / TOST → verdict on synthetic identical time courses.

    Every simulated seed draws one onset epoch uniformly in the middle half of the run, and both
    of its curves follow the same logistic rise to ``amplitude`` (z units) with that onset; each
    gets its metric's measured AR(1) noise (:func:`measure_noise`). Any "function first" verdict
    is false by construction. Cells of ``n_seeds`` seeds are judged exactly as the report judges
    a λ; the false-emergence rates come from curves of pure noise (no rise).

    Returns:
        The :class:`Calibration`.
    """
    t = np.asarray(epochs, float)
    _check_calibration(t, func, struct, run, rng)
    step = float(np.median(np.diff(t)))
    shape = (n_cells, n_seeds, t.size)
    lo, hi = t[0] + 0.25 * (t[-1] - t[0]), t[0] + 0.75 * (t[-1] - t[0])
    t0 = rng.uniform(lo, hi, (n_cells, n_seeds, 1))
    course = amplitude / (1.0 + np.exp(-(t - t0) / (width_evals * step)))
    zf = course + _ar1(rng, shape, func)
    zs = course + _ar1(rng, shape, struct)
    nf = _ar1(rng, shape, func)
    ns = _ar1(rng, shape, struct)
    margin = margin_evals * step
    n_ff = n_sf = 0
    seeds_f = seeds_s = 0
    emerge_f = emerge_s = 0
    for c in range(n_cells):
        firsts, lows, highs = [], [], []
        for s in range(n_seeds):
            of = onset(t, zf[c, s], threshold=z, run=run)
            os_ = onset(t, zs[c, s], threshold=z, run=run)
            firsts.append(which_first(of, os_, step, tie_evals))
            low, high = _seed_lag_bounds(of, os_)
            lows.append(low)
            highs.append(high)
            emerge_f += onset(t, nf[c, s], threshold=z, run=run).emerged
            emerge_s += onset(t, ns[c, s], threshold=z, run=run).emerged
        k_f, k_s = firsts.count("function"), firsts.count("structure")
        seeds_f += k_f
        seeds_s += k_s
        p_tost = tost_lag(lows, highs, margin)[0]
        v = verdict(k_f, k_s, sign_test(k_f, k_s), p_tost, alpha)
        n_ff += v == "function first"
        n_sf += v == "structure first"
    total = n_cells * n_seeds
    return Calibration(
        n_ff / n_cells,
        n_sf / n_cells,
        seeds_f / total,
        seeds_s / total,
        emerge_f / total,
        emerge_s / total,
        n_cells,
        n_seeds,
        alpha,
        z,
        run,
    )


def _check_calibration(
    t: np.ndarray, func: Noise, struct: Noise, run: int, rng: np.random.Generator
) -> None:
    """calibrate()'s argument checks: a numpy Generator, enough epochs, AR(1) noise that is
    finite and stationary."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"calibrate(): rng must be a numpy Generator, but got {type(rng)!r}.")
    if t.ndim != 1 or t.size < run + 2:
        raise ValueError(
            f"calibrate(): epochs must be 1-D with more than run + 1 = {run + 1} "
            f"evaluations, but got shape {t.shape}."
        )
    for name, nz in (("func", func), ("struct", struct)):
        if not (math.isfinite(nz.sd) and nz.sd >= 0 and 0 <= nz.rho < 1):
            raise ValueError(
                f"calibrate(): {name} noise must have a finite sd >= 0 and "
                f"0 <= rho < 1, but got {nz}."
            )


def _seed_lag_bounds(of: Onset, os_: Onset) -> tuple[float, float]:
    """Bounds on one seed's lag t_struct − t_func: exact when both emerged, one-sided from the
    censoring epoch when one did, unbounded when neither did (the TOST's interval data)."""
    if of.emerged and os_.emerged:
        return os_.epoch - of.epoch, os_.epoch - of.epoch
    if of.emerged:
        return os_.censor - of.epoch, np.inf
    if os_.emerged:
        return -np.inf, os_.epoch - of.censor
    return -np.inf, np.inf


def false_emergence(seeds: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per metric tag, (seeds with an onset, seeds) among the given (λ = 0 control) seeds."""
    return {
        tag: (int(seeds[f"{tag}_emerged"].astype(bool).sum()), len(seeds))
        for tag in ("func", "struct")
    }
