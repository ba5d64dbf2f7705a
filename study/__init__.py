"""mistudy: RNNs trained while the mutual information between subgroups of their units is
minimised, and the studies that map when functional and structural modularity emerge.

The public face: what users (scripts, notebooks) import, by layer. Names load lazily, so
``import study`` costs nothing and ``import study.contract`` (what ``analysis`` reads) never
pulls in torch, Ray or MLflow.

- spec: ``TrialConfig``, ``load_trial_config``, ``trial_config_from_dict``, ``load_study``,
  ``Study``, ``ConfigError``;
- training: ``train``, ``Trainer``, ``TrainResult``, ``EvalRecord``, ``RecordingReporter``,
  ``read_checkpoint``;
- service: ``run_trial`` (one trial with MLflow tracking), ``run_study`` (Ray Tune + Optuna);
- contract: ``contract`` (run-data names and outcome rules shared with ``analysis``).

Layers (one-way imports): contract <- spec <- core <- training <- service <- __main__.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ConfigError",
    "EvalRecord",
    "RecordingReporter",
    "Study",
    "TrainResult",
    "Trainer",
    "TrialConfig",
    "contract",
    "load_study",
    "load_trial_config",
    "read_checkpoint",
    "run_study",
    "run_trial",
    "train",
    "trial_config_from_dict",
]

_OWNERS = {
    "ConfigError": "study.spec",
    "Study": "study.spec",
    "TrialConfig": "study.spec",
    "load_study": "study.spec",
    "load_trial_config": "study.spec",
    "trial_config_from_dict": "study.spec",
    "EvalRecord": "study.training",
    "RecordingReporter": "study.training",
    "TrainResult": "study.training",
    "Trainer": "study.training",
    "read_checkpoint": "study.training",
    "train": "study.training",
    "run_trial": "study.service.runner",
    "run_study": "study.service.driver",
}


def __getattr__(name: str) -> Any:
    if name == "contract":
        return importlib.import_module("study.contract")
    if name in _OWNERS:
        return getattr(importlib.import_module(_OWNERS[name]), name)
    raise AttributeError(f"module 'study' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
