"""Publish the causal-cpu study into this folder: per-seed curves, the arms' tables and figures,
and a README whose numbers and plain-language answers are read from the verdict tables.

    STUDY_HOME=/work/studies-causal2 python docs/results/causal-cpu/publish.py \
        [--log /work/studies-causal2/run.log]

Reads the study from MLflow (``analysis.load_study``), computes the arms tables
(``analysis.arms.analyse_arms``) and the report (``analysis.report.build_report``, written to a
temporary folder, not logged), and writes here:

- ``curves.parquet``: one row per (arm, seed, evaluation), every curve metric;
- ``seeds.csv``: one row per (arm, seed), the finals and the timing onsets;
- ``arm_verdicts.csv``, ``arm_comparisons.csv``, ``arm_lesions.csv``, ``arm_switches.csv``;
- ``arms_curves.png`` (each arm's q_func_z, Q(|W|) z, ΔW z against the control's, the
  intervention's epoch marked), ``lesions.png`` (median lesion drops per arm);
- ``findings.txt`` (the report's findings block) and ``README.md``.

The README's sentences are templates filled from the tables (every number is a table's), so
re-running this script after the study finishes rewrites it. Nothing of the study store is
copied.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
NAME = "causal-cpu"
COMMAND = (
    "flock /work/study.lock env STUDY_HOME=/work/studies-causal2 OMP_NUM_THREADS=1 "
    "python -m study run search_spaces/causal-cpu.yaml --num-cpus 2"
)
ARM_TEXT = {
    "control": "λ = 0.1 throughout",
    "off_at_onset": "penalty off at each seed's functional onset (decided online)",
    "off_early": "penalty off at epoch 50",
    "freeze_rec": "W_rec frozen from the start (function through W_in / W_out only)",
    "freeze_rec_onset": "W_rec frozen at each seed's functional onset",
    "swap_mid": "the penalty moves to a random partition of the same sizes at epoch 500",
    "structure_only": "no MI term; c·Σ|W_rec between groups| (c = 0.001) from the start",
    "lambda0": "λ = 0: no penalty",
}
QUANTITIES = (
    "final.accuracy",
    "final.q_func_z",
    "final.q_struct_z",
    "final.dw_block_z",
    "q_func_z",
    "q_struct_z",
    "dw_block_z",
)


def _f(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}g}" if isinstance(v, (int, float)) and math.isfinite(v) else "–"


def _p(v: float) -> str:
    if not (isinstance(v, (int, float)) and math.isfinite(v)):
        return "–"
    return "< 0.001" if v < 0.001 else f"{v:.2g}"


def _cell(text: object) -> str:
    """Text for a Markdown table cell: its pipes escaped (Q(|W|) would split the cell)."""
    return str(text).replace("|", "\\|")


def _wall(log: Path | None, trials: pd.DataFrame) -> str:
    """The study's wall time: the run log's line when given, else first trial start to last
    trial end."""
    if log is not None and log.is_file():
        m = re.search(r"wall (\d+) s", log.read_text())
        if m:
            return f"{int(m.group(1))} s ({int(m.group(1)) / 60:.1f} min)"
    t0, t1 = pd.to_numeric(trials["start_time"]).min(), pd.to_numeric(trials["end_time"]).max()
    if not (math.isfinite(t0) and math.isfinite(t1)):
        return "unknown"
    s = (t1 - t0) / 1000.0
    return f"{s:.0f} s ({s / 60:.1f} min, first trial start to last trial end)"


def _lesion_figure(les: pd.DataFrame, arms: list[str], task_metric: str):
    from analysis.figures import _figure

    fig = _figure(10.0, 3.6)
    axes = fig.subplots(1, 2, squeeze=False).ravel()
    lesions = list(dict.fromkeys(les["lesion"]))
    width = 0.8 / max(len(lesions), 1)
    for ax, m in zip(axes, (task_metric, "q_func_z")):
        for k, lesion in enumerate(lesions):
            g = les[(les["lesion"] == lesion) & (les["measure"] == m)].set_index("arm")
            g = g.reindex(arms)
            x = np.arange(len(arms)) + (k - (len(lesions) - 1) / 2) * width
            med = g["median_drop"].to_numpy(float)
            err = np.vstack([med - g["ci_lo"].to_numpy(float), g["ci_hi"].to_numpy(float) - med])
            ax.bar(x, med, width, label=lesion, yerr=np.abs(err), capsize=2)
        ax.set_xticks(np.arange(len(arms)), arms, rotation=35, ha="right", fontsize=7)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel(f"drop of {m} (intact − lesioned)")
        ax.set_title(f"{m}: median drop over seeds, CI of the median", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def _answer_sentences(v: pd.DataFrame, comp: pd.DataFrame, les: pd.DataFrame) -> list[str]:
    """The plain-language answers, each from one row of the tables (None where missing)."""

    def q(arm: str, start: str) -> dict | None:
        hit = v[(v["arm"] == arm) & v["question"].str.startswith(start)]
        return hit.iloc[0].to_dict() if len(hit) else None

    def c(arm: str, column: str) -> dict | None:
        hit = comp[(comp["arm"] == arm) & (comp["column"] == column)]
        return hit.iloc[0].to_dict() if len(hit) else None

    def said(r: dict | None, what: str) -> str:
        if r is None:
            return f"{what}: not measured"
        return (
            f"{what}: **{r['verdict']}** (median {_f(r['median'])} "
            f"[{_f(r['ci_lo'])}, {_f(r['ci_hi'])}], {int(r['n_up'])} up / {int(r['n_down'])} "
            f"down of {int(r['n'])} seeds, p_bh {_p(r['p_bh'])})"
        )

    def vs(r: dict | None, what: str) -> str:
        if r is None:
            return f"{what} vs control: not measured"
        return (
            f"{what} vs control {_f(r['effect'])} [{_f(r['ci_lo'])}, {_f(r['ci_hi'])}] "
            f"(p_bh {_p(r['p_bh'])}, {r['verdict']})"
        )

    out = ["**Function → structure** (does structure follow once function is there?):"]
    out.append(
        "- Penalty off at the functional onset: "
        + said(q("off_at_onset", "structure (Q(|W|)) keeps"), "Q(|W|) keeps forming")
        + "; "
        + said(q("off_at_onset", "structure (ΔW) keeps"), "ΔW keeps forming")
        + "; "
        + vs(c("off_at_onset", "final.q_struct_z"), "final Q(|W|) z")
        + "."
    )
    out.append(
        "- Penalty off at epoch 50 (before most onsets): "
        + said(q("off_early", "structure (Q(|W|)) keeps"), "Q(|W|) keeps forming")
        + "; "
        + vs(c("off_early", "final.q_func_z"), "final q_func_z")
        + "; "
        + vs(c("off_early", "final.q_struct_z"), "final Q(|W|) z")
        + "."
    )
    out.append(
        "- Partition swapped at epoch 500: "
        + said(q("swap_mid", "function follows"), "function follows to the new partition")
        + "; "
        + said(q("swap_mid", "structure (Q(|W|)) forms"), "structure forms on it")
        + "; "
        + said(q("swap_mid", "the designed partition's structure"), "the old structure recedes")
        + "."
    )
    out.append("**Structure → function** (does function need, or follow, structure?):")
    out.append(
        "- W_rec frozen from the start: "
        + said(q("freeze_rec", "function emerges"), "function emerges")
        + "; "
        + vs(c("freeze_rec", "final.q_func_z"), "final q_func_z")
        + "; "
        + vs(c("freeze_rec", "final.accuracy"), "final accuracy")
        + "."
    )
    out.append(
        "- W_rec frozen at the functional onset: "
        + said(q("freeze_rec_onset", "function keeps"), "function keeps forming")
        + "; "
        + vs(c("freeze_rec_onset", "final.q_func_z"), "final q_func_z")
        + "."
    )
    out.append(
        "- Structure-only penalty: "
        + said(q("structure_only", "structure is imposed"), "structure imposed")
        + "; "
        + said(q("structure_only", "imposed structure"), "imposed structure brings function")
        + "."
    )
    z = les[(les["measure"] == "q_func_z") & (les["lesion"] == "zero_between")].set_index("arm")
    if len(z):
        parts = [
            f"{arm} {_f(r['median_drop'])} [{_f(r['ci_lo'])}, {_f(r['ci_hi'])}]"
            for arm, r in z.iterrows()
        ]
        out.append(
            "- Lesions: zeroing W_rec's between-group blocks drops q_func_z by (median [CI]; "
            "negative: the lesion raises it, as cutting the groups apart decorrelates them "
            "whatever the network learned) " + "; ".join(parts) + "."
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, default=None, help="the study's run log")
    parser.add_argument("--name", default=NAME)
    parser.add_argument("--out", type=Path, default=HERE, help="default: this folder")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    from analysis import load_study
    from analysis.arms import analyse_arms
    from analysis.figures import to_png
    from analysis.report import build_report
    from study.contract.tags import TAG_COMMIT

    data = load_study(args.name)
    arms = analyse_arms(data)
    if arms is None:
        raise SystemExit(f"{args.name}: not a study with arms")
    seeds = data.seeds
    meta = seeds[["trial_id", "seed", "arm", "seed_value", "status"]]
    curves = data.curves.drop(columns=["run_id"], errors="ignore").merge(
        meta.drop(columns=["seed_value"]), on=["trial_id", "seed"], how="left"
    )
    curves.to_parquet(out / "curves.parquet", index=False)
    keep = [
        c
        for c in seeds.columns
        if c in ("trial_id", "arm", "seed", "seed_value", "status", "success")
        or c.startswith(("final.", "onset.", "lag."))
    ]
    seeds[keep].to_csv(out / "seeds.csv", index=False)
    arms.verdicts.to_csv(out / "arm_verdicts.csv", index=False)
    arms.comparisons.to_csv(out / "arm_comparisons.csv", index=False)
    arms.lesions.to_csv(out / "arm_lesions.csv", index=False)
    arms.switches.to_csv(out / "arm_switches.csv", index=False)
    with tempfile.TemporaryDirectory() as tmp:
        rep = build_report(data, out_dir=tmp, log_to_mlflow=False)
        for name in ("arms_curves.png",):
            shutil.copy(Path(tmp) / name, out / name)
        (out / "findings.txt").write_text(rep.findings.text + "\n")
    if len(arms.lesions):
        fig = _lesion_figure(arms.lesions, list(arms.design.arms), data.success_metric)
        (out / "lesions.png").write_bytes(to_png(fig))

    v, comp, les = arms.verdicts, arms.comparisons, arms.lesions
    n_trials = len(data.trials)
    status = data.trials["status"].value_counts().to_dict()
    lines = [
        "# causal-cpu: does function drive structure?",
        "",
        "Eight arms of the cpu-wm preset (working memory, N = 40, K = 2, λ = 0.1, 1000 epochs), "
        "8 seeds each, every arm paired by seed with the control (the same initialisations and "
        "data, and the control's network bit for bit until the arm's intervention acts). "
        "`search_spaces/causal-cpu.yaml`; the analysis is `analysis.arms` (docs/analysis.md, "
        '"Arms"): Wilcoxon signed-rank per comparison, BH within each arm\'s family, '
        "'inconclusive (power)' where 8 seeds cannot reach the family's level.",
        "",
        f"Study status: {data.status}; trials: {n_trials} "
        f"({', '.join(f'{n} {s}' for s, n in status.items())}).",
        "",
        "## What the arms show",
        "",
        "*Generated from the tables below by `publish.py`; every number is theirs.*",
        "",
        *_answer_sentences(v, comp, les),
        "",
        "## The arms",
        "",
        "| arm | intervention |",
        "|---|---|",
        *(f"| `{a}` | {ARM_TEXT.get(a, '')} |" for a in arms.design.arms),
        "",
        "## Per arm against the control: finals and onsets",
        "",
        "Effect = median paired difference (arm − control) with its distribution-free CI "
        "(n = 8: the range of the 8 differences); onsets are the half-rise timing onsets in "
        "epochs, compared as censored intervals; p_bh within the arm's family.",
        "",
        "| arm | quantity | control | arm | effect [CI] | p_bh | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in comp.to_dict("records"):
        if r["column"] not in QUANTITIES and not str(r["column"]).endswith("_orig"):
            continue
        lines.append(
            f"| {r['arm']} | {_cell(r['quantity'])} | {_f(r['median_control'])} | "
            f"{_f(r['median_arm'])} | {_f(r['effect'])} [{_f(r['ci_lo'])}, {_f(r['ci_hi'])}] "
            f"| {_p(r['p_bh'])} | {r['verdict']} |"
        )
    lines += [
        "",
        "## What each arm tests",
        "",
        "| arm | question | verdict | why |",
        "|---|---|---|---|",
        *(
            f"| {r['arm']} | {_cell(r['question'])} | **{r['verdict']}** | {_cell(r['why'])} |"
            for r in v.to_dict("records")
        ),
        "",
        "## Lesions (last lesion evaluation, epoch 1000)",
        "",
        "Drop = intact − lesioned; vs control = median paired difference of the drops.",
        "",
        "| arm | lesion | measure | intact | drop [CI] | p_bh | drop vs control | p_bh |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['arm']} | {r['lesion']} | {r['measure']} | {_f(r['median_intact'])} | "
            f"{_f(r['median_drop'])} [{_f(r['ci_lo'])}, {_f(r['ci_hi'])}] | {_p(r['p_bh'])} | "
            f"{_f(r['drop_vs_control'])} | {_p(r['p_vs_bh'])} |"
            for r in les.to_dict("records")
        ),
        "",
        "## Files",
        "",
        "- `curves.parquet`: every curve metric per (arm, seed, evaluation); `seeds.csv`: finals "
        "and timing onsets per (arm, seed).",
        "- `arm_verdicts.csv`, `arm_comparisons.csv`, `arm_lesions.csv`, `arm_switches.csv`: the "
        "tables above, full precision (`analysis.arm_verdicts(data)` etc. give the same).",
        "- `arms_curves.png`: each arm against the control (median and IQR over seeds; dashed: "
        "the intervention's epoch, its seeds' IQR shaded); `lesions.png`; `findings.txt`.",
        "",
        "## Provenance",
        "",
        f"- Code: commit {data.tags.get(TAG_COMMIT, 'unknown')} (main).",
        f"- Command: `{COMMAND}`, on the shared 2-core VM, 2 trials at a time, 1 torch thread "
        "each.",
        f"- Wall time: {_wall(args.log, data.trials)}.",
        "- Published with `STUDY_HOME=/work/studies-causal2 python "
        "docs/results/causal-cpu/publish.py --log /work/studies-causal2/run.log`.",
        "- Nothing of the study store (MLflow/Optuna databases, Ray results) is committed.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
