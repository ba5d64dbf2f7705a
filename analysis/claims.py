"""The paper's claims, cell by cell, each against its own λ = 0 control.

Tomoda et al. claim that under the MI penalty (a) accuracy stays high, (b) functional modularity
becomes clear and (c) structural modularity moderate, and (d) function comes before structure.
(d) is :mod:`analysis.emergence`'s verdict table. This module tests (a)–(c) and the MI drop the
penalty is for, in every cell of a study (a cell: one value of every swept key other than
``mi.weight``), each treated λ against the λ = 0 trial of the *same* cell, paired by seed: the
same initialisation and data stream, so the pair differs only in the penalty.

Per (cell, λ > 0, claim): the paired differences treated − control, their median (the effect),
their mean and the worst seed's change, a p-value, Benjamini–Hochberg across the treated cells of
that claim (never across claims), and a verdict with a declared rule (:data:`CLAIMS`). Cells are
never pooled. The rises and the MI drop are tested with the two-sided exact Wilcoxon
signed-rank test; "accuracy holds" needs *equivalence*: a paired TOST (two one-sided t-tests)
that the mean change lies within ±margin (:data:`ACCURACY_MARGIN`, declared, default 0.02), since
the absence of a significant drop is not evidence that accuracy was kept.
:func:`calibrate_paired` measures the false-positive rate of the signed-rank test on synthetic
pairs with no effect (normal, heavy-tailed, and tied data), at this study's n.

SciPy, pandas and statsmodels are imported inside the functions, as in analysis.emergence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from analysis.emergence import ALPHA
from study.contract.outcomes import SUCCESS_THRESHOLD
from study.contract.params import PARAM_MI_WEIGHT as LAMBDA

if TYPE_CHECKING:
    import pandas as pd

CLEAR_Z = 3.0  # a modularity z-score against random partitions above this is "clear"
# "accuracy holds": the paired mean change of the final task metric lies within ±this (TOST)
ACCURACY_MARGIN = 0.02


@dataclass(frozen=True)
class Claim:
    """One claim: the per-seed value it reads, and what the paired test must show."""

    name: str
    column: str  # a column of the per-seed table (study.contract.outcomes.seed_table)
    text: str
    direction: int  # +1: the penalty should raise it, -1: lower it, 0: leave it unchanged


CLAIMS = (
    Claim("accuracy", "final.<task>", "accuracy stays high", 0),
    Claim("functional", "final.q_func_z", "clear functional modularity", +1),
    Claim("structural", "final.q_struct_z", "moderate structural modularity", +1),
    Claim("mi", "mi_excess", "the MI penalty lowers the measured MI", -1),
)
# The GRU's recurrent blocks one by one (docs/run-data.md, "The GRU's recurrent blocks"). The
# paper's structural modularity of the GRU is Q of the candidate block U_h, i.e. the claim
# "structural" above (the official code's Q_str, docs/method.md §10.2); these read the same
# z-score on the update-gate block U_z, the reset-gate block U_r and the summed magnitudes
# |U_z| + |U_r| + |U_h|, and the signed block change D of the weights (ΔW: within-group minus
# between-group change of magnitude, z-scored; "change" is U_h, the leaky RNN's W_rec), each
# with the rule of "structural". Not part of CLAIMS: pass them to claims_table(claims=...).
GRU_BLOCK_CLAIMS = (
    Claim("structural_update", "final.q_update_z", "modular update-gate block U_z", +1),
    Claim("structural_reset", "final.q_reset_z", "modular reset-gate block U_r", +1),
    Claim("structural_gru_sum", "final.q_gru_sum_z", "modular |U_z| + |U_r| + |U_h|", +1),
    Claim("change", "final.dw_block_z", "modular weight change of U_h (W_rec)", +1),
    Claim("change_update", "final.dw_block_update_z", "modular weight change of U_z", +1),
    Claim("change_reset", "final.dw_block_reset_z", "modular weight change of U_r", +1),
    Claim("change_gru_sum", "final.dw_block_gru_sum_z", "modular change of the sum", +1),
)
# the direction each claim's metric should move under the penalty, by claim name
_DIRECTION = {c.name: c.direction for c in (*CLAIMS, *GRU_BLOCK_CLAIMS)}


def _column(seeds: pd.DataFrame, claim: Claim, task_metric: str) -> np.ndarray:
    """The per-seed values a claim reads (held-out MI as excess over its null)."""
    if claim.column == "mi_excess":
        if {"final.mi_heldout", "final.mi_heldout_null"} <= set(seeds.columns):
            return (seeds["final.mi_heldout"] - seeds["final.mi_heldout_null"]).to_numpy(float)
        return np.full(len(seeds), math.nan)
    col = claim.column.replace("<task>", task_metric)
    if col not in seeds:
        return np.full(len(seeds), math.nan)
    return seeds[col].to_numpy(float)


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (exact when SciPy can; 1 if all 0).

    Zero differences are dropped (Wilcoxon's convention); with none left the data carry no
    evidence, so p = 1.
    """
    from scipy import stats

    d = np.asarray(diff, float)
    d = d[np.isfinite(d) & (d != 0)]
    if len(d) == 0:
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def _cells(seeds: pd.DataFrame, swept: list[str]) -> list[str]:
    """The keys that define a cell: every swept key except λ that has more than one value."""
    return [k for k in swept if k != LAMBDA and k in seeds and seeds[k].nunique(dropna=False) > 1]


