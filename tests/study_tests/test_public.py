"""The public face of `study`: every advertised name resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import study


def test_every_public_name_resolves_to_its_owner():
    for name in study.__all__:
        obj = getattr(study, name)
        assert obj is not None
    assert study.train.__module__ == "study.training.loop"
    assert study.TrialConfig.__module__.startswith("study.spec")
    assert study.run_trial.__module__ == "study.service.runner"


def test_unknown_name_is_an_attribute_error():
    try:
        study.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("study.no_such_thing resolved")


def test_importing_study_and_its_contract_loads_no_torch():
    code = (
        "import sys, study, study.contract.outcomes, study.contract.names; "
        "heavy = [m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
