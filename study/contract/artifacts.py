"""The artifact names of the run-data contract (docs/run-data.md, "Artifacts").

A trial run holds its per-evaluation curves and per-seed outcomes as Parquet tables, the study
run the spec it was launched with and the report analysis writes. Pure constants: importing this
module imports nothing.
"""

from __future__ import annotations

__all__ = [
    "ARTIFACT_CURVES",
    "ARTIFACT_SEEDS",
    "ARTIFACT_SPEC",
    "ARTIFACT_REPORT",
    "REPORT_FILE",
    "ARTIFACTS",
]

ARTIFACT_CURVES = "curves.parquet"  # trial run: one row per (seed, evaluation epoch)
ARTIFACT_SEEDS = "seeds.parquet"  # trial run: one row per seed (outcomes.seed_table)
ARTIFACT_SPEC = "spec.yaml"  # study run: the study spec as launched
ARTIFACT_REPORT = "report"  # study run: the folder `python -m analysis report` logs into
REPORT_FILE = "report.html"  # the report's page in that folder

ARTIFACTS = (ARTIFACT_CURVES, ARTIFACT_SEEDS, ARTIFACT_SPEC, ARTIFACT_REPORT)
