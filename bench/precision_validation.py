"""Is a bfloat16 critic statistically indistinguishable from float32 on cpu-wm?

    .venv/bin/python bench/precision_validation.py [--seeds 8] [--parallel 2]
        [--set KEY=VALUE ...] [--from DIR] [--out FILE]

Trains cpu-wm at λ = 0 and λ = 0.1 with critic.precision float32 and bfloat16 (4 trials of
`--seeds` seeds, `python -m study train`, one thread each) and compares the precisions on the
per-seed finals. The two precisions train the same seeds (same initialisation and data
streams), so the comparison is paired by seed: a two-sided Wilcoxon signed-rank test
(scipy.stats.wilcoxon, exact for n ≤ 25) of bfloat16 − float32 on final accuracy and final
q_func, per λ, Holm-adjusted over the four tests; "indistinguishable" means every adjusted
p > 0.05. Onset verdicts (func first / struct first / tie / neither from t_func, t_struct) are
compared seed by seed (agreement count) and as which-first counts per precision. As a check that
the test could see an effect at all, the λ effect on q_func (one-sided Mann–Whitney, λ = 0.1 >
λ = 0) is reported for each precision. --from reuses the trial folders of an earlier run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "bfloat16")
METRICS = ("accuracy", "q_func")


def _trial_dir(base: Path, precision: str, weight: float) -> Path:
    return base / f"{precision}-lam{weight}"


def run_trials(
    base: Path, preset: str, seeds: int, weights, extra: list[str], parallel: int
) -> None:
    """The 2 × len(weights) trials, `parallel` at a time, one thread each."""
    env = {
        **os.environ,
        "STUDY_HOME": str(base / "home"),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    jobs = []
    for precision in PRECISIONS:
        for w in weights:
            cmd = [
                sys.executable,
                "-m",
                "study",
                "train",
                preset,
                "-q",
                "--no-track",
                "--set",
                f"seeds={seeds}",
                "--set",
                f"mi.weight={w}",
                "--set",
                f"critic.precision={precision}",
                "--set",
                "train.threads=1",
                *[a for kv in extra for a in ("--set", kv)],
                "--out",
                str(_trial_dir(base, precision, w)),
            ]
            jobs.append(cmd)
    running: list[subprocess.Popen] = []
    for cmd in jobs:
        while len(running) >= parallel:
            _finish(running.pop(0))
        running.append(subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True))
    for proc in running:
        _finish(proc)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"precision_validation: a trial failed: {err.strip()[-2000:]}")


def _verdict(t_func, t_struct) -> str:
    f, s = (not pd.isna(t_func)), (not pd.isna(t_struct))
    if f and s:
        return (
            "tie"
            if t_func == t_struct
            else ("func_first" if t_func < t_struct else "struct_first")
        )
    return "func_first" if f else ("struct_first" if s else "neither")


def load(base: Path, weights) -> pd.DataFrame:
    rows = []
    for precision in PRECISIONS:
        for w in weights:
            seeds = pd.read_parquet(_trial_dir(base, precision, w) / "seeds.parquet")
            for _, s in seeds.iterrows():
                rows.append(
                    {
                        "precision": precision,
                        "lambda": w,
                        "seed": int(s["seed_value"]),
                        "accuracy": float(s["final.accuracy"]),
                        "q_func": float(s["final.q_func"]),
                        "t_func": s.get("t_func"),
                        "t_struct": s.get("t_struct"),
                        "verdict": _verdict(s.get("t_func"), s.get("t_struct")),
                    }
                )
    return pd.DataFrame(rows)


def _holm(pvalues: list[float]) -> list[float]:
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def compare(df: pd.DataFrame, weights) -> dict:
    tests = []
    for w in weights:
        part = df[df["lambda"] == w]
        f32 = part[part.precision == "float32"].set_index("seed")
        b16 = part[part.precision == "bfloat16"].set_index("seed")
        seeds = f32.index.intersection(b16.index)
        for m in METRICS:
            diff = (b16.loc[seeds, m] - f32.loc[seeds, m]).to_numpy()
            if (diff == 0).all():  # identical finals: nothing to test
                p = 1.0
            else:
                p = float(stats.wilcoxon(diff, alternative="two-sided").pvalue)
            tests.append(
                {
                    "lambda": w,
                    "metric": m,
                    "n": int(len(seeds)),
                    "median_diff_bf16_minus_f32": round(float(pd.Series(diff).median()), 4),
                    "mean_float32": round(float(f32.loc[seeds, m].mean()), 4),
                    "mean_bfloat16": round(float(b16.loc[seeds, m].mean()), 4),
                    "p_wilcoxon": round(p, 4),
                }
            )
    for t, adj in zip(tests, _holm([t["p_wilcoxon"] for t in tests])):
        t["p_holm"] = round(adj, 4)
    onsets = {}
    for w in weights:
        part = df[df["lambda"] == w]
        v32 = part[part.precision == "float32"].set_index("seed")["verdict"]
        v16 = part[part.precision == "bfloat16"].set_index("seed")["verdict"]
        seeds = v32.index.intersection(v16.index)
        onsets[str(w)] = {
            "same_verdict_seeds": int((v32[seeds] == v16[seeds]).sum()),
            "n": int(len(seeds)),
            "counts": {
                p: part[part.precision == p]["verdict"].value_counts().to_dict()
                for p in PRECISIONS
            },
        }
    effect = {}
    if len(weights) == 2:
        lo, hi = sorted(weights)
        for p in PRECISIONS:
            a = df[(df.precision == p) & (df["lambda"] == hi)]["q_func"]
            b = df[(df.precision == p) & (df["lambda"] == lo)]["q_func"]
            effect[p] = round(float(stats.mannwhitneyu(a, b, alternative="greater").pvalue), 4)
    return {
        "paired_tests": tests,
        "indistinguishable": all(t["p_holm"] > 0.05 for t in tests),
        "onset_verdicts": onsets,
        "lambda_effect_on_q_func_p_mannwhitney": effect,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default=str(REPO / "search_spaces" / "cpu-wm.yaml"))
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--weights", type=float, nargs=2, default=[0.0, 0.1])
    p.add_argument("--parallel", type=int, default=2, help="trials at a time")
    p.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more overrides for every trial (e.g. train.epochs=10 for a smoke run)",
    )
    p.add_argument("--from", dest="reuse", default=None, help="trial folders of an earlier run")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    base = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="precision-val-"))
    if not args.reuse:
        run_trials(base, args.preset, args.seeds, args.weights, args.extra, args.parallel)
    df = load(base, args.weights)
    result = {
        "machine": machine_info(),
        "preset": Path(args.preset).name,
        "seeds": args.seeds,
        "weights": args.weights,
        "overrides": args.extra,
        "trials": str(base),
        "test": "paired two-sided Wilcoxon signed-rank by seed, Holm over 4 tests",
        **compare(df, args.weights),
        "per_seed": json.loads(df.to_json(orient="records")),
    }
    host = result["machine"].get("hostname", "host")
    out = (
        Path(args.out)
        if args.out
        else (REPO / "bench" / "results" / f"precision-validation-{host}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "paired_tests",
                    "indistinguishable",
                    "onset_verdicts",
                    "lambda_effect_on_q_func_p_mannwhitney",
                )
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
