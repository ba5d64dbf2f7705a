"""From a trial's evaluation history to the run-data contract (docs/run-data.md).

`summarize` builds the per-(seed, epoch) curves table, the per-seed table (final values, success,
emergence epochs) and the summary metrics; `write_outputs` writes them with the resolved config and
a figure into a trial folder. Emergence epochs use `analysis.emergence.onset`, the same definition
the reports use (one implementation, shared one way: study → analysis.emergence, never back).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis.emergence import onset
from study.config import TrialConfig
from study.metrics import modularity_chance
from study.partition import groups
from study.train import EvalRecord, records_to_rows

__all__ = ["Summary", "summarize", "write_outputs", "write_snapshot", "SUCCESS_THRESHOLD",
           "DIFFERENTIATED_Q_STRUCT"]

# method.md §11: success = final accuracy > 0.9 (WM) or mean R² > 0.96 (separation);
# differentiated = success and final Q_str > 0.1
SUCCESS_THRESHOLD = {"accuracy": 0.9, "r2": 0.96}
DIFFERENTIATED_Q_STRUCT = 0.1


@dataclass
class Summary:
    curves: pd.DataFrame  # one row per (seed, evaluation epoch)
    seeds: pd.DataFrame  # one row per seed
    metrics: dict[str, float]  # summary metrics logged at the end of a trial run


def _final(values: np.ndarray, window: int) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-window:].mean()) if finite.size else float("nan")


def summarize(cfg: TrialConfig, history: Sequence[EvalRecord],
              seed_values: Sequence[int]) -> Summary:
    """Curves, per-seed finals and onsets, and the trial's summary metrics."""
    curves = pd.DataFrame(records_to_rows(history, seed_values))
    metric_cols = list(history[0].metrics) if history else []
    task_metric = "accuracy" if cfg.task.name == "working_memory" else "r2"
    window = cfg.train.final_window
    chance = modularity_chance(groups(cfg.network.hidden, cfg.partition.groups,
                                      cfg.partition.sizes)) if cfg.partition.groups > 1 else None
    rows = []
    for i, sv in enumerate(seed_values):
        c = curves[curves["seed"] == i] if len(curves) else curves
        epochs = c["epoch"].to_numpy(float) if len(c) else np.array([])
        row: dict[str, object] = {"seed": i, "seed_value": sv}
        for m in metric_cols:
            row[f"final.{m}"] = _final(c[m].to_numpy(float), window)
        on_f = onset(epochs, c["q_func"].to_numpy(float), chance=chance, final_window=window) \
            if len(c) else None
        on_s = onset(epochs, c["q_struct"].to_numpy(float), chance=chance, final_window=window) \
            if len(c) else None
        t_func = on_f.half_rise if on_f else math.nan
        t_struct = on_s.half_rise if on_s else math.nan
        success = bool(row.get(f"final.{task_metric}", math.nan) > SUCCESS_THRESHOLD[task_metric])
        row.update(
            success=success,
            differentiated=success and bool(row.get("final.q_struct", math.nan)
                                            > DIFFERENTIATED_Q_STRUCT),
            t_func=t_func,
            t_struct=t_struct,
            lag=t_struct - t_func,
            func_emerged=bool(on_f and on_f.emerged),
            struct_emerged=bool(on_s and on_s.emerged),
        )
        rows.append(row)
    seeds = pd.DataFrame(rows)
    out: dict[str, float] = {}
    for m in metric_cols:
        vals = seeds[f"final.{m}"].to_numpy(float)
        if np.isfinite(vals).any():
            out[f"final.{m}"] = float(np.nanmedian(vals))
    n = len(seeds)
    out["final.success_rate"] = float(seeds["success"].mean()) if n else math.nan
    out["final.differentiated_rate"] = float(seeds["differentiated"].mean()) if n else math.nan
    for key in ("t_func", "t_struct", "lag"):
        vals = seeds[key].to_numpy(float) if n else np.array([])
        if np.isfinite(vals).any():
            out[key] = float(np.nanmedian(vals))
    out["n_seeds"] = float(n)
    out["n_func_emerged"] = float(seeds["func_emerged"].sum()) if n else 0.0
    out["n_struct_emerged"] = float(seeds["struct_emerged"].sum()) if n else 0.0
    out["n_lag_positive"] = float((seeds["lag"] > 0).sum()) if n else 0.0
    return Summary(curves, seeds, out)


def write_snapshot(directory: Path, epoch: int, weights: Mapping[str, np.ndarray]) -> Path:
    """weights/epoch_XXXXX.npz with every array of the snapshot (leading axis S)."""
    path = Path(directory) / "weights" / f"epoch_{epoch:05d}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **weights)
    return path


def write_outputs(directory: Path, cfg: TrialConfig, summary: Summary) -> list[Path]:
    """curves.parquet, seeds.parquet, config.yaml and figures/q_curves.png into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "curves.parquet", directory / "seeds.parquet", directory / "config.yaml"]
    summary.curves.to_parquet(paths[0], index=False)
    summary.seeds.to_parquet(paths[1], index=False)
    paths[2].write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    if len(summary.curves):
        paths.append(_plot_q_curves(directory / "figures" / "q_curves.png", summary.curves, cfg))
    return paths


def _plot_q_curves(path: Path, curves: pd.DataFrame, cfg: TrialConfig) -> Path:
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 3.2), dpi=110)
    ax_f, ax_s = fig.subplots(1, 2, sharey=True)
    for ax, key, title in ((ax_f, "q_func", "functional Q (correlations)"),
                           (ax_s, "q_struct", "structural Q (weights)")):
        for seed, c in curves.groupby("seed"):
            ax.plot(c["epoch"], c[key], lw=1, alpha=0.8, label=f"seed {seed}")
        ax.axhline(0.0, color="0.7", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
    ax_f.set_ylabel("Newman Q (designed partition)")
    if curves["seed"].nunique() <= 8:
        ax_s.legend(fontsize=7, frameon=False)
    fig.suptitle(f"mi.weight={cfg.mi.weight}, K={cfg.partition.groups}, N={cfg.network.hidden}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path
