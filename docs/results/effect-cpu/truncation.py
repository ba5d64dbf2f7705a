"""Truncation check on real curves: an onset must not move when the run is cut after it.

    STUDY_HOME=<where the study ran> python docs/results/effect-cpu/truncation.py [STUDY]

STUDY defaults to effect-cpu (docs/results/phase-cpu/truncation.txt is the same check on
phase-cpu).

For every seed of the effect-cpu study and both metrics (q_func_z, q_struct_z), the onset of the
full 1000-epoch curve is compared with the onset of the curve cut at 300, 500 and 700 epochs.
An onset t with t + (run - 1)·eval_every <= cut must be unchanged; the half-rise is shown beside
it for contrast (it depends on the run's end by construction).
"""

import sys

import numpy as np

from analysis.runs import load_study
from study.contract.outcomes import DEFAULT_RUN, half_rise, onset

data = load_study(sys.argv[1] if len(sys.argv) > 1 else "effect-cpu")
c = data.curves
moved = checked = 0
half_moved = half_checked = 0
for (_trial, _seed), g in c.groupby(["trial_id", "seed"]):
    g = g.sort_values("epoch")
    ep = g["epoch"].to_numpy(float)
    step = ep[1] - ep[0]
    for m, raw in (("q_func_z", "q_func"), ("q_struct_z", "q_struct")):
        full = onset(ep, g[m].to_numpy(float))
        h_full = half_rise(ep, g[raw].to_numpy(float))
        for cut in (300, 500, 700):
            keep = ep <= cut
            part = onset(ep[keep], g[m].to_numpy(float)[keep])
            if full.emerged and full.epoch + (DEFAULT_RUN - 1) * step <= cut:
                checked += 1
                moved += part.epoch != full.epoch
            h_part = half_rise(ep[keep], g[raw].to_numpy(float)[keep])
            if np.isfinite(h_full) and h_full <= cut:
                half_checked += 1
                half_moved += h_part != h_full
print(f"null-referenced onsets: {moved} of {checked} (seed, metric, cut) cases moved")
print(f"half-rise (descriptive): {half_moved} of {half_checked} cases moved")
