"""Does the cpu-wm preset show the paper's effect? Trains it at λ = 0 and at its own λ.

    .venv/bin/python bench/cpu_wm_effect.py [--preset search_spaces/cpu-wm.yaml] [--serial]
        [--seeds N] [--native 1|exact|0]

Both trials run as `python -m study train` (one thread each, side by side on a 2-core machine,
or one after another with --serial). Writes bench/results/cpu-wm-effect-<host>.json: per seed and
λ the final accuracy, q_func, q_struct, mi_gauss, the half-rise epochs of q_func and q_struct,
and each trial's wall time, plus the replication checks: accuracy ≥ 0.9 in most seeds at both λ,
q_func higher with the penalty by ≥ 0.2, q_struct rising after q_func in most penalised seeds,
and the paired test of the effect: both λ share seeds (same initialisation), so the per-seed
differences of final q_func and accuracy get a Wilcoxon signed-rank test (exact, two-sided).
The MI audit adds, per seed at the last evaluation, mi, mi_gauss, mi_gauss_null, mi_heldout,
mi_heldout_null, and per λ their means and the spread of each measurement's excess over its
null floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

REPO = Path(__file__).resolve().parents[1]
_AUDIT = ("mi", "mi_gauss", "mi_gauss_null", "mi_heldout", "mi_heldout_null")


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default=str(REPO / "search_spaces" / "cpu-wm.yaml"))
    p.add_argument("--serial", action="store_true", help="one trial at a time, all threads")
    p.add_argument("--out", default=None)
    p.add_argument("--seeds", type=int, default=None, help="override the preset's seeds")
    p.add_argument("--native", default=None, help="STUDY_NATIVE for both trials (default: as set)")
    args = p.parse_args()
    import yaml

    lam = float(yaml.safe_load(Path(args.preset).read_text())["mi"]["weight"])
    work = Path(tempfile.mkdtemp(prefix="cpu-wm-effect-"))
    env = {**os.environ, "STUDY_HOME": str(work / "home")}
    if args.native is not None:
        env["STUDY_NATIVE"] = args.native
    extra = ["--set", f"seeds={args.seeds}"] if args.seeds else []
    threads = os.cpu_count() if args.serial else 1
    procs, walls = {}, {}
    for weight in (0.0, lam):
        cmd = [
            sys.executable,
            "-m",
            "study",
            "train",
            args.preset,
            "-q",
            "--no-track",
            "--set",
            f"mi.weight={weight}",
            "--set",
            f"train.threads={threads}",
            *extra,
            "--out",
            str(work / f"lam{weight}"),
        ]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        procs[weight] = (proc, start)
        if args.serial:
            _, err = proc.communicate()
            walls[weight] = time.perf_counter() - start
            if proc.returncode:
                raise SystemExit(err)
    for weight, (proc, start) in procs.items():
        if weight not in walls:
            _, err = proc.communicate()
            walls[weight] = time.perf_counter() - start
            if proc.returncode:
                raise SystemExit(err)

    rows = []
    for weight in (0.0, lam):
        seeds = pd.read_parquet(work / f"lam{weight}" / "seeds.parquet")
        curves = pd.read_parquet(work / f"lam{weight}" / "curves.parquet")
        last = curves[curves["epoch"] == curves["epoch"].max()].set_index("seed")
        for _, s in seeds.iterrows():
            at_end = last.loc[int(s["seed"])]
            rows.append(
                {
                    "lambda": weight,
                    "seed": int(s["seed_value"]),
                    "accuracy": round(float(s["final.accuracy"]), 4),
                    "q_func": round(float(s["final.q_func"]), 4),
                    "q_struct": round(float(s["final.q_struct"]), 4),
                    "mi_gauss": round(float(s["final.mi_gauss"]), 4),
                    "mi_critic": round(float(s["final.mi"]), 4),
                    # the MI audit at the last evaluation: measurements and null floors
                    **{f"last.{m}": round(float(at_end[m]), 4) for m in _AUDIT if m in at_end},
                    "t_func": None if pd.isna(s["t_func"]) else float(s["t_func"]),
                    "t_struct": None if pd.isna(s["t_struct"]) else float(s["t_struct"]),
                    "wall_s": round(walls[weight], 1),
                }
            )
    df = pd.DataFrame(rows)
    off, on = df[df["lambda"] == 0.0], df[df["lambda"] == lam]
    lagged = [
        (r.t_struct is not None and r.t_func is not None and r.t_struct > r.t_func)
        for r in on.itertuples()
    ]
    audit = {}
    for weight, part in ((0.0, off), (lam, on)):
        if "last.mi_heldout" in part:
            excess_g = part["last.mi_gauss"] - part["last.mi_gauss_null"]
            excess_h = part["last.mi_heldout"] - part["last.mi_heldout_null"]
            audit[str(weight)] = {
                f"{name} mean": round(float(v.mean()), 4)
                for name, v in (
                    ("mi_heldout", part["last.mi_heldout"]),
                    ("mi_heldout_null", part["last.mi_heldout_null"]),
                    ("mi_heldout - null", excess_h),
                    ("mi_gauss", part["last.mi_gauss"]),
                    ("mi_gauss_null", part["last.mi_gauss_null"]),
                    ("mi_gauss - null", excess_g),
                )
            }
            audit[str(weight)].update(
                {
                    "mi_heldout - null range": [
                        round(float(excess_h.min()), 4),
                        round(float(excess_h.max()), 4),
                    ],
                    "mi_gauss - null range": [
                        round(float(excess_g.min()), 4),
                        round(float(excess_g.max()), 4),
                    ],
                }
            )
    checks = {
        "accuracy>=0.9 in most seeds (lambda 0)": int((off["accuracy"] >= 0.9).sum()),
        "accuracy>=0.9 in most seeds (lambda on)": int((on["accuracy"] >= 0.9).sum()),
        "q_func gain (mean on - mean off)": round(
            float(on["q_func"].mean() - off["q_func"].mean()), 4
        ),
        "penalised seeds with t_struct > t_func": int(sum(lagged)),
        "seeds per lambda": int(len(on)),
        **_paired(off, on),
    }
    result = {
        "machine": machine_info(),
        "preset": str(Path(args.preset).name),
        "lambda": lam,
        "threads_per_trial": threads,
        "serial": args.serial,
        "per_seed": rows,
        "checks": checks,
        "mi_audit_last_evaluation": audit,
    }
    host = result["machine"].get("hostname", "host")
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"cpu-wm-effect-{host}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(df.to_string(index=False))
    print(json.dumps(checks, indent=2))
    print(json.dumps(audit, indent=2))
    print(f"wrote {out}")
    return 0


def _paired(off: pd.DataFrame, on: pd.DataFrame) -> dict:
    """Wilcoxon signed-rank (exact, two-sided) of the per-seed differences on - off of final
    q_func and accuracy: the two λ share every seed's initialisation, so seeds pair."""
    from scipy.stats import wilcoxon

    a, b = off.set_index("seed"), on.set_index("seed")
    common = a.index.intersection(b.index)
    out = {}
    for m in ("q_func", "accuracy"):
        d = (b.loc[common, m] - a.loc[common, m]).to_numpy(float)
        p = float(wilcoxon(d, method="exact").pvalue) if len(d) >= 2 else float("nan")
        out[f"{m} paired difference median"] = round(float(pd.Series(d).median()), 4)
        out[f"{m} paired Wilcoxon p"] = round(p, 5)
    return out


if __name__ == "__main__":
    sys.exit(main())
