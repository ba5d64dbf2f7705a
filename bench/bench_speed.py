"""Whole trials of the old code (a git commit) and of this checkout, side by side in one run.

    PYTHONPATH=. python bench/bench_speed.py [--old cfffba0] [--cells wm-k2 wm-k3 sep]
        [--epochs N] [--repeats R] [--new-native 1|0]

The old code is extracted with `git archive <commit>` into a temporary folder and run in a
subprocess with PYTHONPATH pointing at it (its flat study/*.py layout or the layered one,
whichever it has); this checkout runs the same way, with its compiled kernels
(`--new-native 0` runs its torch code instead).
Each trial is `train(cfg)` of the cell's config (cpu-wm at N = 48, 8 seeds, K = 2 or 3;
cpu-separation (GRU), 8 seeds; one torch thread; the preset's evaluation schedule, held-out
MI included), without tracking or checkpoints. Old and new alternate (old first in even
repeats, new first in odd ones), so drifts in a shared machine's load hit both; the ratio of
each adjacent pair is reported, CPU time of the trial process (what it ran) and wall time,
with the load averages around each trial. `--epochs` shortens every trial alike (the evaluation
schedule is kept, so short trials weigh evaluation more than full ones). Writes
bench/results/speed-<host>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _machine import machine_info  # noqa: E402

CELLS = {
    "wm-k2": (
        "cpu-wm",
        {
            "seeds": 8,
            "network.hidden": 48,
            "partition.groups": 2,
            "task.wm.n_bits": "groups",
            "train.threads": 1,
        },
    ),
    "wm-k3": (
        "cpu-wm",
        {
            "seeds": 8,
            "network.hidden": 48,
            "partition.groups": 3,
            "task.wm.n_bits": "groups",
            "train.threads": 1,
        },
    ),
    "sep": ("cpu-separation", {"seeds": 8, "train.threads": 1}),
}

# runs one trial in a fresh interpreter; prints one JSON line
_RUNNER = r"""
import json, os, sys, time
import torch
try:
    from study.spec import load_trial_config
    from study.training.loop import train
except ImportError:  # the flat layout of older commits
    from study.config import load_trial_config
    from study.train import train
preset, overrides = sys.argv[1], json.loads(sys.argv[2])
cfg = load_trial_config(preset, overrides)
torch.set_num_threads(1)
load0 = os.getloadavg()
c0, w0 = time.process_time(), time.perf_counter()
result = train(cfg)
cpu, wall = time.process_time() - c0, time.perf_counter() - w0
last = result.history[-1]
print(json.dumps({"cpu_s": cpu, "wall_s": wall, "status": result.status,
                  "epochs": result.epochs_done, "evaluations": len(result.history),
                  "load_before": load0, "load_after": os.getloadavg(),
                  "timings": result.timings,
                  "final": {k: last.mean(k) for k in ("accuracy", "r2", "q_func", "mi")
                            if k in last.metrics}}))
"""


def extract(commit: str, dest: Path) -> Path:
    """`git archive commit` of the repository into dest; returns dest."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_trial(code_dir: Path, preset: Path, overrides: dict, native: str, home: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(code_dir),
        "STUDY_NATIVE": native,
        "STUDY_HOME": str(home),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(preset), json.dumps(overrides)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(code_dir),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"trial in {code_dir} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--old", default="cfffba0", help="commit of the old code")
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--new-native",
        default="1",
        choices=["0", "1"],
        help="STUDY_NATIVE for this checkout (0: its torch code)",
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-speed-"))
    result = {
        "benchmark": "bench_speed",
        "machine": machine_info("cpu"),
        "old": args.old,
        "new": f"this checkout, STUDY_NATIVE={args.new_native}",
        "epochs_override": args.epochs,
        "cells": [],
    }
    host = result["machine"]["hostname"]
    out = Path(args.out) if args.out else HERE / "results" / f"speed-{host}.json"
    try:
        old_dir = extract(args.old, work / "old")
        codes = {"old": (old_dir, "1"), "new": (REPO, args.new_native)}
        for cell in args.cells:
            preset_name, overrides = CELLS[cell]
            over = dict(overrides)
            if args.epochs is not None:
                over["train.epochs"] = args.epochs
            runs = {"old": [], "new": []}
            for rep in range(args.repeats):
                order = ("old", "new") if rep % 2 == 0 else ("new", "old")
                for code in order:
                    code_dir, native = codes[code]
                    # each side reads its own copy of the preset (the old schema may differ)
                    preset = code_dir / "search_spaces" / f"{preset_name}.yaml"
                    r = run_trial(code_dir, preset, over, native, work / f"home-{code}")
                    runs[code].append(r)
                    print(
                        f"{cell} {code}: {r['cpu_s']:.1f} s cpu, {r['wall_s']:.1f} s wall, "
                        f"load {r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f}, "
                        f"final {r['final']}",
                        flush=True,
                    )
            ratios_cpu = [o["cpu_s"] / n["cpu_s"] for o, n in zip(runs["old"], runs["new"])]
            ratios_wall = [o["wall_s"] / n["wall_s"] for o, n in zip(runs["old"], runs["new"])]
            result["cells"].append(
                {
                    "cell": cell,
                    "preset": preset_name,
                    "overrides": over,
                    "runs": runs,
                    "speedup_cpu": round(statistics.median(ratios_cpu), 3),
                    "speedup_wall": round(statistics.median(ratios_wall), 3),
                    "speedups_cpu": [round(x, 3) for x in ratios_cpu],
                    "speedups_wall": [round(x, 3) for x in ratios_wall],
                }
            )
            print(
                f"{cell}: x{result['cells'][-1]['speedup_cpu']} cpu, "
                f"x{result['cells'][-1]['speedup_wall']} wall",
                flush=True,
            )
            out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
