"""The study service end to end on a real local Ray, SQLite MLflow and Optuna storage.

Marked `ray` and `slow`: each study takes 10–40 s on 2 cores. The resume test runs the CLI in a
subprocess and SIGKILLs it, then cleans up the Ray processes it orphaned (docs/stack.md §7).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from cluster_helpers import kill_all
from mlflow.tracking import MlflowClient

from study.service.driver import objective_values
from study.spec import load_study

SPECS = Path(__file__).resolve().parents[1] / "specs"
REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_ray():
    import ray

    # one fake GPU, so resource packing of fractional-GPU trials is testable without one
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("STUDY_OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path / "home"


def write_spec(tmp_path: Path, name: str, **changes) -> Path:
    """A copy of specs/tiny.yaml with some top-level keys replaced."""
    spec = yaml.safe_load((SPECS / "tiny.yaml").read_text())
    spec["base"] = str(REPO / "search_spaces" / "smoke.yaml")
    spec["name"] = name
    spec.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def runs(home: Path, name: str):
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_objective_values_penalise_constraints_and_divergence():
    obj = (("final.q_func", "maximize"),)
    assert objective_values({"final.q_func": 0.3}, obj, ()) == [0.3]
    ok = objective_values(
        {"final.q_func": 0.3, "final.success_rate": 1.0}, obj, ("final.success_rate >= 0.9",)
    )
    bad = objective_values(
        {"final.q_func": 0.4, "final.success_rate": 0.5}, obj, ("final.success_rate >= 0.9",)
    )
    assert ok == [0.3] and bad[0] < -999  # infeasible ranks below every feasible trial
    assert objective_values({"final.q_func": 0.4}, obj, (), diverged=True) == [-1e6]
    assert objective_values({}, (("lag", "minimize"),), ()) == [1e6]  # missing: worst, finite


def test_three_trial_study_tracks_everything(local_ray, home, tmp_path):
    from study.service.driver import run_study

    outcome = run_study(load_study(SPECS / "tiny.yaml"))
    assert outcome.n_trials == 3 and outcome.n_errors == 0
    client, all_runs = runs(home, "tiny")
    roles = [r.data.tags["study.role"] for r in all_runs]
    assert sorted(roles) == ["study", "trial", "trial", "trial"]
    parent = next(r for r in all_runs if r.data.tags["study.role"] == "study")
    assert json.loads(parent.data.tags["study.swept"]) == ["mi.weight"]
    assert "spec.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    weights = set()
    for r in (r for r in all_runs if r.data.tags["study.role"] == "trial"):
        assert r.info.status == "FINISHED" and r.data.tags["study.status"] == "finished"
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        weights.add(float(r.data.params["mi.weight"]))
        assert r.data.params["train.epochs"] == "6" and r.data.params["seeds"] == "2"
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "q_func")]
        assert sorted(steps) == [0, 2, 4, 6]  # one point per evaluation, no duplicates
        for key in ("final.q_func", "final.success_rate", "n_seeds"):
            assert key in r.data.metrics
        arts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"curves.parquet", "seeds.parquet", "config.yaml", "figures"} <= arts
        local = client.download_artifacts(r.info.run_id, "curves.parquet", str(tmp_path))
        assert len(pd.read_parquet(local)) == 2 * 4  # 2 seeds x 4 evaluations
    assert weights == {0.0, 0.1, 0.3}
    ost = optuna.load_study(study_name="tiny", storage=f"sqlite:///{home / 'optuna.db'}")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in ost.trials) == 3


def test_diverging_trial_is_marked_and_the_study_goes_on(local_ray, home, tmp_path):
    from study.service.driver import run_study

    spec = write_spec(
        tmp_path,
        "diverge",
        trial={
            "optim": {"kind": "adam", "clip_norm": None},
            "train": {"epochs": 4, "eval_every": 1, "checkpoint_every": 2, "snapshot_every": 0},
        },
        search={"optim.lr": {"values": [0.002, 1.0e37]}},
    )
    outcome = run_study(load_study(spec))
    assert outcome.n_errors == 0
    _, all_runs = runs(home, "diverge")
    trials = {
        float(r.data.params["optim.lr"]): r
        for r in all_runs
        if r.data.tags["study.role"] == "trial"
    }
    assert trials[0.002].data.tags["study.status"] == "finished"
    bad = trials[1e37]
    assert bad.data.tags["study.status"] == "diverged" and bad.info.status == "FINISHED"
    assert "not finite at epoch 2" in bad.data.tags["study.message"]
    study_run = next(r for r in all_runs if r.data.tags["study.role"] == "study")
    assert study_run.data.tags["study.status"] == "finished"
    ost = optuna.load_study(study_name="diverge", storage=f"sqlite:///{home / 'optuna.db'}")
    values = sorted(t.value for t in ost.trials)
    assert len(values) == 2 and values[0] == -1e6  # diverged: worst value, still COMPLETE


def test_fractional_gpus_pack_four_trials_at_once(local_ray, home, tmp_path):
    from study.service.driver import run_study

    spec = write_spec(
        tmp_path,
        "packing",
        concurrency=4,
        resources={"cpu": 0.5, "gpu": 0.25},
        trial={
            "train": {"epochs": 30, "eval_every": 10, "checkpoint_every": 10, "snapshot_every": 0}
        },
        search={"mi.weight": {"values": [0.0, 0.1, 0.2, 0.3]}},
    )
    run_study(load_study(spec))
    _, all_runs = runs(home, "packing")
    spans = [
        (r.info.start_time, r.info.end_time)
        for r in all_runs
        if r.data.tags["study.role"] == "trial"
    ]
    assert len(spans) == 4
    # all four runs were open at one moment: the 1 declared GPU held 4 trials of 0.25
    assert max(s for s, _ in spans) < min(e for _, e in spans)


def _ray_pids(marker: str) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if marker in line]


def test_killed_study_resumes_without_duplicates(tmp_path):
    home = tmp_path / "home"
    ray_tmp = tempfile.mkdtemp(prefix="mrs-", dir="/tmp")  # short: Ray's socket paths
    spec = write_spec(
        tmp_path,
        "resume",
        concurrency=1,
        trial={
            "train": {"epochs": 40, "eval_every": 4, "checkpoint_every": 4, "snapshot_every": 0}
        },
        search={"mi.weight": {"values": [0.0, 0.1, 0.3]}},
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(
        STUDY_HOME=str(home), RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1"
    )
    cmd = [sys.executable, "-m", "study", "run", str(spec), "-q", "--num-cpus", "1"]
    try:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 180
        reported = False
        while time.time() < deadline and proc.poll() is None and not reported:
            time.sleep(1)
            if (home / "ray" / "resume").exists():  # the driver created the store by then
                try:
                    _, rs = runs(home, "resume")
                    reported = any(
                        r.data.metrics.get("epoch") is not None or "q_func" in r.data.metrics
                        for r in rs
                        if r.data.tags.get("study.role") == "trial"
                    )
                except Exception:
                    pass
        assert reported, "no trial reported before the deadline"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver dies without any cleanup
        proc.wait(timeout=30)
        kill_all(_ray_pids(ray_tmp))  # Ray's own processes outlive a SIGKILLed driver
        time.sleep(1)
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "(resumed)" in again.stdout
    finally:
        kill_all(_ray_pids(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
    _, all_runs = runs(home, "resume")
    trial_runs = [r for r in all_runs if r.data.tags["study.role"] == "trial"]
    ids = [r.data.tags["study.trial_id"] for r in trial_runs]
    assert len(ids) == len(set(ids)) == 3  # one MLflow run per trial, never duplicated
    assert all(r.data.tags["study.status"] == "finished" for r in trial_runs)
    assert sum(r.data.tags["study.role"] == "study" for r in all_runs) == 1
    ost = optuna.load_study(study_name="resume", storage=f"sqlite:///{home / 'optuna.db'}")
    complete = [t for t in ost.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    for r in trial_runs:  # the resumed trial's curve has every evaluation exactly once
        steps = [
            m.step
            for m in MlflowClient(f"sqlite:///{home / 'mlflow.db'}").get_metric_history(
                r.info.run_id, "q_func"
            )
        ]
        assert sorted(steps) == list(range(0, 41, 4))


def test_embedded_ray_runs_trial_workers_at_the_drivers_priority(tmp_path):
    # Ray's default worker niceness is 15; an embedded study sets RAY_worker_niceness=0 so that
    # other jobs on the machine cannot take the trials' CPU. A fresh process: Ray not yet started.
    code = (
        "import os, ray\n"
        "from study.service.driver import _init_ray\n"
        "_init_ray(None, 1, 0, 0)\n"
        "print('NICE', ray.get(ray.remote(lambda: os.nice(0)).remote()), os.nice(0))\n"
        "ray.shutdown()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_worker_niceness", None)
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        timeout=180,
        capture_output=True,
        text=True,
    )
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("NICE"))
    worker, driver = map(int, line.split()[1:])
    assert worker == driver
