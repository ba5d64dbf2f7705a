"""Tests for study.spec (the trial config): reference defaults (docs/method.md §5.1), every
ConfigError shape, dotted overrides and the flatten/unflatten round trip; the package stays light
and is imported as a whole."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from study.spec import (
    VALID_KEYS,
    ConfigError,
    TrialConfig,
    apply_overrides,
    flatten,
    load_trial_config,
    parse_assignment,
    trial_config_from_dict,
)

# docs/method.md §5.1 (gp_wm), §2, §3.3–3.4, §4.2–4.5
REFERENCE = {
    "network.kind": "leaky",
    "network.hidden": 40,
    "network.alpha": 0.1,
    "network.noise": 0.1,
    "network.gain": 1.0,
    "task.name": "working_memory",
    "task.batch": 20,
    "task.wm.n_bits": 2,
    "task.wm.p_onset": 1 / 500,
    "task.wm.pulse_len": 40,
    "task.wm.slope": 0.1,
    "task.wm.transient": 1000,
    "task.wm.segment": 2000,
    "task.wm.target_lead": 1,
    "partition.groups": 2,
    "mi.weight": 0.1,
    "mi.estimator": "dv",
    "mi.pairs": 0,  # all bs·2000 = 40 000 pairs
    "mi.input_noise": 0.1,
    "mi.noise_mode": "clean_partner",
    "critic.width": 512,
    "critic.depth": 2,
    "critic.steps": 10,
    "critic.pretrain_steps": 100,
    "critic.optim.kind": "rmsprop",
    "critic.optim.lr": 0.003,
    "critic.optim.rho": 0.9,
    "critic.optim.eps": 1e-7,
    "critic.optim.clip_norm": 4.0,
    "optim.kind": "rmsprop",
    "optim.lr": 0.002,
    "optim.rho": 0.9,
    "optim.eps": 1e-7,
    "optim.clip_norm": 4.0,
    "optim.reg": "l2",
    "optim.reg_in": 0.01,
    "optim.reg_rec": 0.01,
    "optim.reg_out": 0.01,
    "train.epochs": 1000,
    "train.eval_every": 25,
    "train.x0_std": 1.0,
    "train.critic_x0_zero": True,
}


@pytest.mark.parametrize("key, value", sorted(REFERENCE.items()))
def test_defaults_equal_reference_values(key, value):
    flat = TrialConfig().flat()
    if isinstance(value, float):
        assert math.isclose(flat[key], value, rel_tol=1e-12)
    else:
        assert flat[key] == value


def test_defaults_are_valid_and_frozen():
    cfg = TrialConfig()
    assert cfg.n_bits == 2
    with pytest.raises(pydantic.ValidationError):
        cfg.network.hidden = 10


def test_n_bits_can_follow_groups():
    cfg = trial_config_from_dict(
        {"task": {"wm": {"n_bits": "groups"}}, "partition": {"groups": 4}}
    )
    assert cfg.n_bits == 4


# ----------------------------------------------------------------------------------------------
# error shapes


@pytest.mark.parametrize(
    "tree, key, match",
    [
        (
            {"network": {"hiden": 30}},
            "network.hiden",
            r"unknown key 'network\.hiden' \(did you mean 'network\.hidden'\?\); allowed here: "
            r"kind, "
            r"hidden, alpha, noise, gain",
        ),
        (
            {"netwrk": {"hidden": 30}},
            "netwrk",
            r"unknown key 'netwrk' \(did you mean 'network'\?\)",
        ),
        (
            {"critic": {"optim": {"clipnorm": 1.0}}},
            "critic.optim.clipnorm",
            r"unknown key 'critic\.optim\.clipnorm' \(did you mean 'critic\.optim\.clip_norm'\?\)",
        ),
    ],
)
def test_unknown_key_suggests_closest(tree, key, match):
    with pytest.raises(ConfigError, match=match) as info:
        trial_config_from_dict(tree, source="spec.yaml")
    assert info.value.key == key
    assert str(info.value).startswith("spec.yaml: ")


@pytest.mark.parametrize(
    "tree, match",
    [
        (
            {"network": {"hidden": "40"}},
            r"key 'network\.hidden': expected a valid integer, but got '40'",
        ),
        (
            {"network": {"hidden": 40.0}},
            r"key 'network\.hidden': expected a valid integer, but got 40\.0",
        ),
        ({"optim": {"lr": "fast"}}, r"key 'optim\.lr': expected a valid number, but got 'fast'"),
        (
            {"task": {"name": "maze"}},
            r"key 'task\.name': expected 'working_memory' or 'chaos_separation', but got 'maze'",
        ),
        (
            {"task": {"wm": {"off_cue": "yes"}}},
            r"key 'task\.wm\.off_cue': expected a valid boolean",
        ),
        ({"seeds": True}, r"key 'seeds': expected a valid integer, but got True"),
    ],
)
def test_wrong_type_names_key_and_value(tree, match):
    with pytest.raises(ConfigError, match=match):
        trial_config_from_dict(tree, source="spec.yaml")


@pytest.mark.parametrize(
    "tree, match",
    [
        (
            {"network": {"alpha": 1.5}},
            r"key 'network\.alpha': expected less than or equal to 1, but got 1\.5",
        ),
        (
            {"network": {"hidden": 1}},
            r"key 'network\.hidden': expected greater than or equal to 2, but got 1",
        ),
        (
            {"mi": {"weight": -0.1}},
            r"key 'mi\.weight': expected greater than or equal to 0, but got -0\.1",
        ),
        ({"seeds": 0}, r"key 'seeds': expected greater than or equal to 1, but got 0"),
        (
            {"task": {"wm": {"p_onset": 1.0}}},
            r"key 'task\.wm\.p_onset': expected less than 1, but got 1\.0",
        ),
    ],
)
def test_out_of_range_names_bound_and_value(tree, match):
    with pytest.raises(ConfigError, match=match):
        trial_config_from_dict(tree, source="spec.yaml")


@pytest.mark.parametrize(
    "tree, match",
    [
        (
            {"partition": {"groups": 41}},
            r"partition\.groups must be at most network\.hidden, but got network\.hidden=40, "
            r"partition\.groups=41",
        ),
        (
            {"task": {"wm": {"washout": 2000}}},
            r"task\.wm\.washout must be shorter than task\.wm\.segment, but got washout=2000, "
            r"segment=2000",
        ),
        (
            {"mi": {"pairs": 40001}},
            r"mi\.pairs must be at most the \(batch x time\) rows available \(40000\), but got "
            r"mi\.pairs=40001; use 0 for all rows",
        ),
        (
            {"task": {"batch": 2, "wm": {"segment": 50}}, "mi": {"pairs": 101}},
            r"rows available \(100\)",
        ),
        (
            {"train": {"checkpoint_every": 30}},
            r"train\.checkpoint_every must be a multiple of train\.eval_every, but got "
            r"checkpoint_every=30, eval_every=25",
        ),
        (
            {"partition": {"groups": 2, "sizes": [10, 20]}},
            r"partition\.sizes must be 2 positive sizes summing to network\.hidden=40, but got "
            r"\[10, 20\]",
        ),
        (
            {"partition": {"groups": 3, "sizes": [20, 20]}},
            r"partition\.sizes must be 3 positive sizes",
        ),
        ({"partition": {"groups": 1}}, r"mi\.weight > 0 needs partition\.groups >= 2, but got 1"),
        (
            {"mi": {"estimator": "infonce", "pairs": 100, "nce_block": 128}},
            r"mi\.nce_block must be at most the rows per estimate \(100\), but got 128",
        ),
    ],
)
def test_cross_field_checks(tree, match):
    with pytest.raises(ConfigError, match=match) as info:
        trial_config_from_dict(tree, source="spec.yaml")
    assert str(info.value).startswith("spec.yaml: ")


def test_several_errors_are_listed_on_one_line():
    with pytest.raises(ConfigError) as info:
        trial_config_from_dict({"network": {"hiden": 3}, "mi": {"weight": -1}}, source="s.yaml")
    text = str(info.value)
    assert text.startswith("s.yaml: invalid config: unknown key 'network.hiden'")
    assert "; key 'mi.weight'" in text
    assert len(text.splitlines()) == 1


def test_non_mapping_config_is_rejected():
    with pytest.raises(
        ConfigError,
        match=r"s\.yaml: a trial config must be a mapping of "
        r"sections, but got list",
    ):
        trial_config_from_dict([1, 2], source="s.yaml")


# ----------------------------------------------------------------------------------------------
# files and --set


def test_load_names_the_file(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text("network:\n  hiden: 30\n")
    with pytest.raises(
        ConfigError,
        match=rf"^{path}: unknown key 'network\.hiden' "
        r"\(did you mean 'network\.hidden'\?\)",
    ):
        load_trial_config(path)


def test_load_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file: .*absent\.yaml"):
        load_trial_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("network: [\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: not valid YAML"):
        load_trial_config(bad)


def test_load_applies_overrides_over_file(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text("network:\n  hidden: 30\nmi:\n  weight: 0.2\n")
    cfg = load_trial_config(path, ["mi.weight=0.3", "partition.sizes=[10, 20]"])
    assert cfg.network.hidden == 30 and cfg.mi.weight == 0.3
    assert cfg.partition.sizes == (10, 20)
    cfg = load_trial_config(path, {"train.epochs": 5})
    assert cfg.train.epochs == 5 and cfg.mi.weight == 0.2


def test_load_unknown_override_names_set():
    with pytest.raises(
        ConfigError,
        match=r"^--set: unknown key 'network\.hiden' \(did you mean "
        r"'network\.hidden'\?\)$",
    ):
        load_trial_config(None, ["network.hiden=3"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mi.weight=0.3", ("mi.weight", 0.3)),
        ("network.hidden=64", ("network.hidden", 64)),
        (" task.name = chaos_separation", ("task.name", "chaos_separation")),
        ("partition.sizes=[10, 30]", ("partition.sizes", [10, 30])),
        ("critic.optim.clip_norm=null", ("critic.optim.clip_norm", None)),
        ("critic.optim.clip_norm=", ("critic.optim.clip_norm", None)),
        ("task.wm.off_cue=true", ("task.wm.off_cue", True)),
        ("task.name=a=b", ("task.name", "a=b")),
    ],
)
def test_parse_assignment(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize(
    "text, match",
    [
        ("mi.weight", r"--set: override must look like key=value, but got 'mi\.weight'"),
        ("mi.weight=[1", r"--set: value of 'mi\.weight' is not valid YAML"),
    ],
)
def test_parse_assignment_rejects_malformed(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_assignment(text)


# regression: YAML 1.1 (PyYAML) reads '1e-3' as a string; study.spec's loader reads a float
@pytest.mark.parametrize("how", ["set", "file"])
def test_scientific_notation_is_a_float(how, tmp_path):
    if how == "set":
        cfg = load_trial_config(None, ["optim.lr=1e-3"])
    else:
        path = tmp_path / "trial.yaml"
        path.write_text("optim:\n  lr: 1e-3\n")
        cfg = load_trial_config(path)
    assert cfg.optim.lr == 1e-3


def test_apply_overrides_copies_and_rejects_unknown():
    tree = {"mi": {"weight": 0.1}}
    out = apply_overrides(tree, {"mi.weight": 0.5, "network.hidden": 8})
    assert out == {"mi": {"weight": 0.5}, "network": {"hidden": 8}}
    assert tree == {"mi": {"weight": 0.1}}
    with pytest.raises(
        ConfigError,
        match=r"^--set: unknown key 'mi\.wieght' \(did you mean "
        r"'mi\.weight'\?\)",
    ) as info:
        apply_overrides(tree, {"mi.wieght": 0.5})
    assert info.value.key == "mi.wieght"


# ----------------------------------------------------------------------------------------------
# dotted keys


def unflatten(flat):
    """{"a.b": 1} -> {"a": {"b": 1}}: the inverse of flatten, which only these tests need (moved
    here from study/config.py)."""
    tree = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"key '{dotted}' sets a field inside a value", key=dotted)
        node[leaf] = value
    return tree


def test_flatten_unflatten_round_trip():
    cfg = trial_config_from_dict(
        {
            "partition": {"groups": 3, "sizes": [10, 10, 20]},
            "mi": {"weight": 0.3, "penalty": "total_correlation"},
            "critic": {"optim": {"clip_norm": None}},
        }
    )
    flat = cfg.flat()
    assert set(flat) <= set(VALID_KEYS)
    assert flat["partition.sizes"] == [10, 10, 20] and flat["critic.optim.clip_norm"] is None
    tree = unflatten(flat)
    assert tree == cfg.model_dump(mode="json")
    assert trial_config_from_dict(tree) == cfg
    assert flatten(tree) == flat


def test_flat_keys_cover_every_leaf():
    leaves = {k for k in VALID_KEYS if not any(v.startswith(k + ".") for v in VALID_KEYS)}
    assert set(TrialConfig().flat()) == leaves


@pytest.mark.parametrize(
    "tree, flat",
    [
        ({}, {}),
        ({"a": 1}, {"a": 1}),
        ({"a": {"b": {"c": [1, 2]}, "d": None}}, {"a.b.c": [1, 2], "a.d": None}),
    ],
)
def test_flatten_examples(tree, flat):
    assert flatten(tree) == flat
    assert unflatten(flat) == tree


def test_unflatten_rejects_field_inside_value():
    with pytest.raises(ConfigError, match=r"key 'a\.b' sets a field inside a value"):
        unflatten({"a": 1, "a.b": 2})


# ----------------------------------------------------------------------------------------------
# The package: light, and imported as a whole

REPO = Path(__file__).resolve().parents[3]


def test_validating_a_study_imports_neither_torch_nor_ray():
    code = (
        "import sys, study.spec as spec\n"
        "study = spec.load_study('search_spaces/demo.yaml')\n"
        "study.trial_config({})\n"
        "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna', 'pandas', 'scipy') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_every_public_name_of_the_package_exists_once():
    import study.spec as spec

    assert len(spec.__all__) == len(set(spec.__all__))
    assert [n for n in spec.__all__ if not hasattr(spec, n)] == []


def test_callers_import_the_spec_package_not_its_modules():
    # only the package's own modules (and tests of a private helper) name a module of it
    pattern = re.compile(r"^\s*(?:from|import)\s+study\.spec\.(\w+)", re.M)
    offenders = []
    paths = [
        p
        for folder in ("study", "analysis", "tests", "bench", "docs")
        for p in (REPO / folder).rglob("*.py")
    ]
    for path in sorted(paths):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("study/spec/"):
            continue
        for m in pattern.finditer(path.read_text()):
            if not (rel.startswith("tests/") and m.group(1).startswith("_")):
                offenders.append(f"{rel}: study.spec.{m.group(1)}")
    assert offenders == []
