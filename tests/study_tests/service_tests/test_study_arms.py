"""Study arms in the service: the arm is one more grid dimension of the Optuna search, each trial
gets its arm's config and carries it as param and tag, and (slow, real Ray) the arms of a cell
are the same network up to their intervention, a forked arm included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.contract.params import PARAM_ARM
from study.contract.tags import TAG_ARM, TAG_ARMS, TAG_SWEPT
from study.service.driver import check_search
from study.service.worker import StudyContext, _trial_config
from study.spec import load_study

REPO = Path(__file__).resolve().parents[3]
SMOKE = REPO / "search_spaces" / "smoke.yaml"
ARMS = {"control": {}, "off_at_2": {"intervention.at": 2, "intervention.mi_weight": 0.0}}


def write(tmp_path: Path, arms=ARMS, **spec) -> Path:
    tree = {
        "name": "arms",
        "base": str(SMOKE),
        "trial": {"train": {"epochs": 6, "snapshot_every": 0}},
        "search": {"mi.weight": {"values": [0.1, 0.3]}},
        "sampler": {"name": "grid", "seed": 0},
        "arms": arms,
        "control_arm": "control",
        **spec,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_the_arm_is_a_grid_dimension_of_the_optuna_search(tmp_path):
    study = load_study(write(tmp_path))
    space, sampler = check_search(study)
    assert list(space[PARAM_ARM].choices) == sorted(ARMS)  # the spec file's order (YAML sorted)
    grid = sampler._search_space  # the grid Optuna walks: arms x searched values
    assert {k: sorted(v) for k, v in grid.items()} == {
        "arm": sorted(ARMS),
        "mi.weight": [0.1, 0.3],
    }


def test_a_trial_gets_its_arms_config(tmp_path):
    study = load_study(write(tmp_path))
    ctx = StudyContext(
        name="arms",
        base=study.base,
        spec_path=str(study.path),
        objectives=(("final.q_func", "maximize"),),
        constraints=(),
        tracking_uri="",
        experiment_id="",
        parent_run_id="",
        home=str(tmp_path),
        cpus_per_trial=1,
        task="working_memory",
        arms=study.spec.arms,
    )
    cfg = _trial_config({"arm": "off_at_2", "mi.weight": 0.3}, ctx)
    assert (cfg.mi.weight, cfg.intervention.at, cfg.intervention.mi_weight) == (0.3, 2, 0.0)
    assert not _trial_config({"arm": "control", "mi.weight": 0.3}, ctx).intervention.active


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_with_arms_pairs_them_by_seed(tmp_path, monkeypatch):
    import ray

    from study.service.driver import run_study
    from study.training import train

    home = tmp_path / "home"
    monkeypatch.setenv("STUDY_HOME", str(home))
    for var in ("MLFLOW_TRACKING_URI", "STUDY_OPTUNA_STORAGE", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    parent_cfg = load_study(write(tmp_path, search={"mi.weight": {"values": [0.1]}}))
    parent = parent_cfg.trial_config({"arm": "control", "mi.weight": 0.1})
    parent = parent.model_copy(
        update={"train": parent.train.model_copy(update={"keep_checkpoints": (2,)})}
    )
    train(parent, checkpoint_dir=tmp_path / "parent")  # the checkpoint a forked arm starts from
    arms = {**ARMS, "forked": {"train.init_from": "parent/checkpoint_2.pt", **ARMS["off_at_2"]}}
    spec = write(tmp_path, arms=arms, search={"mi.weight": {"values": [0.1]}}, concurrency=2)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_study(load_study(spec))
    finally:
        ray.shutdown()
    assert outcome.n_trials == 3 and outcome.n_errors == 0
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("arms")
    found = client.search_runs([exp.experiment_id], max_results=100)
    study_run = next(r for r in found if r.data.tags["study.role"] == "study")
    assert json.loads(study_run.data.tags[TAG_SWEPT]) == ["mi.weight", "arm"]
    assert json.loads(study_run.data.tags[TAG_ARMS])["control"] == "control"
    curves = {}
    for r in (r for r in found if r.data.tags["study.role"] == "trial"):
        arm = r.data.tags[TAG_ARM]
        assert r.data.params[PARAM_ARM] == arm and r.data.tags["study.status"] == "finished"
        steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "q_func"))
        assert steps == [0, 2, 4, 6]  # a fork's run holds its inherited evaluations too
        local = client.download_artifacts(r.info.run_id, "curves.parquet", str(tmp_path / arm))
        curves[arm] = pd.read_parquet(local).sort_values(["epoch", "seed"])
    assert set(curves) == set(arms)
    ctrl = curves["control"]
    for arm in ("off_at_2", "forked"):
        c = curves[arm]
        early, late = c["epoch"] <= 2, c["epoch"] > 2
        for col in ("task_loss", "q_func", "q_struct_z"):  # the same networks up to the switch
            assert np.array_equal(c.loc[early, col].to_numpy(), ctrl.loc[early, col].to_numpy())
        assert not np.array_equal(c.loc[late, "task_loss"], ctrl.loc[late, "task_loss"].to_numpy())
    # the fork and the unforked arm are one arm, bit for bit, in two processes
    cols = [c for c in curves["forked"].columns if c != "elapsed"]
    pd.testing.assert_frame_equal(
        curves["forked"][cols].reset_index(drop=True),
        curves["off_at_2"][cols].reset_index(drop=True),
    )
