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
    "CHECKPOINT_FILE",
    "CHECKPOINT_DIR",
    "kept_checkpoint_file",
]

ARTIFACT_CURVES = "curves.parquet"  # trial run: one row per (seed, evaluation epoch)
ARTIFACT_SEEDS = "seeds.parquet"  # trial run: one row per seed (outcomes.seed_table)
ARTIFACT_SPEC = "spec.yaml"  # study run: the study spec as launched
ARTIFACT_REPORT = "report"  # study run: the folder `python -m analysis report` logs into
REPORT_FILE = "report.html"  # the report's page in that folder

ARTIFACTS = (ARTIFACT_CURVES, ARTIFACT_SEEDS, ARTIFACT_SPEC, ARTIFACT_REPORT)

# Files a trial writes beside its run (not MLflow artifacts): the rolling checkpoint a resume
# reads, and the checkpoints `train.keep_checkpoints` keeps, which `train.init_from` forks from
CHECKPOINT_FILE = "checkpoint.pt"  # overwritten at every checkpoint
CHECKPOINT_DIR = "checkpoint"  # the folder of a trial's output folder that holds them


def kept_checkpoint_file(epoch: int) -> str:
    """The name of the checkpoint kept at `epoch` (`train.keep_checkpoints`): never replaced by
    a later epoch's."""
    return f"checkpoint_{int(epoch)}.pt"