def tost_paired(diff: np.ndarray, margin: float, alpha: float = ALPHA) -> dict[str, float]:
    """Equivalence of paired differences with 0 within ±margin: two one-sided paired t-tests.

    With d̄ the mean of the n differences, s their sd and se = s/√n (df = n − 1):
    p_lower = P(T ≥ (d̄ + margin)/se) tests H0: μ ≤ −margin, p_upper = P(T ≤ (d̄ − margin)/se)
    tests H0: μ ≥ margin, and the TOST p is the larger (equivalence when p < α, the same as the
    (1 − 2α) interval d̄ ± t_{1−α} se lying inside ±margin). ``p_drop`` is the one-sided p of
    H0: μ ≥ −margin (a drop larger than the margin when small). With s = 0 the interval is the
    point d̄. Fewer than two differences give NaN.

    Returns:
        ``p`` (TOST), ``p_drop``, ``ci_lo``, ``ci_hi`` (the 1 − 2α interval of μ).
    """
    from scipy import stats

    d = np.asarray(diff, float)
    d = d[np.isfinite(d)]
    nan = math.nan
    if len(d) < 2:
        return {"p": nan, "p_drop": nan, "ci_lo": nan, "ci_hi": nan}
    m, se, df = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d)), len(d) - 1
    if se == 0:
        inside = -margin < m < margin
        return {
            "p": 0.0 if inside else 1.0,
            "p_drop": 0.0 if m < -margin else 1.0,
            "ci_lo": m,
            "ci_hi": m,
        }
    p_lower = float(stats.t.sf((m + margin) / se, df))
    p_upper = float(stats.t.cdf((m - margin) / se, df))
    half = float(stats.t.ppf(1 - alpha, df)) * se
    return {
        "p": max(p_lower, p_upper),
        "p_drop": 1.0 - p_lower,
        "ci_lo": m - half,
        "ci_hi": m + half,
    }


