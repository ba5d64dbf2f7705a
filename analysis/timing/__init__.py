"""Timing of functional vs structural emergence, measured so the instruments do not decide it.

The order of two metrics is judged by each curve's own half-rise (half-way from its level at the
first evaluation to its fitted plateau), confirmed online from the past only
(:mod:`study.contract.rise`), not by a fixed threshold that a larger curve crosses earlier;
per cell a censoring-aware sign-flip test of the per-seed lags, co-emergence by equivalence, BH
across the cells of a family (:mod:`.lagtest`, :mod:`.verdicts`); the power each cell has
(:mod:`study.contract.power`); a shipped calibration on synthetic cells with known answers
(:mod:`.calibration`); and the whole pipeline on any curves table (:mod:`.pipeline`).
docs/timing.md explains the choices and gives the numbers the calibration measures.

Importing the package imports NumPy only; SciPy and pandas load inside the functions that need
them.
"""

from __future__ import annotations

from study.contract.power import (
    DEFAULT_LAG_SD_EVALS,
    LEAD_OF_INTEREST_EVALS,
    detectable_lead,
    seeds_for_verdict,
)
from study.contract.rise import (
    TimingOnset,
    confirm_online,
    detections,
    regular_step,
    timing_onset,
    timing_onsets,
)

from .calibration import (
    DEFAULT_FUNC,
    DEFAULT_STRUCT,
    Scenario,
    ScenarioResult,
    calibrate_scenario,
    calibration_suite,
    scenarios,
    threshold_rates,
)
from .lagtest import (
    bh_adjust,
    clopper_pearson,
    gehan_u,
    lag_interval,
    sign_test,
    signflip_test,
    tost_test,
)
from .pipeline import jsonable, timing_from_curves
from .simulate import CurveParams, MeasuredCurves, measure_curve_params, simulate_curves
from .study_verdicts import (
    CALIBRATION_COLUMNS,
    NO_SEEDS,
    VERDICT_COLUMNS,
    ordering_label,
    study_calibration,
    study_verdicts,
    study_verdicts_wide,
    with_onsets,
)
from .verdicts import ALPHA, MARGIN_EVALS, VERDICTS, cell_statistics, label_cells

__all__ = [
    "CALIBRATION_COLUMNS",
    "NO_SEEDS",
    "VERDICT_COLUMNS",
    "ordering_label",
    "study_calibration",
    "study_verdicts",
    "study_verdicts_wide",
    "with_onsets",
    "ALPHA",
    "DEFAULT_FUNC",
    "DEFAULT_LAG_SD_EVALS",
    "DEFAULT_STRUCT",
    "LEAD_OF_INTEREST_EVALS",
    "MARGIN_EVALS",
    "VERDICTS",
    "CurveParams",
    "MeasuredCurves",
    "Scenario",
    "ScenarioResult",
    "TimingOnset",
    "bh_adjust",
    "calibrate_scenario",
    "calibration_suite",
    "cell_statistics",
    "clopper_pearson",
    "confirm_online",
    "detectable_lead",
    "detections",
    "gehan_u",
    "jsonable",
    "label_cells",
    "lag_interval",
    "measure_curve_params",
    "regular_step",
    "scenarios",
    "seeds_for_verdict",
    "sign_test",
    "signflip_test",
    "simulate_curves",
    "threshold_rates",
    "timing_from_curves",
    "timing_onset",
    "timing_onsets",
    "tost_test",
]
