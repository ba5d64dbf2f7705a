"""From a trial's evaluation history to the run-data contract (docs/run-data.md).

`summarize` builds the per-(seed, epoch) curves table, the per-seed table (final values, success,
onsets, which came first) and the summary metrics; `write_outputs` writes them with the resolved
config and a figure into a trial folder. Every per-seed outcome and summary metric is computed by
`study.contract.outcomes` (their one owner, pure NumPy), which the reports use too; nothing here
recomputes one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from study.contract.artifacts import ARTIFACT_CURVES, ARTIFACT_SEEDS
from study.contract.outcomes import seed_table, trial_metrics
from study.spec import TrialConfig
from study.training import EvalRecord

__all__ = ["Summary", "summarize", "records_to_rows", "write_outputs", "write_snapshot"]


@dataclass
class Summary:
    curves: pd.DataFrame  # one row per (seed, evaluation epoch)
    seeds: pd.DataFrame  # one row per seed
    metrics: dict[str, float]  # summary metrics logged at the end of a trial run


def records_to_rows(history: Sequence[EvalRecord], seed_values: Sequence[int]) -> list[dict]:
    """One dict per (seed, evaluation): the rows of curves.parquet."""
    rows = []
    for rec in history:
        for i, sv in enumerate(seed_values):
            row = {"seed": i, "seed_value": sv, "epoch": rec.epoch}
            row.update({k: v[i] for k, v in rec.metrics.items()})
            rows.append(row)
    return rows


def summarize(
    cfg: TrialConfig, history: Sequence[EvalRecord], seed_values: Sequence[int]
) -> Summary:
    """Curves, per-seed finals and onsets, and the trial's summary metrics."""
    curves = pd.DataFrame(records_to_rows(history, seed_values))
    metric_cols = list(history[0].metrics) if history else []
    if not len(curves):
        curves = pd.DataFrame(columns=["seed", "seed_value", "epoch", *metric_cols])
    seeds = seed_table(
        curves,
        task=cfg.task.name,
        final_window=cfg.train.final_window,
        z=cfg.emergence.z,
        run=cfg.emergence.run,
        metrics=metric_cols,
    )
    if not len(seeds):
        seeds = pd.DataFrame({"seed": np.arange(len(seed_values)), "seed_value": seed_values})
    return Summary(
        curves, seeds, trial_metrics(seeds if len(curves) else seeds.iloc[0:0], metric_cols)
    )


def write_snapshot(directory: Path, epoch: int, weights: Mapping[str, np.ndarray]) -> Path:
    """weights/epoch_XXXXX.npz with every array of the snapshot (leading axis S)."""
    path = Path(directory) / "weights" / f"epoch_{epoch:05d}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **weights)
    return path


def write_outputs(
    directory: Path,
    cfg: TrialConfig,
    summary: Summary,
    *,
    tables: bool = True,
    config: bool = True,
    figure: bool = True,
) -> list[Path]:
    """curves.parquet, seeds.parquet, config.yaml and figures/q_curves.png into `directory`
    (the figure only when there are curves); `tables`, `config`, `figure` false leave those
    files as they are. Returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    if tables:
        paths += [directory / ARTIFACT_CURVES, directory / ARTIFACT_SEEDS]
        summary.curves.to_parquet(paths[-2], index=False)
        summary.seeds.to_parquet(paths[-1], index=False)
    if config:
        paths.append(directory / "config.yaml")
        paths[-1].write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    if figure and len(summary.curves):
        paths.append(_plot_q_curves(directory / "figures" / "q_curves.png", summary.curves, cfg))
    return paths


def _plot_q_curves(path: Path, curves: pd.DataFrame, cfg: TrialConfig) -> Path:
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 3.2), dpi=110)
    ax_f, ax_s = fig.subplots(1, 2, sharey=True)
    for ax, key, title in (
        (ax_f, "q_func", "functional Q (correlations)"),
        (ax_s, "q_struct", "structural Q (weights)"),
    ):
        for seed, c in curves.groupby("seed"):
            ax.plot(c["epoch"], c[key], lw=1, alpha=0.8, label=f"seed {seed}")
        ax.axhline(0.0, color="0.7", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
    ax_f.set_ylabel("Newman Q (designed partition)")
    if curves["seed"].nunique() <= 8:
        ax_s.legend(fontsize=7, frameon=False)
    fig.suptitle(
        f"mi.weight={cfg.mi.weight}, K={cfg.partition.groups}, N={cfg.network.hidden}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path)
    return path
