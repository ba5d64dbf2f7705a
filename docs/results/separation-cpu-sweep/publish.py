"""The separation sweep's own tables: per-seed curves, per-λ summary, the GRU's blocks, timing.

    STUDY_HOME=... python docs/results/separation-cpu-sweep/publish.py [STUDY] [--out DIR]
        [--n-sim N]

Reads the study from MLflow (``analysis.load_study``; default study ``separation-cpu-sweep``)
and writes into ``--out`` (default: this folder):

- ``curves.parquet``: one row per (trial, seed, evaluation) with ``mi.weight`` and every metric.
- ``summary_by_lambda.csv``: per λ the seeds, the final R² (median, worst seed, seeds above
  0.96), the median final q_func_z, the z-scores of Q of each GRU block (candidate U_h =
  q_struct_z, update U_z, reset U_r, the summed magnitudes) and of the signed block change of
  each (dw_block*_z), and the held-out MI, its null and the excess over the null (medians).
- ``gru_blocks.csv``: ``analysis.claims.claims_table`` with ``GRU_BLOCK_CLAIMS`` (each block
  against the λ = 0 seeds, paired by seed, exact Wilcoxon, BH across the λ of a claim).
- ``timing_by_structure.csv`` and ``timing_by_structure.json``: the timing verdict per λ > 0
  (``analysis.timing.pipeline.timing_from_curves``: per-seed onsets at a fixed fraction of each
  curve's own rise, censored lag test, BH across the λ, calibration at the cell's n) of
  function (q_func_z) against each structural measure: Q of |W| (q_struct_z, the paper's),
  the signed change of W (dw_block_z) and the same for the update and reset gates and the sum.
- ``timing_all_seeds.csv`` and ``.json``: the same with the seeds that failed the task
  (descriptive only: a verdict leaves them out).
- ``gru_blocks.png``: median z-score curves of every block, per λ.

Seeds whose network failed the task (final R² ≤ 0.96) are left out of the timing, as the
report does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import analysis
from analysis.claims import GRU_BLOCK_CLAIMS, claims_table
from analysis.timing.pipeline import jsonable, timing_from_curves

HERE = Path(__file__).resolve().parent
LAM = "mi.weight"
SUCCESS = 0.96
# structural measures timed against q_func_z: (column, what it measures)
STRUCTURES = (
    ("q_struct_z", "Q of |U_h| (the paper's structural modularity)"),
    ("dw_block_z", "signed block change of U_h"),
    ("q_update_z", "Q of |U_z|"),
    ("q_reset_z", "Q of |U_r|"),
    ("q_gru_sum_z", "Q of |U_z| + |U_r| + |U_h|"),
    ("dw_block_update_z", "signed block change of U_z"),
    ("dw_block_reset_z", "signed block change of U_r"),
    ("dw_block_gru_sum_z", "signed block change of the sum"),
)
BLOCK_CURVES = ("q_func_z", *(c for c, _ in STRUCTURES))
# the figure's two rows: Q of each block, and the signed change of each (q_func_z in both)
PANELS = (
    ("Q of each block", ("q_func_z", "q_struct_z", "q_update_z", "q_reset_z", "q_gru_sum_z")),
    (
        "ΔW of each block",
        ("q_func_z", "dw_block_z", "dw_block_update_z", "dw_block_reset_z", "dw_block_gru_sum_z"),
    ),
)


def per_seed_curves(data) -> pd.DataFrame:
    """The study's curves with λ (and the seed's success) as columns."""
    lam = data.trials.set_index("trial_id")[LAM].astype(float)
    c = data.curves.copy()
    c.insert(0, LAM, c["trial_id"].map(lam))
    ok = data.seeds.set_index(["trial_id", "seed"])["success"]
    c["success"] = [bool(ok.get((t, s), False)) for t, s in zip(c["trial_id"], c["seed"])]
    return c.sort_values([LAM, "seed", "epoch"], kind="stable").reset_index(drop=True)


def summary_by_lambda(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per λ: n, R² (median, worst, n above 0.96), median final z-scores and the MI excess."""
    rows = []
    for lam, g in seeds.groupby(LAM, sort=True):
        r2 = g["final.r2"].to_numpy(float)
        excess = (g["final.mi_heldout"] - g["final.mi_heldout_null"]).to_numpy(float)
        row = {
            LAM: lam,
            "n": len(g),
            "r2_median": float(np.median(r2)),
            "r2_worst": float(np.min(r2)),
            "n_success": int((r2 > SUCCESS).sum()),
        }
        for col in BLOCK_CURVES:
            row[f"{col}_median"] = float(np.nanmedian(g[f"final.{col}"].to_numpy(float)))
        row["mi_heldout_median"] = float(np.nanmedian(g["final.mi_heldout"]))
        row["mi_heldout_null_median"] = float(np.nanmedian(g["final.mi_heldout_null"]))
        row["mi_excess_median"] = float(np.nanmedian(excess))
        rows.append(row)
    return pd.DataFrame(rows)


