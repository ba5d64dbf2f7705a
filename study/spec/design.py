"""What a study's design can conclude about timing, checked before it runs.

A grid study's timing verdicts judge each treated cell (λ > 0) on its own seeds, inside a
Benjamini–Hochberg family of all treated cells (docs/timing.md). Whether n seeds per cell can
call an order at all is a property of the design, known before training:
:func:`study.contract.power.seeds_for_verdict` under the documented default noise model. A
design that cannot see a lead of 2 evaluations gets a warning from ``study validate`` and
``study run`` (it still runs: the study may have other aims).
"""

from __future__ import annotations

import itertools

from study.contract.params import PARAM_MI_WEIGHT
from study.contract.power import LEAD_OF_INTEREST_EVALS, POWER, seeds_for_verdict
from study.spec.studyspec import Study

__all__ = ["TIMING_ALPHA", "timing_power_warning"]

TIMING_ALPHA = 0.05  # the verdicts' level after BH (analysis.timing.verdicts.ALPHA)


def _treated_points(study: Study) -> list[dict]:
    """The grid points whose λ (mi.weight) is > 0: searched, else the base config's."""
    spec = study.spec
    keys = list(spec.search)
    points = [
        dict(zip(keys, combo))
        for combo in itertools.product(*(spec.search[k].grid() for k in keys))
    ]
    if PARAM_MI_WEIGHT in spec.search:
        return [p for p in points if float(p[PARAM_MI_WEIGHT]) > 0]
    return points if study.trial_config({}).mi.weight > 0 else []


def timing_power_warning(study: Study) -> str | None:
    """A one-line warning when the design's seeds per cell cannot call a timing order of
    ``LEAD_OF_INTEREST_EVALS`` (2) evaluations, else None.

    Only grid studies have fixed cells: the cells are the grid points, the family the treated
    ones (λ > 0; both orderings, function vs Q(|W|) and function vs ΔW, are separate families
    of that size), the seeds per cell the trial's ``seeds``. The noise model is the documented
    default of :func:`study.contract.power.seeds_for_verdict`: per-seed lags spread with sd 2
    regular evaluations, α = 0.05 after BH, 80 % power. Other samplers (cells are bins of λ
    chosen after the fact) get no warning.
    """
    spec = study.spec
    if spec.sampler.name != "grid" or not spec.search:
        return None
    treated = _treated_points(study)
    if not treated:
        return None
    n = int(study.trial_config(treated[0]).seeds)
    family = len(treated)
    res = seeds_for_verdict(n, family, alpha=TIMING_ALPHA)
    if res["reachable"]:
        return None
    level = TIMING_ALPHA / family
    lead = res["detectable_lead_evals"]
    if lead == float("inf"):
        why = (
            f"the smallest p {n} seeds can give, 2/2^{n} = {2.0 / 2.0**n:.2g}, is above "
            f"α/{family} = {level:.2g}"
        )
    else:
        why = f"they detect a lead of {lead:.2g} evaluations at {POWER * 100:g} % power"
    need = res["seeds_needed"]
    more = f"; {need} seeds per cell would" if need is not None else ""
    return (
        f"{study.path}: {n} seeds per cell cannot call a timing order of "
        f"{LEAD_OF_INTEREST_EVALS:g} evaluations in a BH family of {family} treated cells "
        f"({why}){more} (default noise model: per-seed lags spread with sd "
        f"{res['lag_sd_evals']:g} regular evaluations, α = {TIMING_ALPHA:g} after BH, "
        f"{POWER * 100:g} % power)"
    )
