"""Overhead of the study service.

    RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_service.py [--epochs 40]
    RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_service.py --overhead [--trials 60]

Default: the same four trials (demo-wm with a shortened budget, λ ∈ {0, 0.1, 0.2, 0.3}) three
ways, each in a fresh STUDY_HOME with MLflow tracking on: `python -m study run` with concurrency 1
(pure overhead), with concurrency 2 (what 2 cores buy), and four `python -m study train` calls one
after another. Also the time from launching `study run` to the first trial's first evaluation
(its epoch-0 metrics arriving in MLflow). Writes bench/results/service-<host>.json.

`--overhead`: the fixed cost per trial of a study, old code against new in one run. The study
is bench/specs/overhead-tpe.yaml (TPE over λ, K and the learning rate; tiny 6-epoch trials, two
at a time), run by the code at `--old` (default: the commit this work branched from, checked out
into a temporary `git worktree`) and by this tree, one after the other, each in a subprocess
with PYTHONPATH on its tree. bench/_overhead_trace.py times every step of every trial (Ray's
actor start, imports, MLflow calls, outputs, figure, checkpoints, Tune's upload and its report
round trip, the driver's Optuna and Tune work); a trial's fixed cost is its slot time (the driver
asking for its process -> the driver stopping it) less its training compute. The machine's load
is sampled throughout. Writes bench/results/service-overhead-<host>.json with both breakdowns and
the old/new ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
WEIGHTS = [0.0, 0.1, 0.2, 0.3]
OVERHEAD_SPEC = BENCH / "specs" / "overhead-tpe.yaml"
OLD_REF = "8c16e55"  # main when the overhead work began (before trial-process reuse)


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


# ----------------------------------------------------------------------------------------------
# --overhead: the fixed cost per trial, old code against new


class LoadSampler:
    """The machine's load while a study runs: the 1-minute load average, the fraction of CPU
    time busy (all processes, from /proc/stat) and the runnable processes, every few seconds."""

    def __init__(self, every: float = 5.0):
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _cpu() -> tuple[int, int, int]:
        """(busy jiffies, total jiffies, runnable processes) from /proc/stat."""
        fields, running = [], 0
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu "):
                fields = [int(x) for x in line.split()[1:]]
            elif line.startswith("procs_running"):
                running = int(line.split()[1])
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields), running

    def _run(self) -> None:
        busy0, total0, _ = self._cpu()
        while not self._stop.wait(self.every):
            busy, total, running = self._cpu()
            frac = (busy - busy0) / max(total - total0, 1)
            busy0, total0 = busy, total
            self.samples.append((os.getloadavg()[0], frac, running))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {}
        loads, busy, running = zip(*self.samples)
        return {
            "samples": len(self.samples),
            "load_avg_1m_mean": round(sum(loads) / len(loads), 2),
            "load_avg_1m_max": round(max(loads), 2),
            "cpu_busy_fraction_mean": round(sum(busy) / len(busy), 3),
            "runnable_processes_mean": round(sum(running) / len(running), 1),
        }


def _commit(tree: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def _overhead_spec(work: Path, label: str, trials: int) -> Path:
    """bench/specs/overhead-tpe.yaml with an absolute base and TRIALS trials."""
    spec = yaml.safe_load(OVERHEAD_SPEC.read_text())
    spec["base"] = str((OVERHEAD_SPEC.parent / spec["base"]).resolve())
    spec["name"] = f"overhead-{label}"
    spec["trials"] = trials
    path = work / f"overhead-{label}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_overhead(tree: Path, label: str, work: Path, trials: int, concurrency: int) -> dict:
    """The overhead study run by the code in TREE, traced; its wall time, load and breakdown."""
    import _overhead_trace

    home, trace = work / f"home-{label}", work / f"trace-{label}"
    trace.mkdir(parents=True)
    env = {
        **os.environ,
        "STUDY_HOME": str(home),
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": f"{tree}{os.pathsep}{BENCH}",
        _overhead_trace.TRACE_ENV: str(trace),
    }
    for key in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "STUDY_OPTUNA_STORAGE"):
        env.pop(key, None)
    spec = _overhead_spec(work, label, trials)
    cmd = [sys.executable, str(BENCH / "_overhead_trace.py"), str(spec), str(concurrency)]
    log = work / f"{label}.log"
    print(f"[{label}] {tree} ({_commit(tree)}): {trials} trials ...", flush=True)
    with LoadSampler() as load, open(log, "w") as f:
        start = time.time()
        proc = subprocess.run(cmd, cwd=work, env=env, stdout=f, stderr=subprocess.STDOUT)
        wall = time.time() - start
    if proc.returncode:
        raise SystemExit(f"[{label}] the study failed:\n" + log.read_text()[-3000:])
    result = {
        "tree": str(tree),
        "commit": _commit(tree),
        "wall_s": round(wall, 1),
        "load": load.summary(),
        **_overhead_trace.analyse(trace, concurrency),
    }
    print(
        f"[{label}] wall {result['wall_s']} s; fixed per trial "
        f"{result['per_trial']['fixed_s']}; load {result['load']}",
        flush=True,
    )
    return result


def same_trials(work: Path, labels=("old", "new")) -> dict:
    """The trials both studies ran with the same searched values (TPE's first suggestions agree;
    later ones follow the order trials finish in) and how many of them logged exactly the same
    summary metrics under the old code and the new."""
    from mlflow.tracking import MlflowClient

    found = {}
    for label in labels:
        client = MlflowClient(f"sqlite:///{work / f'home-{label}' / 'mlflow.db'}")
        exp = client.get_experiment_by_name(f"overhead-{label}")
        runs = client.search_runs(
            [exp.experiment_id], "tags.`study.role` = 'trial'", max_results=10000
        )
        found[label] = {tuple(sorted(r.data.params.items())): r.data.metrics for r in runs}
    a, b = (found[label] for label in labels)
    common = set(a) & set(b)
    return {
        "trials_with_the_same_values": len(common),
        "of_which_identical_summary_metrics": sum(a[k] == b[k] for k in common),
    }


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if isinstance(a, (int, float)) and b else None


def overhead(args) -> dict:
    """Old code (a temporary worktree at --old) against this tree on the overhead study."""
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    old_tree = work / "old"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(old_tree), args.old],
        check=True,
        capture_output=True,
    )
    runs = {}
    try:
        for label in args.order.split(","):
            tree = old_tree if label == "old" else REPO
            runs[label] = run_overhead(tree, label, work, args.trials, args.concurrency)
        same = same_trials(work)
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)],
            capture_output=True,
        )
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    old, new = runs["old"], runs["new"]
    po, pn = old["per_trial"], new["per_trial"]
    return {
        "machine": machine_info(),
        "spec": str(OVERHEAD_SPEC.relative_to(REPO)),
        "trials": args.trials,
        "concurrency": args.concurrency,
        "order": args.order,
        "old": old,
        "new": new,
        "same_results": same,
        # old / new: how many times less the new code spends on the same thing
        "ratios_old_over_new": {
            "fixed_per_trial_mean": _ratio(po["fixed_s"]["mean"], pn["fixed_s"]["mean"]),
            "fixed_per_trial_median": _ratio(po["fixed_s"]["median"], pn["fixed_s"]["median"]),
            "fixed_per_trial_from_wall": _ratio(
                old["fixed_per_trial_from_wall_s"], new["fixed_per_trial_from_wall_s"]
            ),
            "slot_per_trial_mean": _ratio(po["slot_s"]["mean"], pn["slot_s"]["mean"]),
            "mlflow_calls_per_trial": _ratio(
                po["mlflow_calls"]["mean"], pn["mlflow_calls"]["mean"]
            ),
            "study_wall": _ratio(old["wall_s"], new["wall_s"]),
            "compute_per_trial_mean": _ratio(po["compute_s"]["mean"], pn["compute_s"]["mean"]),
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--out", default=None)
    p.add_argument("--overhead", action="store_true", help="old vs new fixed cost per trial")
    p.add_argument("--trials", type=int, default=60, help="--overhead: trials per study")
    p.add_argument("--concurrency", type=int, default=2, help="--overhead: trials at a time")
    p.add_argument("--old", default=OLD_REF, help="--overhead: the commit of the old code")
    p.add_argument("--order", default="old,new", help="--overhead: which study runs first")
    p.add_argument("--keep", action="store_true", help="--overhead: keep the work folder")
    args = p.parse_args()
    if args.overhead:
        result = overhead(args)
        host = result["machine"].get("hostname", "host")
        out = Path(args.out or REPO / "bench" / "results" / f"service-overhead-{host}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result["ratios_old_over_new"], indent=2))
        print(f"wrote {out}")
        return 0
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