def claims_table(
    seeds: pd.DataFrame,
    swept: list[str],
    *,
    task_metric: str = "accuracy",
    alpha: float = ALPHA,
    margin: float = ACCURACY_MARGIN,
    claims: Sequence[Claim] = CLAIMS,
) -> pd.DataFrame:
    """One row per (cell, λ > 0, claim): n, medians, paired effect, p, BH p, verdict.

    Args:
        seeds: per-seed outcomes (``analysis.runs.StudyData.seeds``), with ``seed_value`` (else
            ``seed``, the member index) to pair on and the swept keys as columns. Seeds of
            trials that did not finish should be dropped by the caller; a seed missing in the
            control or the treated trial is unpaired and left out of that row (``n`` says how
            many pairs remain).
        swept: the study's swept keys; must include ``mi.weight`` with a 0 value, else the
            table is empty (no control, no claim can be tested).
        task_metric: ``accuracy`` or ``r2``; the success threshold comes from
            :data:`study.contract.outcomes.SUCCESS_THRESHOLD`.
        margin: the equivalence margin of "accuracy holds" (task-metric units).
        claims: the claims to test (default :data:`CLAIMS`; :data:`GRU_BLOCK_CLAIMS` reads the
            GRU's blocks); BH runs within each claim, so the choice changes no p_bh.

    Returns:
        Columns: the cell keys, ``mi.weight``, ``claim``, ``test``, ``n``, ``median_control``,
        ``median_treated``, ``effect`` (median of treated − control), ``mean_change``,
        ``worst_change`` (the seed that moved most the wrong way: lowest change for accuracy
        and the rises, highest for the MI), ``ci_lo``, ``ci_hi`` (accuracy: the 1 − 2α
        interval of the mean change), ``n_in_direction``, ``p`` (accuracy: TOST), ``p_bh``
        (BH across the treated cells of the same claim), ``p_drop``, ``p_drop_bh`` (accuracy:
        a drop beyond the margin), ``n_success`` (accuracy rows: treated seeds above the
        threshold; missing elsewhere), ``margin``, ``verdict``.
    """
    import pandas as pd

    pair_on = next((c for c in ("seed_value", "seed") if c in seeds), None)
    if pair_on is None or LAMBDA not in seeds or not (pd.to_numeric(seeds[LAMBDA]) == 0).any():
        return pd.DataFrame()
    cell_keys = _cells(seeds, swept)
    rows = []
    groups = seeds.groupby(cell_keys, sort=True, dropna=False) if cell_keys else [((), seeds)]
    for key, cell in groups:
        key = key if isinstance(key, tuple) else (key,)
        lam = pd.to_numeric(cell[LAMBDA])
        control = cell[lam == 0].set_index(pair_on)
        for value in sorted(set(lam[lam != 0])):
            treated = cell[lam == value].set_index(pair_on)
            both = control.index.intersection(treated.index)
            for claim in claims:
                c = _column(control.loc[both], claim, task_metric)
                t = _column(treated.loc[both], claim, task_metric)
                row = _row(claim, c, t, task_metric, margin, alpha)
                rows.append({**dict(zip(cell_keys, key)), LAMBDA: value, **row})
    out = pd.DataFrame(rows)
    return _adjust(out, alpha)


def _row(
    claim: Claim, c: np.ndarray, t: np.ndarray, task_metric: str, margin: float, alpha: float
) -> dict:
    """The numbers of one (cell, λ, claim) row before the multiple-testing adjustment."""
    ok = np.isfinite(c) & np.isfinite(t)
    c, t = c[ok], t[ok]
    d = t - c
    nan = math.nan
    # the wrong way: down for accuracy and the rises, up for the MI
    wrong = -1 if claim.direction >= 0 else 1
    row = {
        "claim": claim.name,
        "test": "Wilcoxon signed-rank",
        "n": int(len(d)),
        "median_control": float(np.median(c)) if len(c) else nan,
        "median_treated": float(np.median(t)) if len(t) else nan,
        "effect": float(np.median(d)) if len(d) else nan,
        "mean_change": float(np.mean(d)) if len(d) else nan,
        "worst_change": float(d[np.argmax(wrong * d)]) if len(d) else nan,
        "ci_lo": nan,
        "ci_hi": nan,
        "n_in_direction": int((np.sign(d) == claim.direction).sum())
        if claim.direction
        else int((np.abs(d) <= margin).sum()),
        "p": wilcoxon_p(d) if len(d) else nan,
        "p_drop": nan,
        "n_success": None,
        "margin": nan,
    }
    if claim.name == "accuracy":
        tost = tost_paired(d, margin, alpha)
        row |= tost | {
            "test": f"TOST (paired t, margin ±{margin:g})",
            "n_success": int((t > SUCCESS_THRESHOLD[task_metric]).sum()),
            "margin": margin,
        }
    return row


