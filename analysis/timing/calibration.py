"""Calibration of the timing verdicts on synthetic cells with a known answer.

Each simulated seed draws the earlier of its two timing onsets uniformly in ``onset_range`` and
places the other L·Δ later (L = the scenario's lead in regular evaluations Δ; L > 0: function
first). A curve's timing onset is half-way from its level at the first evaluation to its
plateau (:func:`study.contract.rise.start_level_onset`); each rises with its own amplitude,
width, noise and autocorrelation (:mod:`.simulate`, :func:`.simulate.midpoints_for_onsets`).
Cells of ``n_seeds`` seeds are judged exactly as real cells are (:mod:`.verdicts`), in BH
families of ``family`` cells drawn from the same scenario. Per scenario the rate of every
verdict over the simulated cells is reported; the **false-ordering rate** is the rate of
"function first" or "structure first" in a scenario without lead (and of the wrong side with
one), the **power** the rate of the right side.

The shipped suite (:func:`scenarios`) around a function model F and a structure model S:

- identical time courses with amplitude ratios 1:4, 1:2, 1:1, 2:1, 4:1 (function:structure,
  around the geometric mean of the two amplitudes, each metric keeping its own noise);
- unequal noise: white sd 1 against AR(1) 0.95 sd 0.3, both ways (equal amplitudes);
- unequal rise widths: 2 against 8 evaluations, both ways (equal amplitudes);
- known leads of 1, 2 and 4 evaluations, both ways (F and S as given).

:func:`threshold_rates` runs the old instrument (threshold onsets z >= 3 for 3 evaluations,
which-first, exact sign test, BH) on the same simulated curves, to show what the suite
catches: it reads "function first" for identical courses with amplitudes 18 and 7.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from study.contract.outcomes import onset, which_first
from study.contract.power import DEFAULT_LAG_SD_EVALS
from study.contract.rise import TimingOnset, regular_step, timing_onsets

from .lagtest import bh_adjust, sign_test
from .simulate import CurveParams, earliest_onset, midpoints_for_onsets, simulate_curves
from .verdicts import ALPHA, MARGIN_EVALS, VERDICTS, cell_statistics, label_cells

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_FUNC",
    "DEFAULT_STRUCT",
    "Scenario",
    "ScenarioResult",
    "calibrate_scenario",
    "calibration_suite",
    "format_table",
    "scenarios",
    "threshold_rates",
]

# The measured models: q_func_z ends at 15–20 with white noise sd 1, q_struct_z at
# 6–14, smooth (AR(1) 0.95, sd 0.3); logistic scale 2 evaluations; phase-cpu's schedule.
DEFAULT_FUNC = CurveParams(amplitude=18.0, width=2.0, sd=1.0, rho=0.0)
DEFAULT_STRUCT = CurveParams(amplitude=7.0, width=2.0, sd=0.3, rho=0.95)
DEFAULT_EPOCHS = tuple(float(e) for e in range(0, 1001, 25))


@dataclass(frozen=True)
class Scenario:
    """A named pair of curve models and the true lead (regular evaluations, > 0: function
    first)."""

    name: str
    func: CurveParams
    struct: CurveParams
    lead_evals: float = 0.0


def scenarios(
    func: CurveParams = DEFAULT_FUNC,
    struct: CurveParams = DEFAULT_STRUCT,
    *,
    leads: Sequence[float] = (1.0, 2.0, 4.0),
) -> list[Scenario]:
    """The shipped suite (module docstring) around a function and a structure model."""
    g = math.sqrt(func.amplitude * struct.amplitude)
    white, smooth = CurveParams(g, 2.0, 1.0, 0.0), CurveParams(g, 2.0, 0.3, 0.95)
    out = []
    for a, b in ((1, 4), (1, 2), (1, 1), (2, 1), (4, 1)):
        r = math.sqrt(a / b)
        out.append(
            Scenario(
                f"amplitude {a}:{b}",
                replace(func, amplitude=g * r),
                replace(struct, amplitude=g / r),
            )
        )
    out.append(Scenario("noise white:AR", white, smooth))
    out.append(Scenario("noise AR:white", smooth, white))
    out.append(
        Scenario(
            "width 2:8",
            replace(func, amplitude=g, width=2.0),
            replace(struct, amplitude=g, width=8.0),
        )
    )
    out.append(
        Scenario(
            "width 8:2",
            replace(func, amplitude=g, width=8.0),
            replace(struct, amplitude=g, width=2.0),
        )
    )
    for lead in leads:
        out.append(Scenario(f"function leads {lead:g}", func, struct, float(lead)))
        out.append(Scenario(f"structure leads {lead:g}", func, struct, -float(lead)))
    return out


@dataclass(frozen=True)
class ScenarioResult:
    """Verdict rates of one scenario over ``n_cells`` simulated cells."""

    name: str
    lead_evals: float
    n_seeds: int
    family: int
    n_cells: int
    rates: dict[str, float]
    false_ordering: float  # no lead: either side called; with a lead: the wrong side called
    power: float  # the right side called (NaN without a lead)
    lag_sd_evals: float  # median over cells of the lag spread of the point lags (evaluations)
    threshold_false_ordering: float = math.nan  # the old instrument on the same curves
    threshold_power: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _simulate(
    rng: np.random.Generator,
    sc: Scenario,
    t: np.ndarray,
    n_seeds: int,
    n_cells: int,
    onset_range: tuple[float, float],
    jitter: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Function and structure curves of n_cells × n_seeds seeds, each (n_cells·n_seeds, T).

    Each seed's true lag is d = (L + j·z)·Δ, z ~ N(0, 1) (its own lag varies around the
    scenario's lead L with sd j evaluations; j = 0: every seed has lag L). The earlier of its
    two timing onsets is drawn uniformly in ``onset_range`` and the later one is d after it,
    so no onset falls before the run (where no rise can be seen)."""
    step = regular_step(t)
    n = n_cells * n_seeds
    # a rise of scale w cannot reach half of its remaining rise before t₁ + w·ln 2: the range
    # starts after that for both curves (a wide rise in an early range is shifted later)
    low = max(earliest_onset(t, sc.func), earliest_onset(t, sc.struct)) + 0.01 * step
    lo_r, hi_r = max(onset_range[0], low), max(onset_range[1], low)
    first = rng.uniform(lo_r, hi_r, n)
    lag = (sc.lead_evals + jitter * rng.standard_normal(n)) * step
    t_func, t_struct = first + np.maximum(-lag, 0.0), first + np.maximum(lag, 0.0)
    xf = simulate_curves(rng, t, sc.func, midpoints_for_onsets(t, sc.func, t_func))
    xs = simulate_curves(rng, t, sc.struct, midpoints_for_onsets(t, sc.struct, t_struct))
    return xf, xs


