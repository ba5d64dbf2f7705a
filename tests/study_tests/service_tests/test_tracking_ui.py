"""What study/tracking.py writes for the MLflow UI, on a real SQLite store (no browser: the
chromium walk is tests/analysis_tests/test_mlflow_journey.py)."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from study.service.tracking import (
    TAG_OBJECTIVES,
    TAG_SWEPT,
    StudyTracker,
    TrialTracker,
    trial_run_name,
    trials_view,
)


def test_study_experiment_is_training_kind_with_a_trials_view_and_descriptions(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = StudyTracker(uri, "ui", artifact_root=tmp_path / "artifacts")
    objectives = [{"metric": "lag", "direction": "minimize"}]
    rid = study.start(
        tags={
            TAG_SWEPT: json.dumps(["mi.weight", "partition.groups"]),
            TAG_OBJECTIVES: json.dumps(objectives),
        }
    )
    eid = study.experiment_id
    for i, (lam, k) in enumerate([(0.1, 2), (0.3, 4)]):
        TrialTracker(
            uri,
            eid,
            rid,
            f"t{i}",
            study_name="ui",
            task="working_memory",
            params={"mi.weight": lam, "partition.groups": k},
            run_name=trial_run_name(f"t{i}", {"mi.weight": lam, "partition.groups": k}),
        )
    client = MlflowClient(uri)
    exp = client.get_experiment(eid)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"

    view = json.loads(exp.tags["mlflow.sharedViewState.trials"])
    assert view["name"] == "Trials" and isinstance(view["createdAt"], int)
    state = json.loads(view["state"])  # the UI stores the state as a JSON string
    cols = state["selectedColumns"]
    assert cols[:3] == ["params.`mi.weight`", "params.`partition.groups`", "metrics.`lag`"]
    assert {
        "metrics.`final.q_func`",
        "metrics.`final.success_rate`",
        "tags.`study.status`",
    } <= set(cols)
    assert state["orderByKey"] == "metrics.`lag`" and state["orderByAsc"] is True  # minimised
    # the view's filter is valid search syntax and selects the trial runs, not the study run
    found = client.search_runs([eid], filter_string=state["searchFilter"])
    assert sorted(r.info.run_name for r in found) == [
        "mi.weight=0.1 partition.groups=2 · t0",
        "mi.weight=0.3 partition.groups=4 · t1",
    ]

    link = f"#/experiments/{eid}/runs?workflowType=machine_learning&viewStateShareKey=trials"
    report = f"#/experiments/{eid}/runs/{rid}/artifacts/report/report.html"
    note = exp.tags["mlflow.note.content"]
    assert f"[trials table]({link})" in note and report in note
    run_note = client.get_run(rid).data.tags["mlflow.note.content"]
    assert f"[open the report]({report}" in run_note

    # a resumed study keeps one view and refreshes it (a maximised objective sorts descending)
    again = StudyTracker(uri, "ui")
    again.start(
        tags={
            TAG_SWEPT: json.dumps(["mi.weight"]),
            TAG_OBJECTIVES: json.dumps([{"metric": "final.q_func", "direction": "maximize"}]),
        }
    )
    tags = client.get_experiment(eid).tags
    assert [k for k in tags if k.startswith("mlflow.sharedViewState.")] == [
        "mlflow.sharedViewState.trials"
    ]
    state = json.loads(json.loads(tags["mlflow.sharedViewState.trials"])["state"])
    assert state["orderByAsc"] is False and state["selectedColumns"][0] == "params.`mi.weight`"


def test_trial_run_name_puts_the_swept_values_first():
    assert trial_run_name(
        "ab_00001", {"mi.weight": 0.30000000000000004, "partition.groups": 3}
    ) == ("mi.weight=0.3 partition.groups=3 · ab_00001")
    assert trial_run_name("ab_00002", {}) == "ab_00002"
    state = json.loads(json.loads(trials_view([]))["state"])
    assert state["orderByKey"] == "metrics.`final.q_func`"  # no objective: the default sort
