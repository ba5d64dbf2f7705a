"""The calibration tables of docs/timing.md, re-run from scratch (NumPy/SciPy only).

Usage: ``python docs/results/timing-calibration/make_tables.py [OUT]`` (default: tables.txt
beside this file). Writes every table with the commit and the wall time that produced it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from analysis.timing.calibration import (
    DEFAULT_FUNC,
    DEFAULT_STRUCT,
    calibrate_scenario,
    format_table,
    scenarios,
)
from analysis.timing.simulate import CurveParams

HERE = Path(__file__).resolve().parent
# timing-cpu's measured models (docs/results/timing-cpu/calibration.csv) and its schedule:
# every epoch to 59, then every 25 to 1000; earlier onsets at epochs 46–207
STUDY_EPOCHS = np.concatenate([np.arange(0.0, 60.0), np.arange(75.0, 1001.0, 25.0)])
STUDY_FUNC = CurveParams(21.4, 0.707, 1.72, 0.91)
STUDY_Q = CurveParams(7.84, 3.31, 0.576, 0.89)
STUDY_DW = CurveParams(3.32, 0.924, 0.508, 0.955)
STUDY_RANGE = (46.0, 207.0)


def _rows(scs, seed, **kw):
    rng = np.random.default_rng(seed)
    return [calibrate_scenario(sc, rng=rng, **kw) for sc in scs]


def main(out: Path) -> None:
    t0 = time.time()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    parts = []

    def table(title, results):
        parts.append(f"## {title}\n\n```\n{format_table(results)}\n```\n")
        print(title, f"{time.time() - t0:.0f} s", flush=True)

    suite = scenarios()
    for n in (8, 16):
        table(
            f"shipped suite, {n} seeds, family 1, 200 cells a row (41 evaluations every 25)",
            _rows(suite, 2026, n_seeds=n, n_cells=200, threshold=True),
        )
    leads = [s for s in suite if s.lead_evals != 0]
    for n in (8, 16):
        table(
            f"leads with the seeds' own lags scattered by 2 evaluations, {n} seeds",
            _rows(leads, 2027, n_seeds=n, n_cells=200, threshold=True, lag_jitter_evals=2.0),
        )
    pick = [s for s in suite if s.name in ("amplitude 1:4", "amplitude 1:1", "amplitude 4:1")]
    pick += [s for s in leads if abs(s.lead_evals) == 2.0]
    for n in (8, 16):
        table(
            f"BH families of 12 cells from one scenario, {n} seeds",
            _rows(pick, 2028, n_seeds=n, n_cells=200, family=12),
        )
    width = [s for s in suite if s.name.startswith("width")]
    long = np.arange(0.0, 2001.0, 25.0)
    for n in (8, 16):
        table(
            f"unequal widths on 81 evaluations (0 … 2000 every 25), {n} seeds",
            _rows(width, 2029, epochs=long, n_seeds=n, n_cells=200),
        )
    for label, struct in (("function vs Q(|W|)", STUDY_Q), ("function vs ΔW", STUDY_DW)):
        table(
            f"timing-cpu's measured models, {label}, 16 seeds, 100 cells a row",
            _rows(
                scenarios(STUDY_FUNC, struct),
                2030,
                epochs=STUDY_EPOCHS,
                n_seeds=16,
                n_cells=100,
                onset_range=STUDY_RANGE,
            ),
        )
    head = (
        "# Timing calibration tables (docs/timing.md)\n\n"
        f"Commit {commit}; command `python docs/results/timing-calibration/make_tables.py`; "
        f"wall time {time.time() - t0:.0f} s on a shared 2-core VM.\n\n"
        f"Defaults: function {DEFAULT_FUNC}, structure {DEFAULT_STRUCT}.\n\n"
    )
    out.write_text(head + "\n".join(parts))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "tables.txt")
