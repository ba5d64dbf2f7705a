"""Every bad input is refused before anything starts: exit 2, one line naming the file and key.

A corpus of malformed study specs, trial configs, `--set` values, names, output folders,
checkpoints and storage URLs, each run through the real CLI (`study.__main__.main`, in-process for
speed; a few through a real subprocess). For each: status 2, exactly one line on stderr naming
the file (or flag / environment variable) and the key, no traceback, and STUDY_HOME never
created, so no Ray session, MLflow run or Optuna study was started.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from study.__main__ import main

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "search_spaces" / "smoke.yaml"
# a valid spec; cases add or replace lines (YAML: a later top-level block wins only if we
# rewrite it, so each case gives the full text it needs)
HEAD = f"name: t\nbase: {SMOKE}\n"
SEARCH = "search: {mi.weight: {values: [0.0, 0.1]}}\n"
OK = HEAD + SEARCH + "sampler: {name: grid}\n"
ARMS = "arms: {a: {}, b: {intervention.at: 2, intervention.freeze: [w_rec]}}\n"

# (id, spec text or bytes, substrings the one stderr line must hold besides the file name)
SPECS: list[tuple[str, str | bytes, list[str]]] = [
    # -- the YAML reader: duplicates, encoding, size, depth, aliases, syntax
    ("duplicate-top-key", OK + "name: u\n", ["duplicate key 'name'", "line"]),
    (
        "duplicate-nested-key",
        HEAD + SEARCH + "trial: {network: {hidden: 8, hidden: 9}}\n",
        ["duplicate key 'hidden'"],
    ),
    (
        "duplicate-search-key",
        HEAD + "search:\n  mi.weight: {values: [0.0]}\n  mi.weight: {values: [0.1]}\n",
        ["duplicate key 'mi.weight'"],
    ),
    ("non-utf8", OK.encode() + b"description: caf\xe9\n", ["not UTF-8", "byte 0xe9", "line 5"]),
    ("utf16", OK.encode("utf-16"), ["not UTF-8"]),
    ("too-large", OK + "#" + "x" * 1_100_000 + "\n", ["bytes", "at most 1000000"]),
    (
        "deep-nesting",
        OK + "description: " + "[" * 10_000 + "]" * 10_000 + "\n",
        ["nesting deeper than 40"],
    ),
    (
        "deep-mapping",
        OK + "trial: " + "{a: " * 60 + "1" + "}" * 60 + "\n",
        ["nesting deeper than 40"],
    ),
    (
        "alias-bomb",
        OK
        + "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10)),
        ["expands", "more than 200000"],
    ),
    (
        "alias-bomb-in-search",
        HEAD
        + "a: &a [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]\n"
        + "".join(
            f"b{i}: &b{i} [" + ", ".join(["*a" if i == 0 else f"*b{i - 1}"] * 8) + "]\n"
            for i in range(8)
        )
        + "search: {mi.weight: {values: *b7}}\n",
        ["expands"],
    ),
    ("recursive-alias", OK + "loop: &l [*l]\n", ["recursive alias"]),
    ("bad-syntax", OK + "trial: {network: [\n", ["not valid YAML", "line"]),
    ("tab-indent", OK + "trial:\n\tnetwork: {hidden: 8}\n", ["not valid YAML"]),
    ("not-a-mapping", "- 1\n- 2\n", ["must be a mapping", "list"]),
    ("python-tag", OK + "x: !!python/object/apply:os.system ['true']\n", ["not valid YAML"]),
    # -- non-finite numbers anywhere
    ("inf-lr", OK + "trial: {optim: {lr: .inf}}\n", ["key 'trial.optim.lr'", "finite"]),
    ("nan-weight", OK + "trial: {mi: {weight: .nan}}\n", ["key 'trial.mi.weight'", "finite"]),
    (
        "inf-in-values",
        HEAD + "search: {mi.weight: {values: [0.1, .inf]}}\n",
        ["key 'search.mi.weight.values[1]'", "finite"],
    ),
    (
        "minus-inf-low",
        HEAD + "search: {optim.lr: {type: float, low: -.inf, high: 1}}\n",
        ["key 'search.optim.lr.low'", "finite"],
    ),
    ("huge-float", OK + "trial: {mi: {weight: 1e999}}\n", ["key 'trial.mi.weight'", "finite"]),
    ("inf-cpu", OK + "resources: {cpu: .inf}\n", ["key 'resources.cpu'"]),
    # -- absurd sizes
    (
        "hidden-1e9",
        OK + "trial: {network: {hidden: 1000000000}}\n",
        ["key 'trial.network.hidden'", "[2, 16384]"],
    ),
    ("seeds-1e6", OK + "seeds: 1000000\n", ["key 'seeds'"]),
    ("trial-seeds-1e6", OK + "trial: {seeds: 1000000}\n", ["key 'trial.seeds'"]),
    ("seed-2^40", OK + "trial: {seed: 1099511627776}\n", ["key 'trial.seed'"]),
    (
        "seed-overflow",
        OK + "trial: {seed: 4294967295, seeds: 2}\n",
        ["key 'trial.seed'", "seed + seeds - 1"],
    ),
    ("cpu-1e9", OK + "resources: {cpu: 1000000000}\n", ["key 'resources.cpu'"]),
    ("gpu-1e6", OK + "resources: {gpu: 1000000}\n", ["key 'resources.gpu'"]),
    ("concurrency-1e9", OK + "concurrency: 1000000000\n", ["key 'concurrency'"]),
    ("trials-1e9", OK + "trials: 1000000000\n", ["key 'trials'"]),
    ("critic-width", OK + "trial: {critic: {width: 100000000}}\n", ["key 'trial.critic.width'"]),
    (
        "epochs-1e12",
        OK + "trial: {train: {epochs: 1000000000000}}\n",
        ["key 'trial.train.epochs'"],
    ),
    (
        "searched-hidden-1e9",
        HEAD + "search: {network.hidden: {values: [8, 1000000000]}}\n",
        ["key 'search.network.hidden'", "[2, 16384]"],
    ),
    # -- grids: sized without materialising, capped, steps > 0
    (
        "int-grid-2..1e9",
        HEAD + "search: {network.hidden: {type: int, low: 2, high: 1000000000}}\n"
        "sampler: {name: grid}\n",
        ["key 'search'", "more than the 100000 allowed"],
    ),
    (
        "float-step-1e-9",
        HEAD + "search: {mi.weight: {type: float, low: 0, high: 1, step: 1e-9}}\n"
        "sampler: {name: grid}\n",
        ["key 'search'", "1000000001"],
    ),
    (
        "grid-product",
        HEAD + "search:\n"
        "  mi.weight: {type: float, low: 0, high: 1, step: 0.01}\n"
        "  optim.lr: {type: float, low: 0.001, high: 0.1, step: 0.001}\n"
        "  seed: {type: int, low: 0, high: 100}\nsampler: {name: grid}\n",
        ["key 'search'", "points"],
    ),
    (
        "step-zero",
        HEAD + "search: {mi.weight: {type: float, low: 0, high: 1, step: 0}}\n"
        "sampler: {name: grid}\n",
        ["key 'search.mi.weight'", "step must be > 0"],
    ),
    (
        "step-negative",
        HEAD + "search: {network.hidden: {type: int, low: 4, high: 8, step: -2}}\n"
        "sampler: {name: grid}\n",
        ["key 'search.network.hidden'", "step must be > 0"],
    ),
    (
        "int-step-fraction",
        HEAD + "search: {network.hidden: {type: int, low: 4, high: 8, step: 0.5}}\n",
        ["key 'search.network.hidden'", "integer step"],
    ),
    (
        "log-and-step",
        HEAD + "search: {optim.lr: {type: float, low: 0.001, high: 0.1, log: true, step: 0.01}}\n",
        ["key 'search.optim.lr'", "not both"],
    ),
    (
        "grid-continuous",
        HEAD + "search: {mi.weight: {type: float, low: 0, high: 1}}\nsampler: {name: grid}\n",
        ["key 'sampler'", "continuous: mi.weight"],
    ),
    # -- what used to pass validate and crash run
    ("empty-search", HEAD + "sampler: {name: grid}\n", ["key 'search'", "at least one"]),
    ("empty-search-braces", HEAD + "search: {}\n", ["key 'search'", "at least one"]),
    (
        "negative-sampler-seed",
        OK.replace("{name: grid}", "{name: grid, seed: -1}"),
        ["key 'sampler.seed'"],
    ),
    ("storage-garbage", OK + "storage: not a url\n", ["key 'storage'", "not a database URL"]),
    (
        "storage-unknown-dialect",
        OK + "storage: nosuchdb://h/x\n",
        ["key 'storage'", "unknown database kind 'nosuchdb'"],
    ),
    (
        "storage-sqlite-no-folder",
        OK + "storage: sqlite:////nonexistent-mistudy/x/optuna.db\n",
        ["key 'storage'", "does not exist"],
    ),
    ("storage-sqlite-memory", OK + "storage: 'sqlite://'\n", ["key 'storage'", "file path"]),
    (
        "storage-no-driver",
        OK + "storage: mysql+mysqldb://u:s3cret@db.example/x\n",
        ["key 'storage'", "not installed"],
    ),
    (
        "scheduler-unknown-metric",
        OK + "scheduler: {name: asha, metric: final.qq}\n",
        ["key 'scheduler.metric'", "final.qq"],
    ),
    (
        "scheduler-not-objective",
        OK + "scheduler: {name: asha, metric: final.mi}\n",
        ["key 'scheduler.metric'"],
    ),
    (
        "scheduler-two-objectives",
        OK + "objectives: [{metric: final.q_func}, {metric: "
        "final.accuracy}]\nscheduler: {name: asha}\n",
        ["key 'scheduler.metric'"],
    ),
    ("name-too-long", OK.replace("name: t", "name: " + "n" * 300), ["key 'name'", "100"]),
    ("name-slash", OK.replace("name: t", "name: ../../x"), ["key 'name'"]),
    ("name-dot", OK.replace("name: t", "name: .hidden"), ["key 'name'"]),
    ("name-missing", f"base: {SMOKE}\n" + SEARCH, ["key 'name'", "required"]),
    # -- cross-field errors name their key (never "key 'trial.'")
    (
        "cross-groups",
        OK + "trial: {partition: {groups: 50}}\n",
        ["key 'trial.partition.groups'", "at most network.hidden"],
    ),
    (
        "cross-washout",
        OK + "trial: {task: {wm: {washout: 100}}}\n",
        ["key 'trial.task.wm.washout'"],
    ),
    ("cross-nsga2", OK.replace("{name: grid}", "{name: nsga2}"), ["key 'sampler'", "nsga2"]),
    ("cross-objectives", OK + "objectives: []\n", ["key 'objectives'"]),
    ("bad-constraint", OK + "constraints: ['final.q_func > 3']\n", ["key 'constraints'"]),
    ("unknown-top-key", OK + "trails: 3\n", ["unknown key 'trails'"]),
    ("wrong-type", OK + "concurrency: two\n", ["key 'concurrency'", "valid integer"]),
    # -- arms: named sets of overrides, a control among them, on a grid
    ("arms-no-control", OK + ARMS, ["key 'control_arm'"]),
    ("arms-unknown-control", OK + ARMS + "control_arm: c\n", ["key 'control_arm'", "'c'"]),
    ("arms-not-grid", HEAD + SEARCH + ARMS + "control_arm: a\n", ["key 'arms'", "grid"]),
    ("arms-one", OK + "arms: {a: {}}\ncontrol_arm: a\n", ["key 'arms'", "at least two"]),
    ("arms-name", OK + "arms: {a: {}, 2b: {}}\ncontrol_arm: a\n", ["key 'arms'", "'2b'"]),
    ("arms-no-control-arm-without-arms", OK + "control_arm: a\n", ["key 'control_arm'"]),
    (
        "arms-unknown-key",
        OK + "arms: {a: {}, b: {intervention.att: 2}}\ncontrol_arm: a\n",
        ["unknown key 'arms.b.intervention.att'", "intervention.at"],
    ),
    (
        "arms-section-key",
        OK + "arms: {a: {}, b: {intervention: {at: 2}}}\ncontrol_arm: a\n",
        ["unknown key 'arms.b.intervention'"],
    ),
    ("arms-seed", OK + "arms: {a: {}, b: {seed: 3}}\ncontrol_arm: a\n", ["key 'arms.b.seed'"]),
    (
        "arms-searched-key",
        OK + "arms: {a: {}, b: {mi.weight: 0.3}}\ncontrol_arm: a\n",
        ["key 'arms.b.mi.weight'", "also searched"],
    ),
    (
        "arms-at-past-end",
        OK + "arms: {a: {}, b: {intervention.at: 9, intervention.mi_weight: 0.5}}\n"
        "control_arm: a\n",
        ["key 'arms.b.intervention.at'", "before the last epoch"],
    ),
    (
        "arms-fork-missing",
        OK + "arms: {a: {}, b: {train.init_from: nowhere.pt, intervention.at: 2, "
        "intervention.freeze: w_rec}}\ncontrol_arm: a\n",
        ["key 'arms.b.train.init_from'", "no checkpoint"],
    ),
    (
        "intervention-in-trial",
        OK + "trial: {intervention: {at: 2, freeze: [w_bias]}}\n",
        ["key 'trial.intervention.freeze[0]'", "'w_rec'"],
    ),
]


def _fresh(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("STUDY_HOME", str(home))
    for var in ("MLFLOW_TRACKING_URI", "STUDY_OPTUNA_STORAGE", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return home


def _refused(argv: list[str], capsys, home: Path, must: list[str]) -> str:
    """Run the CLI in-process; check status 2, one stderr line holding `must`, nothing started."""
    t0 = time.perf_counter()
    rc = main(argv)
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == 2, err
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: ") and "Traceback" not in err
    assert "key ''" not in line and "key 'trial.'" not in line
    for text in must:
        assert text in line, line
    assert not home.exists(), "STUDY_HOME was created: something started"
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()
    assert elapsed < 10, f"refusing took {elapsed:.1f} s"
    return line


@pytest.mark.parametrize(("text", "must"), [c[1:] for c in SPECS], ids=[c[0] for c in SPECS])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_spec_is_refused_before_anything_starts(
    command, text, must, tmp_path, monkeypatch, capsys
):
    home = _fresh(tmp_path, monkeypatch)
    spec = tmp_path / "bad spec.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = _refused([command, str(spec)], capsys, home, must)
    assert str(spec) in line
    assert "s3cret" not in line


def test_the_corpus_base_spec_is_valid(tmp_path, monkeypatch, capsys):
    """The cases above differ from a spec that passes, so each refusal is about its change."""
    _fresh(tmp_path, monkeypatch)
    spec = tmp_path / "ok.yaml"
    spec.write_text(OK)
    assert main(["validate", str(spec)]) == 0, capsys.readouterr().err


SET_K1 = ["--set", "partition.groups=1", "--set", "mi.weight=0"]
# (id, trial config text or bytes or None for the valid smoke config, extra argv, substrings)
TRAIN: list[tuple[str, str | bytes | None, list[str], list[str]]] = [
    ("set-no-equals", None, ["--set", "mi.weight"], ["--set", "key=value"]),
    ("set-empty-key", None, ["--set", "=3"], ["--set", "no key"]),
    ("set-unknown-key", None, ["--set", "mi.wieght=0.1"], ["--set", "unknown key 'mi.wieght'"]),
    ("set-bad-yaml", None, ["--set", "mi.weight=[1, 2"], ["--set", "'mi.weight'", "not valid"]),
    ("set-inf", None, ["--set", "optim.lr=.inf"], ["--set", "key 'optim.lr'", "finite"]),
    ("set-1e999", None, ["--set", "mi.weight=1e999"], ["--set", "key 'mi.weight'", "finite"]),
    ("set-nan-list", None, ["--set", "partition.sizes=[.nan, 1]"], ["--set", "finite"]),
    ("set-huge-hidden", None, ["--set", "network.hidden=100000000"], ["key 'network.hidden'"]),
    ("set-negative-seed", None, ["--set", "seed=-4"], ["key 'seed'"]),
    ("set-wrong-type", None, ["--set", "train.epochs=many"], ["key 'train.epochs'"]),
    (
        "set-alias-bomb",
        None,
        [
            "--set",
            "partition.sizes=[&a0 [1,1,1,1,1,1,1,1,1,1], "
            + ", ".join(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7))
            + "]",
        ],
        ["--set", "expands"],
    ),
    ("set-too-long", None, ["--set", "network.kind=" + "x" * 20_000], ["--set", "characters"]),
    ("set-deep", None, ["--set", "mi.weight=" + "[" * 3000 + "]" * 3000], ["--set", "nesting"]),
    ("set-cross-field", None, ["--set", "partition.groups=13"], ["key 'partition.groups'"]),
    ("name-traversal", None, ["--name", "../../x"], ["--name", "key '--name'"]),
    ("name-empty", None, ["--name", ""], ["--name"]),
    ("name-space", None, ["--name", "a b"], ["--name"]),
    ("name-too-long", None, ["--name", "n" * 256], ["--name"]),
    (
        "config-dup-key",
        "network: {hidden: 8}\nnetwork: {hidden: 9}\n",
        [],
        ["duplicate key 'network'"],
    ),
    ("config-non-utf8", b"network: {kind: \xff}\n", [], ["not UTF-8"]),
    ("config-inf", "optim: {lr: -.inf}\n", [], ["key 'optim.lr'"]),
    ("config-list", "[1, 2]\n", [], ["mapping"]),
    ("config-deep", "a: " + "[" * 10_000 + "]" * 10_000 + "\n", [], ["nesting"]),
    # -- interventions, the structure penalty and forks (smoke: 4 epochs, evaluations every 2)
    (
        "iv-unknown-role",
        None,
        ["--set", "intervention.at=1", "--set", "intervention.freeze=[w_bias]"],
        ["key 'intervention.freeze[0]'", "'w_rec_between'"],
    ),
    (
        "iv-at-past-the-end",
        None,
        ["--set", "intervention.at=4", "--set", "intervention.mi_weight=0"],
        ["key 'intervention.at'", "before the last epoch"],
    ),
    ("iv-at-typo", None, ["--set", "intervention.at=onset"], ["key 'intervention.at'"]),
    (
        "iv-swap-one-group",
        None,
        [*SET_K1, "--set", "intervention.at=1", "--set", "intervention.swap_partition=true"],
        ["key 'intervention.swap_partition'", "partition.groups=1"],
    ),
    (
        "iv-nothing-to-do",
        None,
        ["--set", "intervention.at=1"],
        ["key 'intervention.at'", "does nothing"],
    ),
    (
        "iv-same-lambda",
        None,
        ["--set", "intervention.at=1", "--set", "intervention.mi_weight=0.1"],
        ["key 'intervention.mi_weight'", "does nothing"],
    ),
    ("iv-no-at", None, ["--set", "intervention.freeze=w_rec"], ["key 'intervention.at'"]),
    (
        "iv-func-onset-swap",
        None,
        ["--set", "intervention.at=func_onset", "--set", "intervention.swap_partition=true"],
        ["key 'intervention.swap_partition'", "share one partition"],
    ),
    (
        "iv-func-onset-one-group",
        None,
        [*SET_K1, "--set", "intervention.at=func_onset", "--set", "intervention.freeze=w_in"],
        ["key 'intervention.at'", "q_func_z"],
    ),
    (
        "structure-one-group",
        None,
        [*SET_K1, "--set", "structure_penalty.weight=0.1"],
        ["key 'structure_penalty.weight'"],
    ),
    (
        "fork-missing",
        None,
        ["--set", "train.init_from=/nonexistent/checkpoint.pt"],
        ["key 'train.init_from'", "no checkpoint"],
    ),
    (
        "iv-func-onset-fork",
        None,
        [
            "--set",
            f"train.init_from={SMOKE}",
            "--set",
            "intervention.at=func_onset",
            "--set",
            "intervention.freeze=w_in",
        ],
        ["key 'intervention.at'", "train.init_from"],
    ),
    (
        "keep-odd-epoch",
        None,
        ["--set", "train.keep_checkpoints=[3]"],
        ["key 'train.keep_checkpoints'"],
    ),
]


@pytest.mark.parametrize(
    ("config", "extra", "must"), [c[1:] for c in TRAIN], ids=[c[0] for c in TRAIN]
)
def test_bad_train_input_is_refused(config, extra, must, tmp_path, monkeypatch, capsys):
    home = _fresh(tmp_path, monkeypatch)
    path = SMOKE
    if config is not None:
        path = tmp_path / "cfg.yaml"
        path.write_bytes(config if isinstance(config, bytes) else config.encode())
    line = _refused(["train", str(path), *extra], capsys, home, must)
    if config is not None:
        assert str(path) in line


def test_out_pointing_at_a_file_is_refused(tmp_path, monkeypatch, capsys):
    home = _fresh(tmp_path, monkeypatch)
    afile = tmp_path / "taken"
    afile.write_text("not a folder")
    for out in (afile, afile / "below"):
        line = _refused(
            ["train", str(SMOKE), "--out", str(out)],
            capsys,
            home,
            ["--out", "key '--out'", "is a file"],
        )
        assert str(afile) in line


@pytest.fixture(scope="module")
def parents(tmp_path_factory):
    """Two smoke trials that kept their epoch-2 checkpoints: a plain one, and one whose own
    intervention acted at epoch 0."""
    from study.spec import load_trial_config
    from study.training import train

    root = tmp_path_factory.mktemp("parents")
    for name, over in (
        ("plain", {}),
        ("intervened", {"intervention.at": 0, "intervention.freeze": "w_in"}),
    ):
        cfg = load_trial_config(SMOKE, {"train.keep_checkpoints": [2], **over})
        train(cfg, checkpoint_dir=root / name / "checkpoint")
    return root


FORK_ARM = ["--set", "intervention.at=2", "--set", "intervention.mi_weight=0"]
# (id, parent, extra argv after --set train.init_from=..., substrings of the one line)
FORKS = [
    (
        "other-config",
        "plain",
        [*FORK_ARM, "--set", "mi.weight=0.3"],
        ["key 'mi.weight'", "0.1 -> 0.3"],
    ),
    (
        "at-before-the-fork",
        "plain",
        ["--set", "intervention.at=1", "--set", "intervention.freeze=w_in"],
        ["key 'intervention.at'", "at or after the epoch it forks at (2)"],
    ),
    (
        "no-epochs-left",
        "plain",
        ["--set", "structure_penalty.weight=0.01", "--set", "train.epochs=2"],
        ["key 'train.epochs'", "train past the epoch it forks at (2)"],
    ),
    (
        "parent-past-its-intervention",
        "intervened",
        ["--set", "intervention.at=2", "--set", "intervention.freeze=w_in"],
        ["key 'train.init_from'", "past its own trial's intervention"],
    ),
    ("into-the-parent", "plain", [*FORK_ARM, "--out", "PARENT"], ["key 'train.init_from'"]),
]


@pytest.mark.parametrize(
    ("parent", "extra", "must"), [f[1:] for f in FORKS], ids=[f[0] for f in FORKS]
)
def test_a_fork_that_cannot_start_is_refused(
    parent, extra, must, parents, tmp_path, monkeypatch, capsys
):
    home = _fresh(tmp_path, monkeypatch)
    kept = parents / parent / "checkpoint" / "checkpoint_2.pt"
    extra = [str(parents / parent) if a == "PARENT" else a for a in extra]
    before = {p: p.read_bytes() for p in (parents / parent).rglob("*") if p.is_file()}
    _refused(["train", str(SMOKE), "--set", f"train.init_from={kept}", *extra], capsys, home, must)
    assert {p: p.read_bytes() for p in (parents / parent).rglob("*") if p.is_file()} == before


def test_bad_storage_in_the_environment_is_refused_and_redacted(tmp_path, monkeypatch, capsys):
    home = _fresh(tmp_path, monkeypatch)
    spec = tmp_path / "ok.yaml"
    spec.write_text(OK)
    for url, what in (
        ("mysql+mysqldb://admin:s3cret@db.example/optuna", "not installed"),
        ("::nonsense::", "not a database URL"),
    ):
        monkeypatch.setenv("STUDY_OPTUNA_STORAGE", url)
        line = _refused(["run", str(spec)], capsys, home, ["STUDY_OPTUNA_STORAGE", what])
        assert "s3cret" not in line


def _torch_save(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


@pytest.mark.parametrize(
    "kind", ["garbage", "empty", "truncated", "foreign", "other-config", "bad-mi-state"]
)
def test_malformed_checkpoint_is_refused_with_one_line(kind, tmp_path, monkeypatch, capsys):
    from study.spec import load_trial_config
    from study.training import Trainer

    home = _fresh(tmp_path, monkeypatch)
    out = tmp_path / "run"
    ckpt = out / "checkpoint" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    if kind == "garbage":
        ckpt.write_bytes(os.urandom(4096))
    elif kind == "empty":
        ckpt.write_bytes(b"")
    elif kind in ("truncated", "other-config", "bad-mi-state"):
        cfg = load_trial_config(SMOKE, ["mi.weight=0.3"] if kind == "other-config" else [])
        state = Trainer(cfg, "cpu").state_dict()
        if kind == "bad-mi-state":
            state["mi"] = {"critics": torch.zeros(3)}
        _torch_save(ckpt, state)
        if kind == "truncated":
            ckpt.write_bytes(ckpt.read_bytes()[:2000])
    else:
        _torch_save(ckpt, {"weights": torch.zeros(3)})
    must = {
        "other-config": ["different config", "mi.weight"],
        "foreign": ["not a mistudy checkpoint"],
        "bad-mi-state": ["MI critics", "'module'"],
    }.get(kind, ["cannot read checkpoint"])
    line = _refused(["train", str(SMOKE), "--out", str(out), "--resume"], capsys, home, must)
    assert str(ckpt) in line


class _Payload:
    """Unpickling this runs a shell command: what a planted checkpoint.pt would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_malicious_checkpoint_pickle_is_refused_and_never_runs(tmp_path, monkeypatch, capsys):
    home = _fresh(tmp_path, monkeypatch)
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    ckpt = out / "checkpoint" / "checkpoint.pt"
    _torch_save(ckpt, {"version": 1, "network": _Payload(marker)})
    # the payload is live: a full unpickle runs it
    torch.load(ckpt, weights_only=False)
    assert marker.exists()
    marker.unlink()
    line = _refused(
        ["train", str(SMOKE), "--out", str(out), "--resume"],
        capsys,
        home,
        ["cannot read checkpoint", "other than tensors"],
    )
    assert str(ckpt) in line
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# Real subprocesses: the same refusals end to end, fast


