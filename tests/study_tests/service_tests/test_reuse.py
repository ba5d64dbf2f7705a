"""Trial processes reused from trial to trial (Tune's `reuse_actors`), on a real local Ray,
SQLite MLflow and Optuna storage: the trials of a study share one process, yet each starts from
its own config and seeds, has its own MLflow run, and a trial the scheduler stops mid-way is
closed before the next one starts in its process.

Marked `ray` and `slow` (about a minute on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.spec import load_study
from study.training import train

REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("STUDY_OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path / "home"


# One trial at a time, so every trial after the first can take over the process of the one
# before. ASHA (grace 1, halving) on an objective each trial knows from its first evaluation:
# n_neither = the trial's seeds (no onset can be reached at z = 1000). A trial below the
# median of the earlier trials at a rung is stopped: with the grid order of seed 1
# (seeds 2, 1, 1, 2) the two one-seed trials are stopped at their first evaluation and the
# next trial reuses the process of each.
SPEC = {
    "name": "reuse",
    "base": str(REPO / "search_spaces" / "smoke.yaml"),
    "trial": {
        "emergence": {"z": 1000},
        "train": {
            "epochs": 4,
            "eval_every": 2,
            "checkpoint_every": 2,
            "snapshot_every": 0,
            "threads": 1,
        },
    },
    "search": {"seeds": {"values": [1, 2]}, "mi.weight": {"values": [0.0, 0.1]}},
    "sampler": {"name": "grid", "seed": 1},
    "objectives": [{"metric": "n_neither", "direction": "maximize"}],
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    "concurrency": 1,
    "resources": {"cpu": 1},
}


def _pids(experiment: Path) -> dict[str, set[int]]:
    """trial id -> the process ids its Tune results came from (Tune's own `pid` field)."""
    out: dict[str, set[int]] = {}
    for f in experiment.glob("*/result.json"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            out.setdefault(r["trial_id"], set()).add(r["pid"])
    return out


def test_reused_trial_processes_keep_trials_apart(local_ray, home, tmp_path):
    from study.service.driver import run_study

    path = tmp_path / "reuse.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    study = load_study(path)
    outcome = run_study(study)
    assert outcome.n_trials == 4 and outcome.n_errors == 0

    pids = _pids(home / "ray" / "reuse")
    assert len(pids) == 4 and all(len(p) == 1 for p in pids.values())
    assert len(set().union(*pids.values())) == 1, f"trials ran in several processes: {pids}"

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("reuse")
    runs = client.search_runs([exp.experiment_id], "tags.`study.role` = 'trial'")
    assert sorted(r.data.tags["study.trial_id"] for r in runs) == sorted(pids)  # one run each
    by_status = {}
    for r in runs:
        params = {"seeds": int(r.data.params["seeds"]), "mi.weight": r.data.params["mi.weight"]}
        by_status.setdefault(r.data.tags["study.status"], []).append(params["seeds"])
        # what the trial logged is what its own config gives in a fresh process (here): no
        # state (seeds, config, streams, weights) carried over from the trial before it
        ref = train(
            study.trial_config({"seeds": params["seeds"], "mi.weight": float(params["mi.weight"])})
        )
        expected = {rec.epoch: rec.mean("task_loss") for rec in ref.history}
        logged = client.get_metric_history(r.info.run_id, "task_loss")
        steps = sorted(m.step for m in logged)
        if r.data.tags["study.status"] == "stopped":
            # stopped at its first evaluation, and closed (outputs, summary, KILLED) by its
            # own thread before the next trial took the process
            assert steps == [0] and r.info.status == "KILLED"
            assert r.data.tags["study.message"].startswith("stopped: ended from outside")
            later = [o.info.start_time for o in runs if o.info.start_time > r.info.start_time]
            assert r.info.end_time <= min(later)  # closed before the next trial began
            assert "final.task_loss" in r.data.metrics
            local = client.download_artifacts(r.info.run_id, "curves.parquet", str(tmp_path))
            assert len(pd.read_parquet(local)) == params["seeds"]
        else:
            assert steps == [0, 2, 4] and r.info.status == "FINISHED"
        assert {m.step: m.value for m in logged} == {e: expected[e] for e in steps}
        assert r.data.metrics["n_seeds"] == params["seeds"]
    assert sorted(by_status.get("stopped", [])) == [1, 1], by_status
    assert sorted(by_status.get("finished", [])) == [2, 2], by_status
