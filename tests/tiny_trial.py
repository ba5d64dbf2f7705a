"""The tiny working-memory trial that the training and summary tests share (seconds on a CPU).

Importable from every test folder, like cluster_helpers (tests/ is on sys.path: its conftest).
"""

from __future__ import annotations

import numpy as np

from study.spec import load_trial_config

TINY = {
    "task.batch": 4,
    "task.wm.transient": 20,
    "task.wm.segment": 40,
    "network.hidden": 12,
    "critic.width": 16,
    "critic.steps": 2,
    "critic.pretrain_steps": 2,
    "mi.pairs": 0,
    "train.epochs": 6,
    "train.eval_every": 2,
    "train.eval_batch": 4,
    "train.checkpoint_every": 2,
    "train.snapshot_every": 2,
    "train.threads": 1,
    "seeds": 2,
    "train.device": "cpu",
}


def same(a, b) -> bool:
    """Metric dicts equal value for value, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        np.array_equal(np.array(a[k]), np.array(b[k]), equal_nan=True) for k in a
    )


def tiny(**over):
    return load_trial_config(overrides={**TINY, **over})
