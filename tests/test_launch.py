"""The launch path: `ray start --head` (cluster/local-up.sh) + `ray job submit` of a study,
with trial runs logged to a real `mlflow server` on loopback (README.md, "Launch a study")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.mark.cluster
@pytest.mark.slow
def test_ray_job_submit_runs_a_study_tracked_by_the_mlflow_server(local_cluster):
    up, home, ports, env = (local_cluster[k] for k in ("up", "home", "ports", "env"))
    assert up.returncode == 0, up.stderr
    address = f"http://127.0.0.1:{ports['dashboard']}"
    job = subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            address,
            "--runtime-env",
            "cluster/runtime_env.yaml",
            "--working-dir",
            ".",
            "--",
            "python",
            "-m",
            "study",
            "run",
            "tests/study_tests/specs/tiny.yaml",
            "-q",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]
    assert "study tiny: 3 trials" in job.stdout
    assert "succeeded" in job.stdout.lower()

    client = MlflowClient(f"http://127.0.0.1:{ports['mlflow']}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags["study.role"] == "trial"]
    assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)
    for r in trials:  # artifacts went through the server into STUDY_HOME, not a temp folder
        assert r.info.artifact_uri.startswith("mlflow-artifacts:")
        assert "curves.parquet" in {a.path for a in client.list_artifacts(r.info.run_id)}
    assert list((home / "mlartifacts").rglob("curves.parquet"))
    assert (home / "optuna.db").is_file() and (home / "ray" / "tiny").is_dir()
