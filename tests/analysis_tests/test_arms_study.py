"""The arms analysis and the report's Arms section on a real tiny study with arms: each arm a
tiny working-memory trial trained by the real trial runner (``study.service.runner.run_trial``)
into a real MLflow SQLite store, tagged as the Tune driver tags a study with arms (the driver
itself: tests/study_tests/service_tests/test_study_arms.py). About 30 s on a shared core (the
four trials and the report), hence the slow lane; test_arms.py covers the same on synthetic
data in the fast lane."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from study.contract.params import PARAM_ARM
from study.contract.tags import TAG_ARM, TAG_ARMS, TAG_SWEPT, TAG_TASK

pytestmark = pytest.mark.slow

NAME = "arms-tiny"
TRIAL = {
    "task.batch": 4,
    "task.wm.transient": 20,
    "task.wm.segment": 40,
    "network.hidden": 12,
    "critic.width": 16,
    "critic.steps": 2,
    "critic.pretrain_steps": 2,
    "mi.pairs": 0,
    "mi.weight": 0.3,
    "mi.heldout.steps": 5,
    "mi.heldout.batch": 32,
    "mi.heldout.width": 8,
    "train.epochs": 8,
    "train.eval_every": 2,
    "train.eval_batch": 4,
    "train.checkpoint_every": 8,
    "train.snapshot_every": 0,
    "train.threads": 1,
    "train.null_partitions": 20,
    "train.communities": False,
    "train.heldout_mi_every": 100,
    "train.lesion_every": 1,
    "train.device": "cpu",
    "seeds": 3,
}
ARMS = {
    "control": {},
    "off_at_2": {"intervention.at": 2, "intervention.mi_weight": 0.0},
    "freeze_rec": {"intervention.at": 0, "intervention.freeze": ["w_rec"]},
    "lambda0": {"mi.weight": 0.0},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from analysis.runs import load_study
    from study.service.runner import TrialRun, run_trial
    from study.service.tracking import StudyTracker, TrialTracker
    from study.spec import load_trial_config

    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root = tmp_path_factory.mktemp("arms")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = StudyTracker(uri, NAME, artifact_root=root / "artifacts")
    parent = tracker.start(
        tags={
            TAG_SWEPT: json.dumps([PARAM_ARM]),
            TAG_TASK: "working_memory",
            TAG_ARMS: json.dumps({"control": "control", "arms": ARMS}),
        },
        spec_text=f"name: {NAME}\n",
    )
    for i, (arm, over) in enumerate(ARMS.items()):
        cfg = load_trial_config(overrides={**TRIAL, **over})
        trial_id = f"trial_{i:05d}"
        run = TrialRun(
            cfg,
            root / "trials" / trial_id,
            TrialTracker(
                uri,
                tracker.experiment_id,
                parent,
                trial_id,
                study_name=NAME,
                task="working_memory",
                params={**cfg.flat(), PARAM_ARM: arm},
                tags={TAG_ARM: arm},
            ),
        )
        run_trial(run, checkpoint_dir=None)
    tracker.finish("finished")
    return load_study(NAME, uri), root


def test_arms_of_a_real_study_are_paired_by_seed(study):
    from analysis.arms import analyse_arms

    data, _ = study
    got = analyse_arms(data)
    assert got is not None and got.design.control == "control"
    assert got.design.treated == ["off_at_2", "freeze_rec", "lambda0"] and got.by == []
    comp = got.comparisons
    assert list(dict.fromkeys(comp["arm"])) == got.design.treated
    # every pair, except where a quantity is undefined in every seed (ΔW z of a W_rec that
    # never moved: 0 / 0)
    measured = comp["verdict"] != "not measured"
    assert (comp.loc[measured, "n"] == TRIAL["seeds"]).all()
    assert list(comp.loc[~measured, "column"]) == ["final.dw_block_z"]
    assert set(comp.loc[~measured, "arm"]) == {"freeze_rec"}
    # the switch epochs the curves' `intervened` gives: 2 and 0, every seed; none for λ = 0
    sw = got.switches.set_index("arm")
    assert sw.loc["off_at_2", "switch_median"] == 2 and sw.loc["off_at_2", "n_switched"] == 3
    assert sw.loc["freeze_rec", "switch_median"] == 0
    assert sw.loc["lambda0", "n_switched"] == 0
    # the final task score difference is the arm's final minus its own seed's control final
    s = data.seeds.set_index([PARAM_ARM, "seed_value"])["final.accuracy"]
    d = (s.loc["off_at_2"] - s.loc["control"]).to_numpy()
    row = comp[(comp["arm"] == "off_at_2") & (comp["column"] == "final.accuracy")].iloc[0]
    assert row["effect"] == pytest.approx(float(np.median(d)))


def test_after_the_switch_is_measured_from_the_shared_past(study):
    """off_at_2 is the control's network bit for bit up to epoch 2, so its change since the
    switch is its final minus the *control's* value at epoch 2, seed by seed."""
    from analysis.arms import analyse_arms

    data, _ = study
    v = analyse_arms(data).verdicts
    q = v[(v["arm"] == "off_at_2") & (v["metric"] == "q_struct_z")].iloc[0]
    c = data.curves.merge(data.seeds[["trial_id", "seed", PARAM_ARM]], on=["trial_id", "seed"])
    at2 = c[(c[PARAM_ARM] == "control") & (c["epoch"] == 2)].set_index("seed_value")
    final = data.seeds[data.seeds[PARAM_ARM] == "off_at_2"].set_index("seed_value")
    change = final["final.q_struct_z"] - at2["q_struct_z"]
    assert q["n"] == 3 and q["median"] == pytest.approx(float(change.median()))
    frozen = v[v["arm"] == "freeze_rec"]
    assert list(frozen["question"]) == ["function emerges with W_rec frozen"]
    assert set(v.loc[v["arm"] == "lambda0", "question"]) == {
        "function becomes modular without the penalty",
        "structure (Q(|W|)) becomes modular without the penalty",
    }


def test_lesions_of_a_real_study(study):
    from analysis.arms import analyse_arms

    data, _ = study
    les = analyse_arms(data).lesions
    assert set(les["arm"]) == set(ARMS) and (les["n"] == 3).all()
    assert (les["epoch"] == TRIAL["train.epochs"]).all()  # the last evaluation lesions too
    # a W_rec frozen from the start is its own W(0): resetting it (all, or the between-group
    # blocks) changes nothing, seed by seed
    frozen = les[(les["arm"] == "freeze_rec") & les["lesion"].str.startswith("reset")]
    assert len(frozen) == 4 and (frozen["median_drop"] == 0).all()
    assert (frozen["ci_lo"] == 0).all() and (frozen["ci_hi"] == 0).all()


def test_the_report_has_an_arms_section(study, tmp_path):
    from analysis.report import build_report

    data, _ = study
    rep = build_report(data, out_dir=tmp_path / "report", log_to_mlflow=False)
    html = rep.path.read_text()
    assert ">Arms<" in html and "arm_verdicts" in html
    names = {f.name for f in rep.files}
    assert {"arm_verdicts.csv", "arm_comparisons.csv", "arm_lesions.csv"} <= names
    assert "arms_curves.png" in names
    table = pd.read_csv(tmp_path / "report" / "arm_verdicts.csv")
    assert set(table["arm"]) == {"off_at_2", "freeze_rec", "lambda0"}
    assert any("Arms" in line for line in rep.findings.lines)
