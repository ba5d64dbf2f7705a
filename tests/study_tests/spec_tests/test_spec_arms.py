"""Study arms in a spec (study/spec/studyspec.py): named sets of dotted overrides with a control
arm, a grid dimension whose every point is validated up front, and paths resolved against the
spec file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.spec import ConfigError, load_study

REPO = Path(__file__).resolve().parents[3]
SMOKE = REPO / "search_spaces" / "smoke.yaml"

ARMS = {
    "control": {},
    "off_at_2": {"intervention.at": 2, "intervention.mi_weight": 0.0},
    "frozen": {"intervention.at": 0, "intervention.freeze": ["w_rec"]},
}


def write(tmp_path: Path, **spec) -> Path:
    base = {
        "name": "arms",
        "base": str(SMOKE),
        "search": {"mi.weight": {"values": [0.1, 0.3]}},
        "sampler": {"name": "grid"},
        "arms": ARMS,
        "control_arm": "control",
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**base, **spec}))
    return path


def test_arms_are_a_grid_dimension_with_their_own_configs(tmp_path):
    study = load_study(write(tmp_path))
    assert study.spec.grid_size() == 6 and study.spec.n_trials() == 6
    assert {(p["mi.weight"], p["arm"]) for p in study.points} == {
        (w, a) for w in (0.1, 0.3) for a in ARMS
    }
    off = study.trial_config({"arm": "off_at_2", "mi.weight": 0.3})
    assert (off.mi.weight, off.intervention.at, off.intervention.mi_weight) == (0.3, 2, 0.0)
    frozen = study.trial_config({"arm": "frozen", "mi.weight": 0.1})
    assert frozen.intervention.freeze == ("w_rec",) and frozen.intervention.at == 0
    assert not study.trial_config({"arm": "control", "mi.weight": 0.1}).intervention.active
    assert not study.trial_config({}).intervention.active  # no arm: the base
    with pytest.raises(ConfigError, match=r"key 'arm': expected one of the arms"):
        study.trial_config({"arm": "nope"})


def test_arms_alone_are_a_search(tmp_path):
    study = load_study(write(tmp_path, search={}))
    assert study.spec.n_trials() == 3 and sorted(p["arm"] for p in study.points) == sorted(ARMS)


def test_every_arm_point_is_validated_and_named(tmp_path):
    # the off arm does nothing where the searched λ is already 0: refused, naming the arm's key
    path = write(tmp_path, search={"mi.weight": {"values": [0.0, 0.1]}})
    with pytest.raises(ConfigError) as e:
        load_study(path)
    assert e.value.key == "arms.off_at_2.intervention.mi_weight"
    assert "does nothing" in str(e.value)


def test_a_relative_init_from_is_resolved_against_the_spec_file(tmp_path):
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent" / "checkpoint_2.pt").write_bytes(b"not read by the spec layer")
    arms = {**ARMS, "fork": {"train.init_from": "parent/checkpoint_2.pt", **ARMS["off_at_2"]}}
    study = load_study(write(tmp_path, arms=arms))
    cfg = study.trial_config({"arm": "fork", "mi.weight": 0.1})
    assert cfg.train.init_from == str((tmp_path / "parent" / "checkpoint_2.pt").resolve())
    assert study.spec.arms["fork"]["train.init_from"] == cfg.train.init_from  # what trials get


def test_searched_keys_or_arms_may_complete_the_bases_intervention(tmp_path):
    # the base starts an intervention at epoch 2; what it does is searched, or each arm's
    searched = load_study(
        write(
            tmp_path,
            trial={"intervention": {"at": 2}},
            search={"intervention.freeze": {"values": ["w_rec", "w_in"]}},
            arms={},
            control_arm=None,
        )
    )
    assert [p["intervention.freeze"] for p in searched.points] == ["w_rec", "w_in"]
    assert searched.trial_config(searched.points[1]).intervention.freeze == ("w_in",)
    assert searched.base_config().intervention.at == 2  # the base alone: not a whole one
    arms = {"control": {"intervention.at": None}, "off": {"intervention.mi_weight": 0.0}}
    armed = load_study(write(tmp_path, trial={"intervention": {"at": 2}}, arms=arms))
    assert not armed.trial_config({"arm": "control", "mi.weight": 0.1}).intervention.active
    # a point that leaves it incomplete is refused, naming where
    with pytest.raises(ConfigError, match=r"does nothing"):
        load_study(
            write(
                tmp_path,
                trial={"intervention": {"at": 2}},
                arms={"control": {}, "off": {"intervention.mi_weight": 0.0}},
            )
        )