@pytest.mark.parametrize(
    ("case", "must"),
    [
        ("non-utf8", "not UTF-8"),
        ("alias-bomb", "expands"),
        ("deep-nesting", "nesting"),
        ("duplicate-top-key", "duplicate key"),
        ("int-grid-2..1e9", "more than the 100000"),
    ],
)
def test_bad_spec_subprocess(case, must, tmp_path):
    text = dict((c[0], c[1]) for c in SPECS)[case]
    spec = tmp_path / "s.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    home = tmp_path / "home"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "STUDY_OPTUNA_STORAGE")
    }
    env.update(STUDY_HOME=str(home), RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "study", "run", str(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.splitlines()) == 1 and must in out.stderr and str(spec) in out.stderr
    assert "Traceback" not in out.stderr and not home.exists()


def test_usage_error_is_status_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), STUDY_HOME=str(tmp_path / "home"))
    out = subprocess.run(
        [sys.executable, "-m", "study", "frobnicate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 2 and "invalid choice" in out.stderr
    assert not (tmp_path / "home").exists()


def test_runtime_failure_is_one_line_status_1_and_opens_no_run(tmp_path, monkeypatch, capsys):
    """A storage that passes validation but cannot be opened (its file is a folder): status 1,
    one line, and the MLflow study run is never opened (set-up comes first)."""
    home = _fresh(tmp_path, monkeypatch)
    db = tmp_path / "optuna.db"
    db.mkdir()
    spec = tmp_path / "s.yaml"
    spec.write_text(OK + f"storage: sqlite:///{db}\n")
    rc = main(["run", str(spec)])
    err = capsys.readouterr().err
    # one error line (a design warning, "warning: ... seeds per cell", may precede it)
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert rc == 1 and len(lines) == 1, err
    assert "cannot open the Optuna storage" in err and "Traceback" not in err
    assert not (home / "mlflow.db").exists()
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


# ----------------------------------------------------------------------------------------------
# Units of the machinery


def test_redaction_hides_passwords_only():
    from study.contract.text import redact_url

    assert (
        redact_url("postgresql+psycopg://u:p%40ss@db:5432/x")
        == "postgresql+psycopg://u:***@db:5432/x"
    )
    assert (
        redact_url("could not reach http://ml:pw@host:5000/api")
        == "could not reach http://ml:***@host:5000/api"
    )
    for plain in ("sqlite:////a/optuna.db", "http://127.0.0.1:5000", "http://h:5000/a@b"):
        assert redact_url(plain) == plain


def test_outcome_lines_redact_the_storage_password():
    from study.service.driver import StudyOutcome, format_outcome

    text = format_outcome(
        StudyOutcome(
            "s", Path("/x"), "http://u:pw1@mlflow:5000", "postgresql://optuna:pw2@pg/optuna", 1, 0
        )
    )
    assert "pw1" not in text and "pw2" not in text and "optuna:***@pg" in text


def test_filter_literal_quotes_or_refuses():
    from study.service.tracking import filter_literal

    assert filter_literal("abc") == "'abc'"
    assert filter_literal("it's") == '"it\'s"'
    with pytest.raises(ValueError):
        filter_literal("both ' and \"")


def test_grid_size_is_computed_without_materialising():
    from study.spec import ParamSpec

    big = ParamSpec(type="int", low=2, high=10**12)
    assert big.grid_len() == 10**12 - 1  # O(1): a list this long would not fit in memory
    assert ParamSpec(type="float", low=0, high=1, step=0.25).grid_len() == 5
    assert ParamSpec(type="float", low=0, high=1, step=0.25).grid() == [0, 0.25, 0.5, 0.75, 1]
    with pytest.raises(ValueError, match="more than"):
        big.grid()


def test_stale_trial_scratch_folders_are_swept(tmp_path):
    from study.service.driver import sweep_work_dirs

    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = tmp_path / f"mistudy-abc_00001-{dead.pid}-x1y2z3"
    live = tmp_path / f"mistudy-abc_00002-{os.getpid()}-a1b2c3"
    other = tmp_path / "mistudy-ray.q1w2e3"
    for d in (gone, live, other):
        (d / "ckpt").mkdir(parents=True)
    assert sweep_work_dirs(tmp_path) == [gone]
    assert not gone.exists() and live.is_dir() and other.is_dir()


# ----------------------------------------------------------------------------------------------
# A real tracked `study train`: run ids with quotes, final.* once, file modes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # about 10 s on 2 busy cores
    """One tracked `study train` (4 epochs of the smoke preset) into a folder whose name holds
    a quote, then a `--resume` of the finished run."""
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("trained")
    home = tmp / "home"
    out = tmp / "it's run"
    saved = {k: os.environ.get(k) for k in ("STUDY_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["STUDY_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        args = [
            "train",
            str(SMOKE),
            "--set",
            "train.epochs=4",
            "--set",
            "train.threads=1",
            "--out",
            str(out),
            "-q",
        ]
        assert main(args) == 0
        assert main([*args, "--resume"]) == 0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id], "tags.`study.role` = 'trial'")
    return {"home": home, "out": out, "client": client, "runs": runs}


def test_quote_in_out_keeps_one_run_and_closes_it(trained):
    runs = trained["runs"]
    assert len(runs) == 1  # the resume found the run again: no duplicate
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["study.trial_id"].startswith("train-it_s_run-")


def test_final_metrics_logged_once_also_after_resume(trained):
    client, run = trained["client"], trained["runs"][0]
    finals = [k for k in run.data.metrics if k.startswith("final.")]
    assert "final.q_func" in finals and "final.success_rate" in finals
    for key in finals:
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [4], (key, history)


def test_stores_checkpoints_and_outputs_are_private(trained):
    home, out = trained["home"], trained["out"]
    files = [
        home / "mlflow.db",
        out / "checkpoint" / "checkpoint.pt",
        out / "curves.parquet",
        out / "seeds.parquet",
        out / "summary.json",
    ]
    files += [p for p in (home / "mlartifacts").rglob("*") if p.is_file()]
    assert len(files) > 6
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for d in (out, out / "checkpoint", home / "mlartifacts"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


@pytest.mark.ray
@pytest.mark.slow
def test_failure_after_the_study_run_opened_closes_it(tmp_path):
    """Set-up succeeds (a real embedded Ray), then resuming fails on a corrupt Tune state: the
    MLflow study run, opened by then, ends FAILED with the reason, never left RUNNING; the
    command says so in one line."""
    from mlflow.tracking import MlflowClient

    home = tmp_path / "home"
    spec = tmp_path / "s.yaml"
    spec.write_text(OK)
    state = home / "ray" / "t" / "tuner.pkl"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"not a pickle")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "STUDY_OPTUNA_STORAGE")
    }
    env.update(STUDY_HOME=str(home), RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "study", "run", str(spec), "--num-cpus", "1", "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert out.returncode in (1, 2) and len(errors) == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t")
    (run,) = client.search_runs([exp.experiment_id], "tags.`study.role` = 'study'")
    assert run.info.status == "FAILED"
    assert run.data.tags["study.status"] == "failed" and run.data.tags["study.message"]
    assert stat.S_IMODE((home / "mlflow.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "optuna.db").stat().st_mode) == 0o600
