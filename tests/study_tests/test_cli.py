"""The `python -m study` entry point, run for real through subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).parent / "specs"


def study_cli(*args: str, home: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(STUDY_HOME=str(home), RAY_AUTH_MODE="disabled")
    return subprocess.run(
        [sys.executable, "-m", "study", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


@pytest.mark.parametrize("spec", ["demo.yaml", "phase-wm.yaml", "pareto-wm.yaml"])
def test_cli_validate_committed_specs(spec, tmp_path):
    out = study_cli("validate", f"search_spaces/{spec}", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert ": ok — study" in out.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: x\nsearch: {mi.wieght: {values: [1]}}",
            r"bad\.yaml: unknown key 'search\.mi\.wieght' \(did you mean 'mi\.weight'\?\)",
        ),
        (
            "name: x\nsampler: {nme: grid}",
            r"unknown key 'sampler\.nme' \(did you mean 'sampler\.name'\?\)",
        ),
        (
            "name: x\ntrial: {network: {hiden: 3}}",
            r"unknown key 'trial\.network\.hiden' \(did you mean 'trial\.network\.hidden'\?\)",
        ),
        (
            "name: x\nsearch: {partition.groups: {values: [2, 50]}}",
            r"partition\.groups must be at most network\.hidden, but got network\.hidden=40",
        ),
        ("name: x\nobjectives: [{metric: final.qfunc}]", r"did you mean 'final\.q_func'"),
        (
            "name: x\nsearch: {mi.weight: {type: float, low: 0, high: 1, log: true}}",
            r"key 'search\.mi\.weight': a log range needs low > 0",
        ),
        ("name: x\nbase: nowhere.yaml", r"key 'base': no such trial config file 'nowhere\.yaml'"),
    ],
)
def test_cli_bad_spec_exits_2_with_one_line_and_starts_nothing(text, expected, tmp_path):
    import re

    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    home = tmp_path / "home"
    out = study_cli("run", str(spec), home=home)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert re.search(expected, out.stderr), out.stderr
    assert not home.exists()  # nothing started, nothing written


def test_cli_train_writes_outputs_and_tracks(tmp_path):
    home = tmp_path / "home"
    out = study_cli(
        "train",
        "search_spaces/smoke.yaml",
        "--set",
        "mi.weight=0.2",
        "--set",
        "train.epochs=4",
        "--out",
        str(tmp_path / "run"),
        home=home,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "finished after 4 epochs" in out.stderr
    run = tmp_path / "run"
    for name in (
        "curves.parquet",
        "seeds.parquet",
        "config.yaml",
        "figures/q_curves.png",
        "weights/epoch_00004.npz",
        "checkpoint/checkpoint.pt",
    ):
        assert (run / name).is_file(), name
    assert set(pd.read_parquet(run / "curves.parquet")["epoch"]) == {0, 2, 4}
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    trial = client.search_runs([exp.experiment_id], "tags.`study.role` = 'trial'")[0]
    assert trial.data.params["mi.weight"] == "0.2"
    assert trial.data.tags["study.status"] == "finished"
    # --resume continues from the checkpoint instead of starting over
    more = study_cli(
        "train",
        "search_spaces/smoke.yaml",
        "--set",
        "mi.weight=0.2",
        "--set",
        "train.epochs=6",
        "--out",
        str(run),
        "--resume",
        "--no-track",
        home=home,
    )
    assert more.returncode == 0, more.stderr[-2000:]
    assert "resuming from" in more.stderr
    assert set(pd.read_parquet(run / "curves.parquet")["epoch"]) == {0, 2, 4, 6}


def test_cli_train_bad_override_exits_2(tmp_path):
    out = study_cli("train", "search_spaces/smoke.yaml", "--set", "network.hiden=3", home=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown key 'network.hiden' (did you mean 'network.hidden'?)" in out.stderr


@pytest.mark.ray
@pytest.mark.slow
def test_cli_run_smoke_test(tmp_path):
    out = study_cli(
        "run", "search_spaces/demo.yaml", "--smoke-test", "--num-cpus", "2", home=tmp_path
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "study demo-smoke: 2 trials" in out.stdout
    assert "python -m analysis report demo-smoke" in out.stdout


# ----------------------------------------------------------------------------------------------
# The trial runner's guarantee: every exit path of `study train` closes the MLflow runs with the
# right status and each reporter exactly once (in-process, real SQLite MLflow, smoke budgets)


@pytest.fixture
def counted_closes(monkeypatch):
    """How many times the progress bar of `study train` was closed."""
    from study.service import runner

    closes = []
    real = runner.ProgressBar.close

    def close(self):
        closes.append(self)
        real(self)

    monkeypatch.setattr(runner.ProgressBar, "close", close)
    return closes


def _train_in_process(tmp_path, monkeypatch, *sets: str) -> tuple[int, MlflowClient]:
    from study.__main__ import main

    home = tmp_path / "home"
    monkeypatch.setenv("STUDY_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = [
        "train",
        "search_spaces/smoke.yaml",
        "--out",
        str(tmp_path / "run"),
        "-q",
        "--set",
        "train.threads=1",
    ]
    for s in sets:
        argv += ["--set", s]
    monkeypatch.chdir(REPO)
    rc = main(argv)
    return rc, MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def _runs(client: MlflowClient):
    exp = client.get_experiment_by_name("smoke")
    (study,) = client.search_runs([exp.experiment_id], "tags.`study.role` = 'study'")
    (trial,) = client.search_runs([exp.experiment_id], "tags.`study.role` = 'trial'")
    return study, trial


def test_train_diverged_trial_ends_diverged_closed_once(tmp_path, monkeypatch, counted_closes):
    rc, client = _train_in_process(
        tmp_path,
        monkeypatch,
        "optim.kind=adam",
        "optim.clip_norm=null",
        "optim.lr=1e37",
        "train.eval_every=1",
    )
    assert rc == 0  # a diverged trial is a result, not an error
    study, trial = _runs(client)
    assert trial.data.tags["study.status"] == "diverged" and trial.info.status == "FINISHED"
    assert "not finite" in trial.data.tags["study.message"]
    assert trial.data.tags["study.trial_id"] == "train-run"  # train-<output folder name>
    assert study.data.tags["study.status"] == "diverged" and study.info.status == "FINISHED"
    assert len(counted_closes) == 1
    assert (tmp_path / "run" / "curves.parquet").is_file()


@pytest.mark.parametrize(
    ("raised", "rc", "status", "mlflow_status"),
    [(KeyboardInterrupt, 130, "stopped", "KILLED"), (RuntimeError, 1, "failed", "FAILED")],
)
def test_train_interrupted_or_crashed_closes_runs_and_reporter_once(
    raised, rc, status, mlflow_status, tmp_path, monkeypatch, counted_closes
):
    from study.service import runner

    def on_epoch(self, epoch):  # after the epoch-0 evaluation, during epoch 1
        raise raised("from the test")

    monkeypatch.setattr(runner.ProgressBar, "on_epoch", on_epoch)
    got, client = _train_in_process(tmp_path, monkeypatch)
    assert got == rc
    study, trial = _runs(client)
    assert trial.data.tags["study.status"] == status and trial.info.status == mlflow_status
    assert trial.data.tags["study.message"]
    assert study.data.tags["study.status"] == status and study.info.status == mlflow_status
    assert len(counted_closes) == 1
    # what existed is kept: the epoch-0 evaluation, as curves and in MLflow
    assert set(pd.read_parquet(tmp_path / "run" / "curves.parquet")["epoch"]) == {0}
    assert [m.step for m in client.get_metric_history(trial.info.run_id, "q_func")] == [0]
