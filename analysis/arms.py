"""The arms of a study against its control arm: paired by seed, per cell, with verdicts phrased
for what each arm tests.

A study with ``arms`` (study/spec/studyspec.py) trains every arm of a cell with the same seeds:
the same initialisations and data streams, and, until an arm's intervention acts, the same
networks bit for bit (forks share their parent's past). So an arm is compared with the control
arm the spec names (``control_arm``, the ``study.arms`` tag), seed by seed, in each cell (one
value of every other swept key); arms and cells are never pooled.

Three tables, all per (cell, arm):

- :func:`arm_comparisons`: for each quantity (:func:`quantities`: the final task score,
  q_func_z, Q(|W|) z and ΔW z; the half-rise timing onsets of q_func_z and of each structure
  measure, :mod:`study.contract.rise`; for an arm whose partition was swapped, its designed
  partition's finals too), the paired differences d_i = arm_i − control_i over the seeds both
  have: n, the median of each side, the effect (median d) with a distribution-free CI (order
  statistics of d, :func:`median_ci`), and a two-sided Wilcoxon signed-rank test (SciPy's,
  exact for small n; zeros dropped). An onset is an interval [lo, hi] (censored: not yet
  resolved, or never detected), so d_i is the interval [lo_a − hi_c, hi_a − lo_c] and the test
  is the signed-rank statistic generalised to intervals (:func:`analysis.timing.signflip_test`,
  exact Wilcoxon for point differences); the effect is the median over the pairs whose both
  onsets are points.
- :func:`arm_verdicts`: the questions each arm asks (:func:`arm_questions`, read from the arm's
  own config: a penalty switched off, W_rec frozen, the partition swapped, a structure-only
  penalty, no penalty), each answered yes / weak / no / inconclusive. A question about what
  happens *after* the intervention tests the change of a curve from the seed's switch epoch
  (the first evaluation with ``intervened`` = 1; with a swapped partition the first evaluation
  after it, the first on the new partition) to its final value, over the seeds that switched;
  a question about a *level* tests the seeds' final z-score against 0 (a z-score against
  random partitions is about N(0, 1) without group structure) and calls it clear above
  :data:`analysis.claims.CLEAR_Z`. Both by the one-sample Wilcoxon signed-rank test.
- :func:`arm_lesions`: at each seed's last lesion evaluation (``lesion_*``, train.lesion_every),
  the drop of the task score and of q_func_z when the between-group blocks of W_rec are zeroed,
  reset to W(0), or all of W_rec is reset to W(0): drop = intact − lesioned at the same
  evaluation, its median and CI per arm, a one-sample test of the drop, and the paired
  difference of the drops against the control's.

Multiple testing: Benjamini–Hochberg within each arm's family (its comparisons and questions
over every cell; the lesions are a family of their own per arm), never across arms. An
inconclusive result says whether the comparison could have seen an effect of interest
(:data:`INTEREST`): "inconclusive (power)" when its n pairs cannot reach α/family at all (the
smallest two-sided signed-rank p is 2/2ⁿ), or when the shift it detects with 80 % power at
α/family (:func:`study.contract.power.detectable_effect` times the spread of the differences)
exceeds the effect of interest; the note says which (the wording of :mod:`analysis.timing`).

Everything here takes per-seed and curve tables (``analysis.runs.StudyData.seeds`` /
``.curves``), so it runs on synthetic data as well as on a study; :func:`analyse_arms` reads a
loaded study. SciPy and pandas are imported inside the functions.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from analysis.claims import ACCURACY_MARGIN, CLEAR_Z
from analysis.emergence import ALPHA
from study.contract.names import (
    INTERVENED,
    LESIONS,
    ORIG_SUFFIX,
    TIMING_FUNCTION,
    TIMING_STRUCTURE,
)
from study.contract.params import PARAM_ARM, PARAM_MI_WEIGHT
from study.contract.power import LEAD_OF_INTEREST_EVALS, detectable_effect
from study.contract.rise import STEP_COLUMN, onset_column
from study.contract.tags import TAG_ARMS

if TYPE_CHECKING:
    import pandas as pd

    from analysis.runs import StudyData

__all__ = [
    "ARM",
    "COMPARISON_COLUMNS",
    "CURVE_METRICS",
    "INTEREST",
    "LESION_COLUMNS",
    "VERDICT_COLUMNS",
    "ArmAnalysis",
    "ArmDesign",
    "Quantity",
    "Question",
    "analyse_arms",
    "arm_comparisons",
    "arm_curve_bands",
    "arm_design",
    "arm_lesions",
    "arm_questions",
    "arm_verdicts",
    "median_ci",
    "quantities",
    "switch_epochs",
]

ARM = PARAM_ARM  # the column of the per-seed table that names a seed's arm
# the shift a comparison should be able to see, per unit: a task score, a z-score, an onset
# (evaluations of the regular schedule)
INTEREST = {"score": ACCURACY_MARGIN, "z": 2.0, "onset": LEAD_OF_INTEREST_EVALS}
CURVE_METRICS = (TIMING_FUNCTION, *(s[0] for s in TIMING_STRUCTURE))  # the Arms figure's curves
_STRUCT_LABEL = {s[0]: s[2] for s in TIMING_STRUCTURE}  # q_struct_z -> Q(|W|), dw_block_z -> ΔW

COMPARISON_COLUMNS = (
    "arm",
    "quantity",
    "column",
    "kind",
    "test",
    "n",
    "n_tested",
    "median_control",
    "median_arm",
    "effect",
    "ci_lo",
    "ci_hi",
    "ci_level",
    "n_up",
    "n_down",
    "statistic",
    "p",
    "p_bh",
    "family",
    "interest",
    "detectable",
    "power_note",
    "verdict",
)
VERDICT_COLUMNS = (
    "arm",
    "question",
    "verdict",
    "n",
    "why",
    "metric",
    "kind",
    "median",
    "ci_lo",
    "ci_hi",
    "ci_level",
    "n_up",
    "n_down",
    "p",
    "p_bh",
    "family",
    "detectable",
    "power_note",
    "n_switched",
    "switch_median",
)
LESION_COLUMNS = (
    "arm",
    "lesion",
    "measure",
    "n",
    "epoch",
    "median_intact",
    "median_lesioned",
    "median_drop",
    "ci_lo",
    "ci_hi",
    "ci_level",
    "n_drop",
    "p",
    "p_bh",
    "drop_vs_control",
    "vs_ci_lo",
    "vs_ci_hi",
    "n_vs",
    "p_vs",
    "p_vs_bh",
)


# ---- the design ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmDesign:
    """The arms of a study: the control's name and each arm's overrides (dotted keys), in the
    spec's order, from the study run's ``study.arms`` tag (else the arms the seeds carry,
    without a control)."""

    control: str | None
    arms: dict[str, dict[str, Any]]

    @property
    def treated(self) -> list[str]:
        """The arms compared with the control, in order."""
        return [a for a in self.arms if a != self.control]


def arm_design(data: StudyData) -> ArmDesign | None:
    """The study's :class:`ArmDesign`, None when it has no arms."""
    tag = data.tags.get(TAG_ARMS)
    parsed: Any = None
    if isinstance(tag, str) and tag.strip():
        try:
            parsed = json.loads(tag)
        except json.JSONDecodeError:
            parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("arms"), dict):
        arms = {str(k): dict(v or {}) for k, v in parsed["arms"].items()}
        control = parsed.get("control")
        return ArmDesign(str(control) if control in arms else None, arms)
    seeds = data.seeds
    if ARM not in seeds or not seeds[ARM].notna().any():
        return None
    return ArmDesign(None, {str(a): {} for a in dict.fromkeys(seeds[ARM].dropna())})