def _adjust(out: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """BH within each claim across the treated cells, then the verdict of every row."""
    if not len(out):
        return out
    out["n_success"] = out["n_success"].astype("Int64")
    for raw in ("p", "p_drop"):
        out[f"{raw}_bh"] = math.nan
        for _, idx in out.groupby("claim").groups.items():
            out.loc[idx, f"{raw}_bh"] = _bh(out.loc[idx, raw].to_numpy(float))
    out["verdict"] = [_verdict(r, alpha) for r in out.to_dict("records")]
    order = [c for c in out.columns if c not in ("p_bh", "p_drop", "p_drop_bh", "verdict")]
    i = order.index("p") + 1
    order[i:i] = ["p_bh", "p_drop", "p_drop_bh"]
    return out[[*order, "verdict"]]


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values, NaN kept in place (statsmodels)."""
    from statsmodels.stats.multitest import multipletests

    adj = np.full(len(p), math.nan)
    fin = np.isfinite(p)
    if fin.any():
        adj[fin] = multipletests(p[fin], method="fdr_bh")[1]
    return adj


def _count(v: object) -> int:
    """A count cell as an int (a missing one, None or pd.NA, is 0)."""
    try:
        return int(v)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _verdict(r: dict, alpha: float) -> str:
    """The declared rule of each claim (docs/analysis.md, "Claims").

    - accuracy: *holds* when the paired mean change is equivalent to 0 within ±margin (TOST,
      p_bh < α) and all treated seeds but at most one are above the success threshold;
      *breaks* when fewer than half of them succeed or the mean drop is significantly larger
      than the margin (p_drop_bh < α); else *inconclusive* (the data cannot tell: no drop is
      shown, but neither is equivalence).
    - functional / structural (and each of :data:`GRU_BLOCK_CLAIMS`): *holds* when the paired
      rise is significant (p_bh < α, effect > 0) and the treated median z is above
      :data:`CLEAR_Z` (clear against random partitions); *weak* when significant but the
      median z is at most CLEAR_Z; *breaks* when the effect is significant the wrong way; else
      *inconclusive*.
    - mi: *holds* when the held-out excess drops significantly; else *inconclusive* (or
      *breaks* when it rises significantly).
    """
    n, p, eff = r["n"], r["p_bh"], r["effect"]
    if r["claim"] == "accuracy":
        if n == 0:
            return "not measured"
        n_ok = _count(r["n_success"])
        if n_ok * 2 < n or (np.isfinite(r["p_drop_bh"]) and r["p_drop_bh"] < alpha):
            return "breaks"
        if np.isfinite(p) and p < alpha and n_ok >= n - 1:
            return "holds"
        return "inconclusive"
    if n == 0 or not np.isfinite(p):
        return "not measured"
    sig = p < alpha
    sign = _DIRECTION.get(r["claim"], -1)
    if sig and eff * sign < 0:
        return "breaks"
    if not sig:
        return "inconclusive"
    if r["claim"] == "mi":
        return "holds"
    return "holds" if r["median_treated"] > CLEAR_Z else "weak"


def calibrate_paired(
    n: int, *, reps: int = 1000, alpha: float = ALPHA, rng: np.random.Generator | None = None
) -> pd.DataFrame:
    """False-positive rate of :func:`wilcoxon_p` at n pairs on synthetic data with no effect.

    Three no-effect worlds: normal differences, Cauchy (heavy-tailed) differences, and
    differences rounded to a coarse grid (ties and zeros, as accuracy values give). A calibrated
    test rejects in at most about α of the replicates in each (Monte Carlo SE ~0.7 % at 1000
    replicates). Without `rng` the draws come from a fixed seed and the result is cached per
    (n, reps, alpha): a report pays for it once per process, and reruns print the same rates.

    Returns:
        One row per world: ``world``, ``n``, ``reps``, ``rejected`` (fraction with p < α).
    """
    if rng is None:
        return _calibrate_cached(int(n), int(reps), float(alpha)).copy()
    return _calibrate(n, reps, alpha, rng)


@functools.lru_cache(maxsize=32)
def _calibrate_cached(n: int, reps: int, alpha: float) -> pd.DataFrame:
    return _calibrate(n, reps, alpha, np.random.default_rng([n, reps]))


def _calibrate(n: int, reps: int, alpha: float, rng: np.random.Generator) -> pd.DataFrame:
    import pandas as pd

    worlds = {
        "normal": lambda: rng.standard_normal(n),
        "cauchy": lambda: rng.standard_cauchy(n),
        "ties": lambda: np.round(rng.standard_normal(n) * 2) / 2,
    }
    rows = []
    for name, draw in worlds.items():
        rej = sum(wilcoxon_p(draw()) < alpha for _ in range(reps))
        rows.append({"world": name, "n": n, "reps": reps, "rejected": rej / reps})
    return pd.DataFrame(rows)
