"""A real adaptive search for the report's tests: an Optuna TPE ask/tell loop over λ
(log-uniform), K and the learning rate (log-uniform), each point a tiny working-memory trial
trained in-process by the real trial runner (``study.service.runner.run_trial``) into a real
MLflow SQLite store, without Ray. About a second a trial on one core.

It is the study the Tune driver would write (a study run with its tags and spec, one child run
per trial with its params, curves, seeds and summary), made without Ray so that 60 trials fit
in a CI budget; the driver itself is tested by the service tests.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

SWEPT = ("mi.weight", "partition.groups", "optim.lr")
LAMBDA_RANGE = (1e-3, 1.0)
LR_RANGE = (1e-3, 1e-2)
# the tiny trial of tests/tiny_trial.py, cheaper still: few critic steps for the held-out MI,
# 20 random partitions for the z-scores, no Leiden communities, one weight snapshot
TRIAL = {
    "task.batch": 4,
    "task.wm.transient": 20,
    "task.wm.segment": 40,
    "network.hidden": 12,
    "critic.width": 16,
    "critic.steps": 2,
    "critic.pretrain_steps": 2,
    "mi.pairs": 0,
    "mi.heldout.steps": 5,
    "mi.heldout.batch": 32,
    "mi.heldout.width": 8,
    "train.epochs": 6,
    "train.eval_every": 2,
    "train.eval_batch": 4,
    "train.checkpoint_every": 6,
    "train.snapshot_every": 0,
    "train.threads": 1,
    "train.null_partitions": 20,
    "train.communities": False,
    "train.heldout_mi_every": 100,
    "train.device": "cpu",
    "seeds": 2,
}
SPEC = """name: {name}
task: working_memory
sampler: {{name: tpe, seed: 0}}
search:
  mi.weight: {{low: 0.001, high: 1.0, log: true}}
  partition.groups: {{values: [2, 3]}}
  optim.lr: {{low: 0.001, high: 0.01, log: true}}
objectives:
  - {{metric: final.q_func_z, direction: maximize}}
"""


def build_adaptive_study(root: Path, name: str = "tpe-adaptive", n_trials: int = 60) -> str:
    """Run the search into ``root/mlflow.db``; returns its tracking URI."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from study.service.runner import TrialRun, run_trial
    from study.service.tracking import StudyTracker, TrialTracker
    from study.spec import load_trial_config

    for noisy in ("mlflow", "alembic", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = StudyTracker(uri, name, artifact_root=root / "artifacts")
    parent = tracker.start(
        tags={
            "study.swept": json.dumps(list(SWEPT)),
            "study.task": "working_memory",
            "study.objectives": json.dumps(
                [{"metric": "final.q_func_z", "direction": "maximize"}]
            ),
        },
        spec_text=SPEC.format(name=name),
    )
    space = {
        "mi.weight": FloatDistribution(*LAMBDA_RANGE, log=True),
        "partition.groups": CategoricalDistribution([2, 3]),
        "optim.lr": FloatDistribution(*LR_RANGE, log=True),
    }
    search = optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{root / 'optuna.db'}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10),
    )
    for i in range(n_trials):
        trial = search.ask(space)
        cfg = load_trial_config(overrides={**TRIAL, **trial.params})
        trial_id = f"trial_{i:05d}"
        run = TrialRun(
            cfg,
            root / "trials" / trial_id,
            TrialTracker(
                uri,
                tracker.experiment_id,
                parent,
                trial_id,
                study_name=name,
                task="working_memory",
                params=cfg.flat(),
            ),
        )
        _, summary = run_trial(run, checkpoint_dir=None)
        value = summary.metrics.get("final.q_func_z", math.nan)
        search.tell(trial, value if math.isfinite(value) else -1e6)
    tracker.finish("finished")
    return uri