def _cell_keys(seeds: pd.DataFrame, swept: Sequence[str]) -> list[str]:
    """The keys of a cell: every swept key other than the arm that takes more than one value."""
    return [k for k in swept if k != ARM and k in seeds and seeds[k].nunique(dropna=False) > 1]


def _pair_key(seeds: pd.DataFrame) -> str:
    return "seed_value" if "seed_value" in seeds else "seed"


# ---- what an arm is, from its config ------------------------------------------------------------


def _value(v: Any) -> Any:
    """A logged param back to a value: numbers, None, lists (JSON or Python literals)."""
    if isinstance(v, str):
        s = v.strip()
        if s in ("", "None", "null", "nan"):
            return None
        for parse in (json.loads, ast.literal_eval):
            try:
                return parse(s)
            except (ValueError, SyntaxError, json.JSONDecodeError):
                continue
        return s
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _arm_config(seeds: pd.DataFrame, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """An arm's intervention keys: its trials' params where logged, else its overrides."""
    keys = (
        PARAM_MI_WEIGHT,
        "intervention.at",
        "intervention.mi_weight",
        "intervention.freeze",
        "intervention.swap_partition",
        "structure_penalty.weight",
    )
    out: dict[str, Any] = {}
    for k in keys:
        v = None
        if k in seeds and len(seeds):
            col = seeds[k].dropna()
            v = _value(col.iloc[0]) if len(col) else None
        if v is None and k in overrides:
            v = _value(overrides[k])
        out[k] = v
    return out


@dataclass(frozen=True)
class Question:
    """One thing an arm tests, answered yes / weak / no / inconclusive.

    ``kind`` "after": the change of ``metric`` from the seed's switch (``baseline`` "switch":
    the evaluation at its switch epoch, before the intervention acted; "next": the first
    evaluation after it) to its final value, "yes" when significant in ``direction``.
    ``kind`` "level": the final ``metric`` (a z-score) against 0, "yes" when significantly
    above 0 and its median above CLEAR_Z, "weak" when significant but not clear, "no" when
    the CI of the median lies below CLEAR_Z.
    """

    text: str
    metric: str
    kind: str  # "after" | "level"
    direction: int = 1
    baseline: str = "switch"


def _roles_text(roles: Sequence[str]) -> str:
    words = {
        "w_rec": "W_rec",
        "w_in": "W_in",
        "w_out": "W_out",
        "w_rec_between": "W_rec's between-group blocks",
        "w_rec_within": "W_rec's within-group blocks",
    }
    return " and ".join(words.get(r, r) for r in roles)


def arm_questions(config: Mapping[str, Any]) -> list[Question]:
    """The questions an arm asks, from its intervention keys (:func:`_arm_config`): the
    metric names are the curves' (q_func_z, q_struct_z, dw_block_z and a swapped arm's
    ``<metric>_orig``)."""
    lam = config.get(PARAM_MI_WEIGHT)
    at = config.get("intervention.at")
    iv_lam = config.get("intervention.mi_weight")
    freeze = list(config.get("intervention.freeze") or [])
    swap = bool(config.get("intervention.swap_partition"))
    c = config.get("structure_penalty.weight") or 0.0
    qs: list[Question] = []
    structs = [s[0] for s in TIMING_STRUCTURE]
    active = at is not None
    if active and iv_lam is not None and lam is not None and float(iv_lam) != float(lam):
        if float(iv_lam) == 0.0:
            for s in structs:
                qs.append(
                    Question(
                        f"structure ({_STRUCT_LABEL[s]}) keeps forming after the penalty is "
                        "switched off",
                        s,
                        "after",
                        +1,
                    )
                )
            qs.append(
                Question(
                    "functional modularity recedes after the penalty is switched off",
                    TIMING_FUNCTION,
                    "after",
                    -1,
                )
            )
        else:
            word = "on" if float(lam) == 0.0 else "up"
            qs.append(
                Question(
                    f"function forms after the penalty is switched {word}",
                    TIMING_FUNCTION,
                    "after",
                    +1,
                )
            )
            for s in structs:
                qs.append(
                    Question(
                        f"structure ({_STRUCT_LABEL[s]}) forms after the penalty is switched "
                        f"{word}",
                        s,
                        "after",
                        +1,
                    )
                )
    if active and freeze:
        roles = _roles_text(freeze)
        if at == 0:
            qs.append(Question(f"function emerges with {roles} frozen", TIMING_FUNCTION, "level"))
        else:
            qs.append(
                Question(
                    f"function keeps forming with {roles} frozen", TIMING_FUNCTION, "after", +1
                )
            )
    if active and swap:
        qs.append(
            Question(
                "function follows the penalty to the new partition",
                TIMING_FUNCTION,
                "after",
                +1,
                "next",
            )
        )
        qs.append(
            Question(
                f"structure ({_STRUCT_LABEL['q_struct_z']}) forms on the new partition",
                "q_struct_z",
                "after",
                +1,
                "next",
            )
        )
        qs.append(
            Question(
                "the designed partition's functional modularity recedes",
                f"{TIMING_FUNCTION}{ORIG_SUFFIX}",
                "after",
                -1,
            )
        )
        qs.append(
            Question(
                f"the designed partition's structure ({_STRUCT_LABEL['q_struct_z']}) recedes",
                f"q_struct_z{ORIG_SUFFIX}",
                "after",
                -1,
            )
        )
    if float(c) > 0:
        qs.append(
            Question(
                f"structure is imposed (final {_STRUCT_LABEL['q_struct_z']} clear)",
                "q_struct_z",
                "level",
            )
        )
        qs.append(Question("imposed structure brings function with it", TIMING_FUNCTION, "level"))
    elif lam is not None and float(lam) == 0.0 and not active:
        qs.append(
            Question("function becomes modular without the penalty", TIMING_FUNCTION, "level")
        )
        qs.append(
            Question(
                f"structure ({_STRUCT_LABEL['q_struct_z']}) becomes modular without the penalty",
                "q_struct_z",
                "level",
            )
        )
    return qs


# ---- the quantities compared with the control -------------------------------------------


@dataclass(frozen=True)
class Quantity:
    """One per-seed quantity an arm is compared with its control on.

    ``column``: the arm's column of the per-seed table (``final.<metric>``, or the metric of
    an onset); ``control_column``: the control's (a swapped arm's designed-partition final
    against the control's final on that partition); ``unit``: a key of :data:`INTEREST`.
    """

    label: str
    column: str
    kind: str  # "final" | "onset"
    unit: str
    control_column: str | None = None


def quantities(task_metric: str, columns: Sequence[str], *, swapped: bool) -> list[Quantity]:
    """The quantities an arm is compared on, those the per-seed table has: final task score,
    q_func_z, each structure measure's z; the onsets of q_func_z and of each structure measure;
    with ``swapped`` the designed partition's final q_func_z and Q(|W|) z."""
    cols = set(columns)
    out = [Quantity(f"final {task_metric}", f"final.{task_metric}", "final", "score")]
    out.append(Quantity("final q_func_z", f"final.{TIMING_FUNCTION}", "final", "z"))
    for s, _, label in TIMING_STRUCTURE:
        out.append(Quantity(f"final {label} z ({s})", f"final.{s}", "final", "z"))
    out.append(Quantity("functional onset (q_func_z)", TIMING_FUNCTION, "onset", "onset"))
    for s, _, label in TIMING_STRUCTURE:
        out.append(Quantity(f"structure onset ({label})", s, "onset", "onset"))
    if swapped:
        for m, label in ((TIMING_FUNCTION, "q_func_z"), ("q_struct_z", "Q(|W|) z")):
            out.append(
                Quantity(
                    f"final {label}, designed partition",
                    f"final.{m}{ORIG_SUFFIX}",
                    "final",
                    "z",
                    control_column=f"final.{m}",
                )
            )
    keep = []
    for q in out:
        need = (
            [q.column, q.control_column or q.column]
            if q.kind == "final"
            else [onset_column(q.column, "lo"), onset_column(q.column, "hi")]
        )
        if all(c in cols for c in need):
            keep.append(q)
    return keep


# ---- statistics -----------------------------------------------------------------------------


def median_ci(d: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free CI of the median of d: [d_(k), d_(n+1−k)] with the largest k whose
    coverage 1 − 2·P(B <= k − 1), B ~ Binomial(n, ½), is at least ``level`` (k = 1, the range,
    when even that is below it: n <= 5). Returns (lo, hi, coverage); NaN without values."""
    from scipy.stats import binom

    x = np.sort(np.asarray(d, float)[np.isfinite(np.asarray(d, float))])
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan
    k = 1
    while k + 1 <= (n + 1) // 2 and 1.0 - 2.0 * binom.cdf(k, n, 0.5) >= level:
        k += 1
    coverage = 1.0 - 2.0 * binom.cdf(k - 1, n, 0.5)
    return float(x[k - 1]), float(x[n - k]), float(coverage)


def _signed_rank_sign(d: np.ndarray) -> int:
    """The side of a signed-rank test: sign of Σ sign(d_i)·rank(|d_i|) over d_i != 0."""
    from scipy.stats import rankdata

    d = d[np.isfinite(d) & (d != 0)]
    if not d.size:
        return 0
    return int(np.sign(np.sum(np.sign(d) * rankdata(np.abs(d)))))


def _wilcoxon(d: np.ndarray) -> tuple[float, int, int]:
    """Two-sided Wilcoxon signed-rank p (SciPy; zeros dropped, p = 1 without a non-zero d),
    the statistic's side, and the number of non-zero differences tested."""
    from analysis.claims import wilcoxon_p

    d = d[np.isfinite(d)]
    nz = int((d != 0).sum())
    return (wilcoxon_p(d) if nz else 1.0), _signed_rank_sign(d), nz


def _spread(d: np.ndarray) -> float:
    """The spread behind a comparison's power: the larger of the robust and the sample sd."""
    from analysis.timing.verdicts import lag_spread

    return lag_spread(d)


def _power(n: int, family: int, alpha: float, spread: float, interest: float) -> tuple[float, str]:
    """The shift a comparison of n pairs detects with 80 % power at α/family (units of the
    quantity; inf when n cannot reach the level), and why, in words."""
    level = alpha / max(family, 1)
    eff = detectable_effect(n, level) if n > 0 else math.inf
    if math.isinf(eff):
        best = 2.0 / 2.0**n if n > 0 else 1.0
        return math.inf, (
            f"{n} pairs cannot reach p <= {level:.4g} (α/{family}): the smallest possible p is "
            f"{best:.4g}"
        )
    if not (math.isfinite(spread) and spread > 0):
        return math.nan, "no spread of the differences to judge power from"
    shift = eff * spread
    return shift, (
        f"80 % power for a shift of {shift:.3g} at n = {n}, spread {spread:.3g}, level "
        f"α/{family} = {level:.4g} (effect of interest {interest:g})"
    )


def _inconclusive(detectable: float, interest: float) -> str:
    return "inconclusive" if detectable <= interest else "inconclusive (power)"


# ---- per-seed helpers ------------------------------------------------------------------------


def switch_epochs(curves: pd.DataFrame) -> pd.DataFrame:
    """Per (trial, seed) the switch epoch: the first evaluation with ``intervened`` = 1 (the
    intervention acts on the updates after it); NaN where it never switched or the trial has
    no intervention. Columns ``trial_id`` (when the curves have it), ``seed``, ``switch``."""
    import pandas as pd

    keys = [k for k in ("trial_id", "seed") if k in curves]
    if INTERVENED not in curves or not len(curves):
        return pd.DataFrame(columns=[*keys, "switch"])
    on = curves[pd.to_numeric(curves[INTERVENED], errors="coerce") >= 0.5]
    first = on.groupby(keys)["epoch"].min().rename("switch").reset_index()
    allk = curves[keys].drop_duplicates()
    out = allk.merge(first, on=keys, how="left")
    out["switch"] = pd.to_numeric(out["switch"], errors="coerce").astype(float)
    return out


def _value_at(curves: pd.DataFrame, keys: list[str], when: pd.DataFrame, metric: str, how: str):
    """Each (trial, seed)'s ``metric`` at its switch epoch (``how`` "switch") or at the first
    evaluation after it ("next"); NaN where missing. Returns a Series aligned with ``when``."""
    import pandas as pd

    if metric not in curves or not len(when):
        return pd.Series(np.nan, index=when.index)
    c = curves[[*keys, "epoch", metric]].merge(when[[*keys, "switch"]], on=keys, how="inner")
    c = c[np.isfinite(pd.to_numeric(c[metric], errors="coerce"))]
    if how == "switch":
        c = c[c["epoch"] == c["switch"]]
    else:
        c = c[c["epoch"] > c["switch"]].sort_values("epoch").groupby(keys).head(1)
    got = c.groupby(keys)[metric].first()
    idx = pd.MultiIndex.from_frame(when[keys]) if len(keys) > 1 else when[keys[0]]
    return pd.Series(got.reindex(idx).to_numpy(float), index=when.index)


def _intervals(frame: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An onset's interval [lo, hi] and its point estimate (NaN unless a point) per row."""
    lo = frame[onset_column(metric, "lo")].to_numpy(float)
    hi = frame[onset_column(metric, "hi")].to_numpy(float)
    status = frame.get(onset_column(metric, "status"))
    pt = np.where((lo == hi) & np.isfinite(lo), lo, np.nan)
    if status is not None:
        missing = status.isna().to_numpy()
        lo, hi = np.where(missing, np.nan, lo), np.where(missing, np.nan, hi)
    return lo, hi, pt


# ---- the tables ------------------------------------------------------------------------------


def _groups(seeds: pd.DataFrame, by: list[str]):
    if not by:
        return [((), seeds)]
    return [
        (k if isinstance(k, tuple) else (k,), g)
        for k, g in seeds.groupby(by, sort=True, dropna=False)
    ]


def _compare(q: Quantity, a: pd.DataFrame, c: pd.DataFrame, step: float) -> dict[str, Any]:
    """The raw (unadjusted) paired comparison of one quantity, a and c aligned by seed."""
    from analysis.timing.lagtest import signflip_test

    nan = math.nan
    row: dict[str, Any] = {"quantity": q.label, "column": q.column, "kind": q.kind}
    if q.kind == "final":
        xa = a[q.column].to_numpy(float)
        xc = c[q.control_column or q.column].to_numpy(float)
        ok = np.isfinite(xa) & np.isfinite(xc)
        xa, xc = xa[ok], xc[ok]
        d = xa - xc
        p, side, nz = _wilcoxon(d) if d.size else (nan, 0, 0)
        points = d
        row.update(test="Wilcoxon signed-rank", n=int(d.size), n_tested=nz)
        row.update(median_control=_median(xc), median_arm=_median(xa))
        row["interest"] = INTEREST[q.unit]
    else:
        alo, ahi, apt = _intervals(a, q.column)
        clo, chi, cpt = _intervals(c, q.column)
        ok = np.isfinite(alo) & np.isfinite(clo) & ~np.isnan(ahi) & ~np.isnan(chi)
        lo, hi = alo[ok] - chi[ok], ahi[ok] - clo[ok]
        d = lo
        points = (apt - cpt)[ok]
        points = points[np.isfinite(points)]
        decided = int(((lo > 0) | (hi < 0)).sum())
        bounded = int((np.isfinite(lo) & np.isfinite(hi)).sum())
        if decided or bounded:
            u, p = signflip_test(lo, hi, rng=np.random.default_rng(0))
            side = int(np.sign(u))
        else:  # no pair with an ordered or bounded difference: no evidence, out of the family
            p, side = nan, 0
        row.update(
            test="signed-rank on onset intervals (censoring-aware)",
            n=int(lo.size),
            n_tested=int((np.isfinite(lo) & np.isfinite(hi) & (lo == hi) & (lo != 0)).sum()),
        )
        row.update(median_control=_median(cpt[ok]), median_arm=_median(apt[ok]))
        row["interest"] = INTEREST["onset"] * step
        row["n_decided"] = decided
    lo_ci, hi_ci, cov = median_ci(points)
    row.update(
        effect=_median(points),
        ci_lo=lo_ci,
        ci_hi=hi_ci,
        ci_level=cov,
        n_up=int((points > 0).sum()),
        n_down=int((points < 0).sum()),
        statistic=side,
        p=p,
        _spread=_spread(points),
        _n_power=row["n_tested"] if q.kind == "final" else int(row["n"]),
    )
    del d
    return row


def _median(x: Any) -> float:
    v = np.asarray(x, float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def _answer(q: Question, values: np.ndarray) -> dict[str, Any]:
    """The raw statistics of one question on its per-seed values (changes or final levels)."""
    v = values[np.isfinite(values)]
    p, side, nz = _wilcoxon(v) if v.size else (math.nan, 0, 0)
    lo, hi, cov = median_ci(v)
    return {
        "question": q.text,
        "metric": q.metric,
        "kind": q.kind,
        "n": int(v.size),
        "median": _median(v),
        "ci_lo": lo,
        "ci_hi": hi,
        "ci_level": cov,
        "n_up": int((v > 0).sum()),
        "n_down": int((v < 0).sum()),
        "p": p,
        "statistic": side,
        "_spread": _spread(v),
        "_n_power": nz,
        "_direction": q.direction,
    }


def _label_question(r: dict[str, Any], alpha: float) -> str:
    if r["n"] == 0 or not math.isfinite(r["p_bh"]):
        return "not measured"
    sig = r["p_bh"] <= alpha and r["statistic"] != 0
    if r["kind"] == "level":
        if sig and r["statistic"] > 0 and r["median"] > CLEAR_Z:
            return "yes"
        if sig and r["statistic"] > 0:
            return "weak"
        if math.isfinite(r["ci_hi"]) and r["ci_hi"] < CLEAR_Z:
            return "no"
        return _inconclusive(r["detectable"], INTEREST["z"])
    if sig:
        return "yes" if r["statistic"] == r["_direction"] else "no"
    return _inconclusive(r["detectable"], INTEREST["z"])


def _why_question(r: dict[str, Any], alpha: float) -> str:
    if r["n"] == 0:
        return "no seed with the values this question needs"
    f = _fmt
    if r["kind"] == "after":
        what = (
            f"{r['metric']} changed by {f(r['median'])} [{f(r['ci_lo'])}, {f(r['ci_hi'])}] "
            f"from the switch to the end"
        )
    else:
        what = (
            f"final {r['metric']} median {f(r['median'])} [{f(r['ci_lo'])}, {f(r['ci_hi'])}] "
            f"(clear above {CLEAR_Z:g})"
        )
    text = (
        f"{what}; up in {r['n_up']}, down in {r['n_down']} of {r['n']} seeds; Wilcoxon "
        f"p = {_p(r['p'])} (BH {_p(r['p_bh'])}, family {r['family']})"
    )
    if r["verdict"].startswith("inconclusive"):
        text += f"; {r['power_note']}"
    return text


def _fmt(v: float) -> str:
    return f"{v:+.3g}" if math.isfinite(v) else "–"


def _p(p: float) -> str:
    return f"{p:.2g}" if math.isfinite(p) else "–"


def _label_comparison(r: dict[str, Any], alpha: float) -> str:
    if r["n"] and r["kind"] == "onset" and not math.isfinite(r["p"]):
        return "no onsets"
    if r["n"] == 0 or not math.isfinite(r["p_bh"]):
        return "not measured"
    if r["p_bh"] <= alpha and r["statistic"] != 0:
        if r["kind"] == "onset":
            return "later" if r["statistic"] > 0 else "earlier"
        return "higher" if r["statistic"] > 0 else "lower"
    return _inconclusive(r["detectable"], r["interest"])


class ArmAnalysis(NamedTuple):
    """Every table of a study's arms (:func:`analyse_arms`)."""

    design: ArmDesign
    by: list[str]  # the cell keys
    comparisons: pd.DataFrame  # arm_comparisons
    verdicts: pd.DataFrame  # arm_verdicts
    lesions: pd.DataFrame  # arm_lesions
    bands: pd.DataFrame  # arm_curve_bands
    switches: pd.DataFrame  # per (cell, arm): switched seeds and their switch epochs
    notes: list[str]


def _tables(
    seeds: pd.DataFrame,
    curves: pd.DataFrame,
    design: ArmDesign,
    by: list[str],
    *,
    task_metric: str,
    alpha: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparisons and the verdicts, BH within each arm's family."""
    import pandas as pd

    pair = _pair_key(seeds)
    sw = switch_epochs(curves) if curves is not None else pd.DataFrame()
    keys = [k for k in ("trial_id", "seed") if k in seeds and k in sw]
    table = (
        seeds.merge(sw, on=keys, how="left") if keys and len(sw) else seeds.assign(switch=np.nan)
    )
    step = _median(table[STEP_COLUMN]) if STEP_COLUMN in table else math.nan
    step = step if math.isfinite(step) else 1.0
    comp_rows: list[dict[str, Any]] = []
    ques_rows: list[dict[str, Any]] = []
    for key, cell in _groups(table, by):
        cell_key = dict(zip(by, key))
        ctrl = cell[cell[ARM].astype(str) == str(design.control)]
        ctrl = ctrl.drop_duplicates(pair).set_index(pair)
        for arm in design.treated:
            part = cell[cell[ARM].astype(str) == arm]
            if not len(part):
                continue
            part = part.drop_duplicates(pair).set_index(pair)
            config = _arm_config(part.reset_index(), design.arms.get(arm, {}))
            swapped = bool(config.get("intervention.swap_partition"))
            both = part.index.intersection(ctrl.index)
            a, c = part.loc[both], ctrl.loc[both]
            for q in quantities(task_metric, list(table.columns), swapped=swapped):
                comp_rows.append({**cell_key, "arm": arm, **_compare(q, a, c, step)})
            switched = part[np.isfinite(part["switch"].to_numpy(float))]
            for q in arm_questions(config):
                if q.kind == "after":
                    final = pd.to_numeric(
                        switched.get(f"final.{q.metric}", pd.Series(np.nan, index=switched.index)),
                        errors="coerce",
                    )
                    base = _value_at(
                        curves,
                        [k for k in ("trial_id", "seed") if k in curves],
                        switched.reset_index(),
                        q.metric,
                        q.baseline,
                    )
                    values = final.to_numpy(float) - base.to_numpy(float)
                else:
                    col = f"final.{q.metric}"
                    values = (
                        pd.to_numeric(part[col], errors="coerce").to_numpy(float)
                        if col in part
                        else np.full(len(part), np.nan)
                    )
                row = _answer(q, values)
                sw_e = switched["switch"].to_numpy(float)
                row.update(n_switched=int(sw_e.size), switch_median=_median(sw_e))
                ques_rows.append({**cell_key, "arm": arm, **row})
    comp = pd.DataFrame(comp_rows)
    ques = pd.DataFrame(ques_rows)
    # BH within each arm's family: its comparisons and its questions, over every cell
    for arm in design.treated:
        ci = comp.index[comp["arm"] == arm] if len(comp) else []
        qi = ques.index[ques["arm"] == arm] if len(ques) else []
        p = np.concatenate(
            [
                comp.loc[ci, "p"].to_numpy(float) if len(ci) else [],
                ques.loc[qi, "p"].to_numpy(float) if len(qi) else [],
            ]
        )
        from analysis.timing.lagtest import bh_adjust

        adj = bh_adjust(p) if p.size else p
        fam = int(np.isfinite(p).sum())
        if len(ci):
            comp.loc[ci, "p_bh"] = adj[: len(ci)]
            comp.loc[ci, "family"] = fam
        if len(qi):
            ques.loc[qi, "p_bh"] = adj[len(ci) :]
            ques.loc[qi, "family"] = fam
    comp = _finish(comp, by, COMPARISON_COLUMNS, alpha, _label_comparison)
    ques = _finish(ques, by, VERDICT_COLUMNS, alpha, _label_question)
    if len(ques):
        ques["why"] = [_why_question(r, alpha) for r in ques.to_dict("records")]
        ques = ques[[*by, *VERDICT_COLUMNS]]
    return comp, ques


def _finish(frame: pd.DataFrame, by: list[str], columns, alpha: float, label) -> pd.DataFrame:
    """Power, verdicts and the column order of a comparison or verdict table."""
    import pandas as pd

    if not len(frame):
        return pd.DataFrame(columns=[*by, *columns])
    frame["family"] = frame["family"].fillna(0).astype(int)
    det, notes = [], []
    for r in frame.to_dict("records"):
        interest = r.get("interest", INTEREST["z"])
        d, note = _power(int(r["_n_power"]), int(r["family"]), alpha, r["_spread"], interest)
        det.append(d)
        notes.append(note)
    frame["detectable"] = det
    frame["power_note"] = notes
    frame["verdict"] = [label(r, alpha) for r in frame.to_dict("records")]
    if "why" in columns and "why" not in frame:
        frame["why"] = ""
    return frame[[*by, *(c for c in columns if c in frame)]]


def arm_lesions(
    seeds: pd.DataFrame,
    curves: pd.DataFrame,
    design: ArmDesign,
    by: Sequence[str] = (),
    *,
    task_metric: str = "accuracy",
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """The lesion effects per (cell, arm, lesion, measure) at each seed's last lesion evaluation
    (module docstring): columns the cell keys, then :data:`LESION_COLUMNS`. ``drop_vs_control``
    is the median paired difference of the drops, arm − control (the control's own row has
    NaN there). Empty when the curves have no lesions."""
    import pandas as pd

    by = list(by)
    measures = [task_metric, TIMING_FUNCTION]
    cols = [f"lesion_{les}_{m}" for les in LESIONS for m in measures]
    if curves is None or not len(curves) or not any(c in curves for c in cols):
        return pd.DataFrame(columns=[*by, *LESION_COLUMNS])
    keys = [k for k in ("trial_id", "seed") if k in curves and k in seeds]
    pair = _pair_key(seeds)
    drops: dict[tuple[str, str], pd.DataFrame] = {}
    for les in LESIONS:
        for m in measures:
            col = f"lesion_{les}_{m}"
            if col not in curves or m not in curves:
                continue
            c = curves[[*keys, "epoch", m, col]]
            c = c[np.isfinite(pd.to_numeric(c[col], errors="coerce"))]
            last = c.sort_values("epoch").groupby(keys).tail(1)
            last = last.assign(drop=last[m].astype(float) - last[col].astype(float))
            drops[(les, m)] = last.rename(columns={m: "intact", col: "lesioned"})
    rows = []
    for key, cell in _groups(seeds, by):
        cell_key = dict(zip(by, key))
        for (les, m), d in drops.items():
            merged = cell[[*keys, pair, ARM]].merge(d, on=keys, how="inner")
            ctrl = merged[merged[ARM].astype(str) == str(design.control)].drop_duplicates(pair)
            ctrl = ctrl.set_index(pair)
            for arm in design.arms:
                part = merged[merged[ARM].astype(str) == arm].drop_duplicates(pair)
                if not len(part):
                    continue
                part = part.set_index(pair)
                x = part["drop"].to_numpy(float)
                lo, hi, cov = median_ci(x)
                p, side, _ = _wilcoxon(x)
                row = {
                    **cell_key,
                    "arm": arm,
                    "lesion": les,
                    "measure": m,
                    "n": int(np.isfinite(x).sum()),
                    "epoch": _median(part["epoch"]),
                    "median_intact": _median(part["intact"]),
                    "median_lesioned": _median(part["lesioned"]),
                    "median_drop": _median(x),
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "ci_level": cov,
                    "n_drop": int((x > 0).sum()),
                    "p": p,
                    "drop_vs_control": math.nan,
                    "vs_ci_lo": math.nan,
                    "vs_ci_hi": math.nan,
                    "n_vs": 0,
                    "p_vs": math.nan,
                }
                if arm != design.control and len(ctrl):
                    both = part.index.intersection(ctrl.index)
                    dv = part.loc[both, "drop"].to_numpy(float) - ctrl.loc[both, "drop"].to_numpy(
                        float
                    )
                    dv = dv[np.isfinite(dv)]
                    vlo, vhi, _ = median_ci(dv)
                    row.update(
                        drop_vs_control=_median(dv),
                        vs_ci_lo=vlo,
                        vs_ci_hi=vhi,
                        n_vs=int(dv.size),
                        p_vs=_wilcoxon(dv)[0] if dv.size else math.nan,
                    )
                rows.append(row)
    out = pd.DataFrame(rows)
    if not len(out):
        return pd.DataFrame(columns=[*by, *LESION_COLUMNS])
    from analysis.timing.lagtest import bh_adjust

    out["p_bh"] = math.nan
    out["p_vs_bh"] = math.nan
    for _, idx in out.groupby("arm").groups.items():
        p = np.concatenate(
            [out.loc[idx, "p"].to_numpy(float), out.loc[idx, "p_vs"].to_numpy(float)]
        )
        adj = bh_adjust(p)
        out.loc[idx, "p_bh"] = adj[: len(idx)]
        out.loc[idx, "p_vs_bh"] = adj[len(idx) :]
    order = {a: i for i, a in enumerate(design.arms)}
    out = out.sort_values(
        [*by, "arm", "lesion", "measure"],
        key=lambda s: s.map(order) if s.name == "arm" else s,
        kind="stable",
    )
    return out[[*by, *LESION_COLUMNS]].reset_index(drop=True)


def arm_curve_bands(
    curves: pd.DataFrame,
    seeds: pd.DataFrame,
    by: Sequence[str] = (),
    metrics: Sequence[str] = CURVE_METRICS,
) -> pd.DataFrame:
    """Per (cell, arm, metric, epoch): the seeds' median and interquartile range. Columns the
    cell keys, ``arm``, ``metric``, ``epoch``, ``n``, ``median``, ``q25``, ``q75``."""
    import pandas as pd

    by = list(by)
    cols = [*by, "arm", "metric", "epoch", "n", "median", "q25", "q75"]
    keys = [k for k in ("trial_id", "seed") if k in curves and k in seeds]
    if not len(curves) or not keys:
        return pd.DataFrame(columns=cols)
    meta = seeds[[*keys, ARM, *by]].drop_duplicates(keys)
    c = curves.drop(columns=[k for k in (ARM, *by) if k in curves]).merge(meta, on=keys)
    frames = []
    for m in metrics:
        if m not in c:
            continue
        g = c[[*by, ARM, "epoch", m]].dropna(subset=[m]).groupby([*by, ARM, "epoch"])[m]
        f = pd.DataFrame(
            {"n": g.size(), "median": g.median(), "q25": g.quantile(0.25), "q75": g.quantile(0.75)}
        ).reset_index()
        f.insert(len(by) + 1, "metric", m)
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True).rename(columns={ARM: "arm"})[cols]


def _switch_table(seeds: pd.DataFrame, curves: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per (cell, arm): seeds, switched seeds, and the median and quartiles of their switch
    epochs (the intervention's epoch for the figure)."""
    import pandas as pd

    sw = switch_epochs(curves)
    keys = [k for k in ("trial_id", "seed") if k in seeds and k in sw]
    cols = [*by, "arm", "n", "n_switched", "switch_median", "switch_q25", "switch_q75"]
    if not len(sw) or not keys:
        return pd.DataFrame(columns=cols)
    t = seeds[[*keys, ARM, *by]].merge(sw, on=keys, how="left")
    rows = []
    for key, g in _groups(t, [*by, ARM]):
        x = g["switch"].to_numpy(float)
        x = x[np.isfinite(x)]
        rows.append(
            {
                **dict(zip([*by, "arm"], key)),
                "n": len(g),
                "n_switched": int(x.size),
                "switch_median": _median(x),
                "switch_q25": float(np.percentile(x, 25)) if x.size else math.nan,
                "switch_q75": float(np.percentile(x, 75)) if x.size else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _order(frame: pd.DataFrame, design: ArmDesign, by: list[str]) -> pd.DataFrame:
    """Rows in the spec's arm order within each cell."""
    if not len(frame) or "arm" not in frame:
        return frame
    order = {a: i for i, a in enumerate(design.arms)}
    rank = frame["arm"].map(order).fillna(len(order))
    out = frame.assign(_r=rank)
    try:
        out = out.sort_values([*by, "_r"], kind="stable")
    except TypeError:
        out = out.sort_values("_r", kind="stable")
    return out.drop(columns="_r").reset_index(drop=True)


def analyse_arms(
    data: StudyData, *, seeds: pd.DataFrame | None = None, alpha: float = ALPHA
) -> ArmAnalysis | None:
    """Every arm table of a loaded study, None when it has no arms.

    Args:
        data: the loaded study (its ``study.arms`` tag names the control; its curves give the
            switch epochs, the values at the switch, the lesions and the bands).
        seeds: the per-seed table, default the seeds of finished trials (running, failed,
            stopped and diverged trials are left out, and said so in ``notes``).
        alpha: the level after BH.
    """
    from analysis.runs import analysed_seeds

    design = arm_design(data)
    if design is None:
        return None
    notes: list[str] = []
    if seeds is None:
        s = analysed_seeds(data)
        done = s["status"].astype(str).eq("finished") if "status" in s else None
        if done is not None and (~done).any():
            left = s.loc[~done].drop_duplicates("trial_id")
            why = ", ".join(sorted(set(left["status"].astype(str))))
            notes.append(
                f"{len(left)} trial(s) that did not finish ({why}) are left out of the arms."
            )
            s = s[done]
        seeds = s
    if design.control is None:
        notes.append("The study names no control arm, so no arm is compared with one.")
    by = _cell_keys(seeds, data.swept)
    curves = data.curves
    if ARM not in seeds or not len(seeds) or design.control is None:
        import pandas as pd

        empty = pd.DataFrame
        return ArmAnalysis(
            design,
            by,
            empty(columns=[*by, *COMPARISON_COLUMNS]),
            empty(columns=[*by, *VERDICT_COLUMNS]),
            empty(columns=[*by, *LESION_COLUMNS]),
            arm_curve_bands(curves, seeds, by) if ARM in seeds else empty(),
            empty(),
            notes,
        )
    comp, ques = _tables(seeds, curves, design, by, task_metric=data.success_metric, alpha=alpha)
    les = arm_lesions(seeds, curves, design, by, task_metric=data.success_metric, alpha=alpha)
    orig = [f"{m}{ORIG_SUFFIX}" for m in CURVE_METRICS if f"{m}{ORIG_SUFFIX}" in curves]
    bands = arm_curve_bands(curves, seeds, by, [*CURVE_METRICS, *orig])
    switches = _order(_switch_table(seeds, curves, by), design, by)
    return ArmAnalysis(
        design, by, _order(comp, design, by), _order(ques, design, by), les, bands, switches, notes
    )


def arm_comparisons(
    seeds: pd.DataFrame,
    curves: pd.DataFrame | None,
    design: ArmDesign,
    by: Sequence[str] = (),
    *,
    task_metric: str = "accuracy",
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Each arm against the control, paired by seed, per cell and quantity (module docstring).

    Args:
        seeds: one row per (trial, seed) with ``arm``, ``seed_value`` (else ``seed``) to pair
            on, the cell keys, the ``final.*`` and ``onset.*`` columns.
        curves: the curves (``trial_id``/``seed``/``epoch``, ``intervened``), for the switch
            epochs; None: no switch epochs.
        design: the arms and the control.
        by: the cell keys.

    Returns:
        The cell keys, then :data:`COMPARISON_COLUMNS`: ``arm``, ``quantity``, ``column``,
        ``kind`` (final / onset), ``test``, ``n`` (pairs), ``n_tested`` (non-zero point
        differences), medians of each side, ``effect`` (median paired difference arm −
        control; onsets: over the point pairs, epochs) with ``ci_lo``/``ci_hi`` at coverage
        ``ci_level``, ``n_up``/``n_down``, ``statistic`` (the test's side), ``p``, ``p_bh``,
        ``family``, ``interest``, ``detectable`` (the shift seen with 80 % power at
        α/family), ``power_note``, ``verdict`` (higher / lower / later / earlier /
        inconclusive / inconclusive (power) / no onsets: no pair whose difference is ordered or
        bounded, p NaN and outside the family / not measured).
    """
    import pandas as pd

    curves = curves if curves is not None else pd.DataFrame()
    return _order(
        _tables(seeds, curves, design, list(by), task_metric=task_metric, alpha=alpha)[0],
        design,
        list(by),
    )


def arm_verdicts(
    seeds: pd.DataFrame,
    curves: pd.DataFrame,
    design: ArmDesign,
    by: Sequence[str] = (),
    *,
    task_metric: str = "accuracy",
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """The answer to each question of each arm (:func:`arm_questions`), per cell.

    Returns:
        The cell keys, then :data:`VERDICT_COLUMNS`: ``arm``, ``question``, ``verdict`` (yes /
        weak / no / inconclusive / inconclusive (power) / not measured), ``n`` (seeds),
        ``why`` (one line), ``metric``, ``kind`` (after / level), ``median`` (of the changes
        since the switch, or of the final values) with its CI, ``n_up``/``n_down``, ``p``,
        ``p_bh``, ``family``, ``detectable``, ``power_note``, ``n_switched``,
        ``switch_median`` (epochs).
    """
    return _order(
        _tables(seeds, curves, design, list(by), task_metric=task_metric, alpha=alpha)[1],
        design,
        list(by),
    )
