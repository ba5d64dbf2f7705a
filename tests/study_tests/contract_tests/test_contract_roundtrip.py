"""The run-data contract (docs/run-data.md): what `study` writes is what `analysis` reads.

Every name both sides use has one owner, `study.contract` (tags, params, artifacts, metric
names, outcome rules), and analysis imports nothing else of study: checked on the source below.
What is left to prove is that study writes each name analysis lists in analysis.runs.READ_NAMES:
the params are keys of the trial config, the metrics and columns come out of study's summary, and
a real round trip (`python -m study train` writes a one-trial study into a SQLite MLflow store,
`analysis.load_study` reads it back) carries the tags and artifacts.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.runs import READ_NAMES, load_study
from study.contract import artifacts, tags
from study.contract.outcomes import TASK_METRIC
from study.service.summary import summarize
from study.spec import TrialConfig, load_trial_config
from study.training import EvalRecord, metric_names

REPO = Path(__file__).resolve().parents[3]


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
    # The z-score and NMI curves (q_func_z, nmi_func, ...) come from the training side; analysis
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
        [
            sys.executable,
            "-m",
            "study",
            "train",
            "search_spaces/smoke.yaml",
            "-q",
            "--name",
            "contract",
            "--out",
            str(tmp_path / "run"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    uri = f"sqlite:///{home / 'mlflow.db'}"
    data = load_study("contract", tracking_uri=uri)
    assert len(data.trials) == 1 and data.trials["status"].iloc[0] == "finished"
    _assert_tags_and_artifacts_as_declared(data, uri)
    assert len(data.seeds) == 2  # smoke: 2 seeds
    assert sorted(data.curves["epoch"].unique()) == [0, 2, 4]
    assert set(data.curves["seed"]) == {0, 1}
    assert np.isfinite(data.seeds["final.q_func"]).all()
    assert float(data.trials["mi.weight"].iloc[0]) == 0.1
    # the seeds.parquet study wrote is current, so analysis reads the owner's outcomes as written
    assert {"first", "t_func_censor", "t_struct_censor", "onsets_measured"} <= set(
        data.seeds.columns
    )


def test_emergence_config_defaults_are_the_owners_and_bad_values_name_the_key():
    from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z
    from study.spec import ConfigError

    cfg = TrialConfig()
    assert (cfg.emergence.z, cfg.emergence.run) == (DEFAULT_Z, DEFAULT_RUN)
    assert load_trial_config(overrides={"emergence.z": 4, "emergence.run": 5}).emergence.run == 5
    with pytest.raises(ConfigError, match=r"key 'emergence.run': expected greater than or equal"):
        load_trial_config(overrides={"emergence.run": 0})


def _assert_tags_and_artifacts_as_declared(data, uri: str) -> None:
    """The runs `study train` wrote carry the contract's tags, tag values, params and
    artifacts."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    trial_run = client.get_run(data.trials["run_id"].iloc[0]).data
    trial, study_run = trial_run.tags, data.tags
    assert trial[tags.TAG_ROLE] == tags.ROLE_TRIAL and study_run[tags.TAG_ROLE] == tags.ROLE_STUDY
    assert trial[tags.TAG_PARENT] == data.study_run_id
    assert trial[tags.TAG_NAME] == study_run[tags.TAG_NAME] == "contract"
    assert trial[tags.TAG_TRIAL] == data.trials["trial_id"].iloc[0]
    assert trial[tags.TAG_STATUS] == study_run[tags.TAG_STATUS] == "finished"
    assert trial[tags.TAG_STATUS] in tags.STATUSES
    assert trial[tags.TAG_TASK] == study_run[tags.TAG_TASK] == "working_memory"
    assert {tags.TAG_SWEPT, tags.TAG_COMMIT} <= set(study_run)
    # TAG_OBJECTIVES and TAG_VERSIONS are the driver's (`study run`), TAG_MESSAGE a failed
    # trial's (tests/study_tests cover them); every study tag written here is a declared one
    assert {k for k in {**trial, **study_run} if k.startswith("study.")} <= set(tags.TAGS)
    assert set(READ_NAMES["params"]) <= set(trial_run.params)
    listed = {f.path for f in client.list_artifacts(data.trials["run_id"].iloc[0])}
    assert {artifacts.ARTIFACT_CURVES, artifacts.ARTIFACT_SEEDS} <= listed
    assert artifacts.ARTIFACT_SPEC in {f.path for f in client.list_artifacts(data.study_run_id)}


# ---- one owner: analysis imports only study.contract, study.contract only itself -------------


def _imported(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a source file, anywhere in it (functions and
    TYPE_CHECKING blocks too); relative imports resolved against the file's package under
    `root`; ``from a.b import c`` gives ``a.b.c`` (c may be a module or a name in a.b)."""
    parts = path.relative_to(root).with_suffix("").parts
    package = list(parts[:-1])  # a package's __init__ is in the package it defines
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out += [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return out


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def boundary_violations(root: Path) -> list[str]:
    """Imports that break the contract's boundary, as ``path:line: name``: a module of
    ``analysis`` importing ``study`` other than ``study.contract``; a module of ``study.contract``
    importing torch or ``study`` outside ``study.contract``; a module of ``study`` importing
    ``analysis``."""
    bad = []
    for path in sorted(root.glob("**/*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] not in ("analysis", "study"):
            continue
        for line, name in _imported(path, root):
            wrong = (
                (
                    rel.parts[0] == "analysis"
                    and _within(name, "study")
                    and not _within(name, "study.contract")
                )
                or (
                    rel.parts[:2] == ("study", "contract")
                    and (
                        _within(name, "torch")
                        or (_within(name, "study") and not _within(name, "study.contract"))
                    )
                )
                or (rel.parts[0] == "study" and _within(name, "analysis"))
            )
            if wrong:
                bad.append(f"{rel}:{line}: {name}")
    return bad


def test_analysis_imports_only_the_contract_of_study_and_the_contract_stands_alone():
    assert boundary_violations(REPO) == []


def test_the_boundary_check_finds_each_kind_of_crossing(tmp_path):
    files = {
        "analysis/ok.py": "from study.contract.outcomes import onset\n"
        "from study import contract\n",
        "analysis/sub/bad.py": "def f():\n    from study.core import mi\n",
        "analysis/star.py": "from study import *\nimport study\n",
        "study/contract/ok.py": "from . import names\nfrom .outcomes import onset\n",
        "study/contract/heavy.py": "import torch.nn\n",
        "study/contract/up.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from ..spec import config\n",
        "study/core/back.py": "from analysis.runs import load_study\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert boundary_violations(tmp_path) == [
        "analysis/star.py:1: study.*",
        "analysis/star.py:2: study",
        "analysis/sub/bad.py:2: study.core.mi",
        "study/contract/heavy.py:1: torch.nn",
        "study/contract/up.py:3: study.spec.config",
        "study/core/back.py:1: analysis.runs.load_study",
    ]


def test_importing_the_contract_loads_neither_torch_nor_the_rest_of_study():
    # The source check above cannot see what `study/__init__.py` pulls in at run time.
    modules = sorted(
        f"study.contract.{p.stem}"
        for p in (REPO / "study" / "contract").glob("*.py")
        if p.stem != "__init__"
    )
    code = (
        f"import sys; import {', '.join(modules)}; print(sorted(m for m in sys.modules if "
        "m.split('.')[0] == 'torch' or (m.startswith('study.') "
        "and not m.startswith('study.contract'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]" and len(modules) >= 5
