"""The run-data contract (docs/run-data.md): what `study` writes is what `analysis` reads.

Names first (every tag, param, metric, artifact and column analysis declares in
analysis.runs.READ_NAMES is produced by study), then a real round trip: `python -m study train`
writes a one-trial study into a SQLite MLflow store and `analysis.load_study` reads it back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from study.contract.outcomes import TASK_METRIC
from analysis.runs import READ_NAMES, load_study
from study.service import tracking
from study.spec import TrialConfig, load_trial_config
from study.service.summary import summarize
from study.training import EvalRecord, metric_names

REPO = Path(__file__).resolve().parents[1]


def written_tags() -> set[str]:
    return {getattr(tracking, n) for n in dir(tracking) if n.startswith("TAG_")}


def test_contract_tags_read_by_analysis_are_written_by_study():
    assert set(READ_NAMES["tags"]) <= written_tags()


def test_contract_params_read_by_analysis_exist_in_the_trial_config():
    assert set(READ_NAMES["params"]) <= set(TrialConfig().flat())


def _fake_history(cfg: TrialConfig) -> list[EvalRecord]:
    names = metric_names(cfg)
    return [EvalRecord(e, {k: (0.1 * e, 0.2) for k in names}, 0.0) for e in range(0, 50, 10)]


@pytest.mark.parametrize("task", ["working_memory", "chaos_separation"])
def test_contract_metrics_and_columns_read_by_analysis_are_written(task):
    cfg = load_trial_config(overrides={"task.name": task, "train.eval_batch": 20})
    s = summarize(cfg, _fake_history(cfg), [0, 1])
    task_metric = TASK_METRIC[task]
    (other,) = set(TASK_METRIC.values()) - {task_metric}
    curve = [m for m in READ_NAMES["metrics"] if not m.startswith(("final.", "t_", "lag", "n_"))]
    assert set(curve) - {other} <= set(metric_names(cfg))
    summary = [m for m in READ_NAMES["metrics"] if m not in curve]
    assert set(summary) - {f"final.{other}"} <= set(s.metrics) | {"t_func", "t_struct", "lag"}
    assert set(READ_NAMES["curve_columns"]) - {other} <= set(s.curves.columns)
    assert set(READ_NAMES["seed_columns"]) - {f"final.{other}"} <= set(s.seeds.columns)
    assert f"final.{task_metric}" in s.seeds.columns


def test_contract_new_curve_metrics_are_written_once_train_measures_them():
    # The issue-9 curve metrics (q_func_z, nmi_func, ...) come from the training side; analysis
    # reads them where present. Once train.py measures the z-scores, every name must be written.
    cfg = load_trial_config(overrides={"train.eval_batch": 20})
    names = set(metric_names(cfg))
    if "q_func_z" not in names:
        pytest.skip("study/train.py does not measure the null-referenced metrics yet")
    new = set(READ_NAMES["new_metrics"])
    gru_only = {"q_update_z", "q_reset_z"}
    assert new - gru_only <= names


def test_contract_seeds_and_summary_carry_the_onsets():
    cfg = load_trial_config(overrides={"train.eval_batch": 20})
    hist = _fake_history(cfg)
    for rec in hist:  # z-scores >= 3 from epoch 0 (func) and 20 (struct), seed 1 flat at 0
        rec.metrics["q_func_z"] = (3.0 + 0.1 * rec.epoch, 0.0)
        rec.metrics["q_struct_z"] = (0.2 * rec.epoch, 0.0)
    s = summarize(cfg, hist, [0, 1])
    assert s.seeds["first"].tolist() == ["function", "neither"]
    assert s.seeds.loc[0, "t_func"] == 0 and s.seeds.loc[0, "t_struct"] == 20
    for key in ("n_func_first", "n_struct_first", "n_tie", "n_neither", "t_func", "lag"):
        assert key in s.metrics and key in READ_NAMES["metrics"]
    assert {"emergence.z", "emergence.run"} <= set(READ_NAMES["params"])


def test_contract_round_trip_through_mlflow(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    env["STUDY_HOME"] = str(home)
    out = subprocess.run(
        [sys.executable, "-m", "study", "train", "search_spaces/smoke.yaml", "-q",
         "--name", "contract", "--out", str(tmp_path / "run")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    data = load_study("contract", tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    assert len(data.trials) == 1 and data.trials["status"].iloc[0] == "finished"
    assert len(data.seeds) == 2  # smoke: 2 seeds
    assert sorted(data.curves["epoch"].unique()) == [0, 2, 4]
    assert set(data.curves["seed"]) == {0, 1}
    assert np.isfinite(data.seeds["final.q_func"]).all()
    assert float(data.trials["mi.weight"].iloc[0]) == 0.1
    # the seeds.parquet study wrote is current, so analysis reads the owner's outcomes as written
    assert {"first", "t_func_censor", "t_struct_censor", "onsets_measured"} <= set(
        data.seeds.columns)


def test_emergence_config_defaults_are_the_owners_and_bad_values_name_the_key():
    from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z
    from study.spec import ConfigError

    cfg = TrialConfig()
    assert (cfg.emergence.z, cfg.emergence.run) == (DEFAULT_Z, DEFAULT_RUN)
    assert load_trial_config(overrides={"emergence.z": 4, "emergence.run": 5}).emergence.run == 5
    with pytest.raises(ConfigError, match=r"key 'emergence.run': expected greater than or equal"):
        load_trial_config(overrides={"emergence.run": 0})
