"""load_study against fixture studies written into a real SQLite MLflow store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.emergence import chance_modularity
from analysis.runs import (
    READ_NAMES,
    StudyNotFoundError,
    load_study,
    resolve_study_home,
    resolve_tracking_uri,
)


@pytest.fixture(scope="module")
def grid(fixture_study):
    return load_study(fixture_study.name, fixture_study.tracking_uri)


def test_load_study_keeps_one_run_per_trial(grid, fixture_study):
    assert len(grid.trials) == 7  # 6 grid trials + 1 failed
    assert grid.trials["trial_id"].is_unique
    assert list(grid.dropped["run_id"]) == [fixture_study.orphan_run_id]
    assert grid.dropped["reason"].iloc[0].startswith("duplicate of run")
    assert fixture_study.orphan_run_id not in set(grid.trials["run_id"])


def test_load_study_flags_diverged_and_failed_trials(grid, fixture_study):
    t = grid.trials.set_index("trial_id")
    assert t.loc[fixture_study.diverged_trial_id, "diverged"]
    assert t.loc[fixture_study.failed_trial_id, "failed"]
    assert "worker died" in t.loc[fixture_study.failed_trial_id, "message"]
    assert not t.loc[fixture_study.failed_trial_id, "has_curves"]
    assert t["status"].value_counts().to_dict() == {"finished": 5, "diverged": 1, "failed": 1}
    diverged_seeds = grid.seeds[grid.seeds["trial_id"] == fixture_study.diverged_trial_id]
    assert len(diverged_seeds) == 3 and diverged_seeds["diverged"].all()


def test_load_study_reads_study_run_tags_and_spec(grid, fixture_study):
    assert grid.study_run_id == fixture_study.study_run_id
    assert grid.status == "finished" and grid.task == "working_memory"
    assert grid.swept == ["mi.weight", "partition.groups"]
    assert grid.success_metric == "accuracy" and grid.success_threshold == 0.9
    assert grid.versions["mlflow"] == "3.17.2"
    assert "sampler: grid" in grid.spec_text


def test_load_study_params_are_numeric_with_dotted_columns(grid):
    assert pd.api.types.is_float_dtype(grid.trials["mi.weight"])
    assert pd.api.types.is_integer_dtype(grid.trials["partition.groups"])
    assert grid.trials["mi.estimator"].eq("dv").all()
    assert "base_seed" in grid.seeds.columns  # the `seed` param, renamed (clashes with members)


def test_load_study_chance_level_per_partition(grid):
    for _, row in grid.trials.iterrows():
        k = int(row["partition.groups"])
        assert row["q_chance"] == pytest.approx(chance_modularity(24, k))
    assert grid.trials["q_chance"].iloc[0] == pytest.approx(-1 / (2 * 23))


def test_load_study_one_row_per_trial_and_seed(grid, fixture_study):
    design = fixture_study.design
    assert len(grid.seeds) == len(design) == 21
    assert not grid.seeds.duplicated(["trial_id", "seed"]).any()
    assert len(grid.curves) == 21 * 25
    assert {"trial_id", "seed", "epoch", "q_func", "q_struct"} <= set(grid.curves.columns)


def test_load_study_recomputed_onsets_match_known_design(grid, fixture_study):
    got = grid.seeds.set_index(["trial_id", "seed"])
    want = fixture_study.design.set_index(["trial_id", "seed"])
    for col in ("t_func", "t_struct", "lag"):
        np.testing.assert_array_equal(
            got.loc[want.index, col].to_numpy(float), want[col].to_numpy(float)
        )
    assert (got.loc[want.index, "func_emerged"] == want["func_emerged"]).all()


def test_load_study_which_first_and_censoring_from_the_z_scores(grid, fixture_study):
    # λ > 0: q_func_z rises 125-175 epochs (5-7 evaluations) before q_struct_z, so every seed is
    # "function"; λ = 0: z-scores are N(0, 0.8²) noise, nothing reaches z >= 3 three times in a
    # row, so "neither", censored at the last evaluation from which 3 were seen (epoch 550).
    s = grid.seeds
    treated = s["mi.weight"] > 0
    assert (s.loc[treated, "first"] == "function").all() and treated.sum() == 14
    assert (s.loc[~treated, "first"] == "neither").all()
    assert (s.loc[~treated, ["t_func_censor", "t_struct_censor"]] == 550.0).all().all()
    assert s["onsets_measured"].all()
    # The descriptive half-rise of the raw q_func is the design's onset too (fixture sigmoid).
    np.testing.assert_array_equal(s.loc[treated, "t_func_half"], s.loc[treated, "t_func"])


def test_load_study_success_and_differentiated_flags(grid):
    s = grid.seeds
    expected_success = s["final.accuracy"] > 0.9
    assert (s["success"] == expected_success).all()
    assert (s["differentiated"] == (expected_success & (s["final.q_struct"] > 0.1))).all()
    # λ = 0.1 seeds succeed and end with q_struct > 0.1; λ = 0.3 fails; λ = 0 has no structure.
    by_lam = s.groupby("mi.weight")["differentiated"].mean()
    assert by_lam.to_dict() == {0.0: 0.0, 0.1: 1.0, 0.3: 0.0}


def test_load_study_running_study_flags_running_trials_and_uses_curves(fixture_study):
    study = load_study(fixture_study.running_name, fixture_study.tracking_uri)
    assert study.status == "running"
    running = study.seeds[study.seeds["running"]]
    assert len(running) == 3 and set(running["trial_id"]) == {"run_1"}
    # No seeds.parquet yet: finals are the mean of the last 3 finite evaluations of the curve.
    curves = study.curves[study.curves["trial_id"] == "run_1"].sort_values("epoch")
    for seed, g in curves.groupby("seed"):
        want = g["accuracy"].to_numpy(float)[-3:].mean()
        got = running.loc[running["seed"] == seed, "final.accuracy"].iloc[0]
        assert got == pytest.approx(want)


def test_load_study_empty_study_gives_empty_tables(fixture_study):
    study = load_study(fixture_study.empty_name, fixture_study.tracking_uri)
    assert study.study_run_id is not None
    assert len(study.trials) == len(study.seeds) == len(study.curves) == 0
    assert {"t_func", "lag", "success"} <= set(study.seeds.columns)


def test_load_study_unknown_study_lists_known_ones(fixture_study):
    with pytest.raises(StudyNotFoundError, match=r"no study 'nope' .*fixture-grid"):
        load_study("nope", fixture_study.tracking_uri)


def test_load_study_missing_store_is_not_created(tmp_path):
    db = tmp_path / "absent" / "mlflow.db"
    with pytest.raises(StudyNotFoundError, match=r"no MLflow store at"):
        load_study("x", f"sqlite:///{db}")
    assert not db.exists()


@pytest.mark.parametrize("bad", ["", 3])
def test_load_study_rejects_bad_name(bad):
    with pytest.raises(TypeError, match=r"load_study\(\): name must be a non-empty str"):
        load_study(bad, "sqlite:////nonexistent.db")


def test_resolve_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_tracking_uri("sqlite:///a.db") == "sqlite:///a.db"
    assert resolve_tracking_uri() == "http://mlflow:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("STUDY_HOME", str(tmp_path / "home"))
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    monkeypatch.delenv("STUDY_HOME")
    monkeypatch.chdir(tmp_path)
    assert resolve_study_home() == (tmp_path / "studies").resolve()
    assert Path(resolve_tracking_uri()[len("sqlite:///") :]).is_absolute()


def test_read_names_cover_the_contract_names_used_here():
    # test_contract_roundtrip.py compares these with what `study` writes.
    tags = {"study.role", "study.trial_id", "study.status", "study.swept"}
    assert tags <= set(READ_NAMES["tags"])
    assert {"network.hidden", "partition.groups", "mi.weight"} <= set(READ_NAMES["params"])
    assert {"q_func", "q_struct", "final.q_func", "lag", "n_func_first"} <= set(
        READ_NAMES["metrics"]
    )
    assert {"q_func_z", "q_struct_z", "nmi_func", "nmi_struct"} <= set(READ_NAMES["new_metrics"])
    assert {"curves.parquet", "seeds.parquet"} <= set(READ_NAMES["artifacts"])
    assert all(isinstance(v, tuple) and v for v in READ_NAMES.values())