def _judge(
    t: np.ndarray,
    of: list[TimingOnset],
    os_: list[TimingOnset],
    n_seeds: int,
    n_cells: int,
    family: int,
    alpha: float,
    margin_evals: float,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Labelled cells: :func:`cell_statistics` per cell, :func:`label_cells` per family."""
    step = regular_step(t)
    cells = [
        cell_statistics(
            of[c * n_seeds : (c + 1) * n_seeds],
            os_[c * n_seeds : (c + 1) * n_seeds],
            step=step,
            margin_evals=margin_evals,
            rng=rng,
        )
        for c in range(n_cells)
    ]
    out = []
    for start in range(0, n_cells, family):
        out += label_cells(
            cells[start : start + family],
            step=step,
            alpha=alpha,
            fallback_sd_evals=DEFAULT_LAG_SD_EVALS,
        )
    return out


def threshold_rates(
    t: np.ndarray, xf: np.ndarray, xs: np.ndarray, n_seeds: int, family: int, alpha: float = ALPHA
) -> dict[str, float]:
    """The old instrument on the same curves: rates of "function first" and "structure first".

    Per seed: threshold onsets (z >= 3 for 3 evaluations, :func:`study.contract.outcomes.onset`)
    and which-first (ties within one evaluation); per cell the exact two-sided sign test of
    function-first against structure-first seeds; BH within each family; a side is called at
    p_bh <= α.
    """
    step = regular_step(t)
    n_cells = xf.shape[0] // n_seeds
    k_f, k_s, p = np.zeros(n_cells, int), np.zeros(n_cells, int), np.ones(n_cells)
    for c in range(n_cells):
        firsts = [
            which_first(onset(t, xf[i]), onset(t, xs[i]), step)
            for i in range(c * n_seeds, (c + 1) * n_seeds)
        ]
        k_f[c], k_s[c] = firsts.count("function"), firsts.count("structure")
        if k_f[c] + k_s[c]:
            p[c] = sign_test(int(k_f[c]), int(k_f[c] + k_s[c]))
    called_f = called_s = 0
    for start in range(0, n_cells, family):
        sl = slice(start, start + family)
        sig = bh_adjust(p[sl]) <= alpha
        called_f += int((sig & (k_f[sl] > k_s[sl])).sum())
        called_s += int((sig & (k_s[sl] > k_f[sl])).sum())
    return {"function first": called_f / n_cells, "structure first": called_s / n_cells}


def calibrate_scenario(
    scenario: Scenario,
    *,
    epochs: Any = DEFAULT_EPOCHS,
    n_seeds: int = 8,
    n_cells: int = 200,
    family: int = 1,
    onset_range: tuple[float, float] | None = None,
    alpha: float = ALPHA,
    margin_evals: float = MARGIN_EVALS,
    rng: np.random.Generator,
    lag_jitter_evals: float = 0.0,
    threshold: bool = False,
    onset_kwargs: dict[str, Any] | None = None,
) -> ScenarioResult:
    """Verdict rates of one scenario (module docstring).

    Args:
        epochs: the schedule, shape (T,).
        n_seeds: seeds per cell; n_cells: simulated cells (rounded up to whole families).
        family: cells per BH family (all from this scenario).
        onset_range: (lo, hi) epochs of the earlier timing onset of each seed; default the
            middle half of the schedule's span.
        rng: the random generator (required: results are reproducible from its seed).
        lag_jitter_evals: sd of the seeds' own true lags around the lead (evaluations).
        threshold: also run the old instrument (:func:`threshold_rates`) on the same curves.
        onset_kwargs: options of :func:`study.contract.rise.timing_onsets`.

    Returns:
        The :class:`ScenarioResult`.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"calibrate_scenario(): rng must be a numpy Generator, but got {type(rng)!r}."
        )
    if n_seeds < 1 or n_cells < 1 or family < 1:
        raise ValueError(
            f"calibrate_scenario(): n_seeds, n_cells and family must be >= 1, but "
            f"got {n_seeds}, {n_cells}, {family}."
        )
    t = np.asarray(epochs, float)
    n_cells = -(-n_cells // family) * family
    if onset_range is None:
        span = t[-1] - t[0]
        onset_range = (t[0] + 0.25 * span, t[0] + 0.75 * span)
    xf, xs = _simulate(rng, scenario, t, n_seeds, n_cells, onset_range, lag_jitter_evals)
    kw = dict(onset_kwargs or {})
    of, os_ = timing_onsets(t, xf, **kw), timing_onsets(t, xs, **kw)
    cells = _judge(t, of, os_, n_seeds, n_cells, family, alpha, margin_evals, rng)
    labels = [c["verdict"] for c in cells]
    rates = {v: labels.count(v) / n_cells for v in VERDICTS}
    lead = scenario.lead_evals
    right = "function first" if lead > 0 else "structure first"
    wrong = "structure first" if lead > 0 else "function first"
    if lead == 0:
        false, power = rates["function first"] + rates["structure first"], math.nan
    else:
        false, power = rates[wrong], rates[right]
    sds = [c["lag_sd"] for c in cells if math.isfinite(c["lag_sd"])]
    res = ScenarioResult(
        scenario.name,
        lead,
        n_seeds,
        family,
        n_cells,
        rates,
        false,
        power,
        float(np.median(sds)) / regular_step(t) if sds else math.nan,
    )
    if threshold:
        th = threshold_rates(t, xf, xs, n_seeds, family, alpha)
        if lead == 0:
            res = replace(
                res, threshold_false_ordering=th["function first"] + th["structure first"]
            )
        else:
            res = replace(res, threshold_false_ordering=th[wrong], threshold_power=th[right])
    return res


def calibration_suite(
    func: CurveParams = DEFAULT_FUNC,
    struct: CurveParams = DEFAULT_STRUCT,
    *,
    rng: np.random.Generator,
    names: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[ScenarioResult]:
    """:func:`calibrate_scenario` for every scenario of :func:`scenarios` (or those named)."""
    out = []
    for sc in scenarios(func, struct):
        if names is None or sc.name in names:
            out.append(calibrate_scenario(sc, rng=rng, **kwargs))
    return out


def format_table(results: Sequence[ScenarioResult]) -> str:
    """A plain-text table of scenario results: false-ordering rate, power, co-emergent and
    censored-label rates, the median lag sd (evaluations) and the old instrument's rates."""
    head = (
        f"{'scenario':<22} {'n':>3} {'fam':>3} {'cells':>5} {'false':>6} {'power':>6} "
        f"{'co-em':>6} {'never':>6} {'lag sd':>6} {'old false':>9} {'old power':>9}"
    )
    lines = [head]
    for r in results:
        never = sum(
            r.rates[v]
            for v in ("structure never emerged", "function never emerged", "neither emerged")
        )
        lines.append(
            f"{r.name:<22} {r.n_seeds:>3} {r.family:>3} {r.n_cells:>5} "
            f"{r.false_ordering:>6.3f} {_num(r.power):>6} "
            f"{r.rates['co-emergent']:>6.3f} {never:>6.3f} {_num(r.lag_sd_evals):>6} "
            f"{_num(r.threshold_false_ordering):>9} {_num(r.threshold_power):>9}"
        )
    return "\n".join(lines)


def _num(v: float) -> str:
    """Three decimals, or '-' for NaN."""
    return "-" if not math.isfinite(v) else f"{v:.3f}"
