"""Overhead of the study service: a 4-trial study through Ray Tune vs `study train` one by one.

    RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_service.py [--epochs 40]

Runs the same four trials (demo-wm with a shortened budget, λ ∈ {0, 0.1, 0.2, 0.3}) three ways,
each in a fresh STUDY_HOME with MLflow tracking on: `python -m study run` with concurrency 1
(pure overhead), with concurrency 2 (what 2 cores buy), and four `python -m study train` calls one
after another. Also the time from launching `study run` to the first trial's first evaluation
(its epoch-0 metrics arriving in MLflow). Writes bench/results/service-<host>.json.
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = [0.0, 0.1, 0.2, 0.3]


def _spec(work: Path, epochs: int, concurrency: int) -> Path:
    spec = {
        "name": f"bench-c{concurrency}",
        "base": str(REPO / "search_spaces" / "demo-wm.yaml"),
        "trial": {
            "train": {
                "epochs": epochs,
                "eval_every": 10,
                "checkpoint_every": 20,
                "snapshot_every": 0,
                "threads": 1,
            }
        },
        "search": {"mi.weight": {"values": WEIGHTS}},
        "sampler": {"name": "grid"},
        "concurrency": concurrency,
        "resources": {"cpu": 1},
    }
    path = work / f"bench-c{concurrency}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _first_eval_time(
    home: Path, name: str, timeout: float, start: float, proc: subprocess.Popen
) -> float | None:
    """Seconds from `start` until any trial of the study has logged its epoch-0 metrics."""
    from mlflow.tracking import MlflowClient

    db = home / "mlflow.db"
    ready = home / "ray" / name  # the driver has created (and migrated) the store by now
    while time.time() - start < timeout and proc.poll() is None:
        time.sleep(0.5)
        if not ready.exists():
            continue  # a second process opening a store mid-migration races the driver
        try:
            client = MlflowClient(f"sqlite:///{db}")
            exp = client.get_experiment_by_name(name)
            if exp is None:
                continue
            for run in client.search_runs([exp.experiment_id], "tags.`study.role` = 'trial'"):
                hist = client.get_metric_history(run.info.run_id, "q_func")
                if hist:
                    return min(m.timestamp for m in hist) / 1000.0 - start
        except Exception:
            continue
    return None


def run_study(work: Path, epochs: int, concurrency: int) -> dict:
    home = work / f"home-c{concurrency}"
    env = {**os.environ, "STUDY_HOME": str(home), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "study", "run", str(_spec(work, epochs, concurrency)), "-q"]
    start = time.time()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first = _first_eval_time(home, f"bench-c{concurrency}", 600, start, proc)
    out, _ = proc.communicate()
    wall = time.time() - start
    if proc.returncode:
        raise SystemExit(out[-3000:])
    return {
        "wall_s": round(wall, 1),
        "first_trial_first_eval_s": round(first, 1) if first else None,
    }


def run_sequential(work: Path, epochs: int) -> dict:
    home = work / "home-seq"
    env = {**os.environ, "STUDY_HOME": str(home)}
    start = time.time()
    each = []
    for w in WEIGHTS:
        t0 = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "study",
                "train",
                str(REPO / "search_spaces" / "demo-wm.yaml"),
                "-q",
                "--name",
                "bench-seq",
                "--out",
                str(work / f"seq-{w}"),
                "--set",
                f"mi.weight={w}",
                "--set",
                f"train.epochs={epochs}",
                "--set",
                "train.eval_every=10",
                "--set",
                "train.checkpoint_every=20",
                "--set",
                "train.snapshot_every=0",
                "--set",
                "train.threads=1",
            ],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        each.append(round(time.time() - t0, 1))
    return {"wall_s": round(time.time() - start, 1), "per_trial_s": each}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    seq = run_sequential(work, args.epochs)
    print("study train x4, one after another:", seq, flush=True)
    c1 = run_study(work, args.epochs, 1)
    print("study run, concurrency 1:", c1, flush=True)
    c2 = run_study(work, args.epochs, 2)
    print("study run, concurrency 2:", c2, flush=True)
    result = {
        "machine": machine_info(),
        "trials": len(WEIGHTS),
        "epochs_per_trial": args.epochs,
        "preset": "demo-wm (4 seeds, 150+300 steps)",
        "sequential_study_train": seq,
        "tune_concurrency_1": c1,
        "tune_concurrency_2": c2,
        "overhead_concurrency_1_s": round(c1["wall_s"] - seq["wall_s"], 1),
        "speedup_concurrency_2": round(seq["wall_s"] / c2["wall_s"], 2),
    }
    host = result["machine"].get("hostname", "host")
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"service-{host}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