def mi_last(curves: pd.DataFrame) -> pd.DataFrame:
    """Per λ > 0: the held-out MI's excess over its null at each seed's last held-out
    evaluation (epoch 100), paired by seed against λ = 0: exact Wilcoxon, BH across the λ.

    The seeds' ``final.mi_heldout`` averages the last 3 *finite* values, which for a metric
    measured every 10th evaluation (epochs 0, 50, 100 here) includes the untrained network at
    epoch 0; the last value is the trained network's."""
    from statsmodels.stats.multitest import multipletests

    from analysis.claims import wilcoxon_p

    last = (
        curves.dropna(subset=["mi_heldout", "mi_heldout_null"])
        .sort_values("epoch")
        .groupby([LAM, "seed_value"])
        .last()
    )
    excess = (last["mi_heldout"] - last["mi_heldout_null"]).rename("excess").reset_index()
    table = excess.pivot(index="seed_value", columns=LAM, values="excess")
    rows = []
    for lam in [v for v in table.columns if v > 0]:
        pair = table[[0.0, lam]].dropna()
        d = (pair[lam] - pair[0.0]).to_numpy(float)
        rows.append(
            {
                LAM: lam,
                "n": len(d),
                "epoch": float(last.loc[lam, "epoch"].max()),
                "excess_control_median": float(pair[0.0].median()),
                "excess_treated_median": float(pair[lam].median()),
                "null_treated_median": float(last.loc[lam, "mi_heldout_null"].median()),
                "effect": float(np.median(d)),
                "n_lower": int((d < 0).sum()),
                "p": wilcoxon_p(d),
            }
        )
    out = pd.DataFrame(rows)
    out["p_bh"] = multipletests(out["p"].to_numpy(float), method="fdr_bh")[1]
    return out


def timing_by_structure(
    curves: pd.DataFrame, n_sim: int, *, all_seeds: bool = False
) -> tuple[pd.DataFrame, list]:
    """One timing record per (structural measure, λ > 0); a table and the full records.

    all_seeds: also time the seeds that failed the task (descriptive: the verdict rule leaves
    them out, since the order of emergence in a network that did not learn the task says
    nothing about the claim)."""
    treated = curves[curves[LAM] > 0]
    if all_seeds:
        treated = treated.drop(columns=["success"])
    records, rows = [], []
    for col, what in STRUCTURES:
        for rec in timing_from_curves(treated, by=[LAM], struct=col, n_sim=n_sim):
            rec = {"structure": col, "measures": what, "all_seeds": all_seeds, **rec}
            records.append(rec)
            flat = {k: v for k, v in rec.items() if not isinstance(v, (list, dict))}
            rows.append({**flat, "excluded": len(rec.get("excluded", []))})
    return pd.DataFrame(rows), records


def figure(curves: pd.DataFrame, path: Path) -> None:
    """Median (over seeds) z-score of every block against epoch, one panel per λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lams = sorted(curves[LAM].unique())
    fig, axes = plt.subplots(2, len(lams), figsize=(4 * len(lams), 6.5), sharex=True)
    axes = np.atleast_2d(axes).reshape(2, len(lams))
    for j, lam in enumerate(lams):
        g = curves[curves[LAM] == lam].groupby("epoch")
        for i, (title, cols) in enumerate(PANELS):
            ax = axes[i, j]
            for col in cols:
                med = g[col].median()
                ax.plot(med.index, med.to_numpy(), label=col, lw=1.4)
            ax.axhline(3.0, color="grey", lw=0.6, ls="--")
            ax.set_title(f"λ = {lam:g}: {title}", fontsize=9)
            if j == 0:
                ax.set_ylabel("median z over seeds")
            if i == 1:
                ax.set_xlabel("epoch")
        axes[0, j].set_yscale("symlog", linthresh=3)
        axes[1, j].set_yscale("symlog", linthresh=3)
    axes[0, -1].legend(fontsize=7, loc="upper left")
    axes[1, -1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", nargs="?", default="separation-cpu-sweep")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--n-sim", type=int, default=200, help="calibration cells per scenario")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    data = analysis.load_study(a.study)
    seeds = analysis.seeds(data)
    curves = per_seed_curves(data)
    curves.to_parquet(a.out / "curves.parquet", index=False)
    summary_by_lambda(seeds).to_csv(a.out / "summary_by_lambda.csv", index=False)
    mi_last(curves).to_csv(a.out / "mi_last.csv", index=False)
    claims_table(seeds, data.swept, task_metric="r2", claims=GRU_BLOCK_CLAIMS).to_csv(
        a.out / "gru_blocks.csv", index=False
    )
    for all_seeds, name in ((False, "timing_by_structure"), (True, "timing_all_seeds")):
        table, records = timing_by_structure(curves, a.n_sim, all_seeds=all_seeds)
        table.to_csv(a.out / f"{name}.csv", index=False)
        (a.out / f"{name}.json").write_text(json.dumps(jsonable(records), indent=1))
    figure(curves, a.out / "gru_blocks.png")
    print(
        f"wrote {a.out}: curves.parquet ({len(curves)} rows), summary_by_lambda.csv, mi_last.csv, "
        f"gru_blocks.csv, timing_by_structure.csv/.json, timing_all_seeds.csv/.json, "
        "gru_blocks.png"
    )


if __name__ == "__main__":
    main()
