"""Writes the checkpoints in the layout before the MI estimators kept their own state
(commit 2e622d6 and earlier: MINE's moving average was the buffer `log_ema` of SubgroupMI, in
state["mi"]["module"]), with what that code computed after them.

Run once with that code on the path, e.g. from a checkout of 2e622d6:
    PYTHONPATH=<checkout> python tests/study_tests/checkpoints/make_before_estimator_state.py
Writes, next to this file:
- mi_state_before_estimator_state.pth: per estimator ("mine", "dv") a SubgroupMI state after
  3 critic steps, the data generator's state then, and what the next 3 critic steps, a penalty
  (and its gradient) and a measurement gave;
- trial_before_estimator_state.pth: a MINE trial's checkpoint at epoch 1 and its history when
  run on to epoch 3 without stopping.
"""

import importlib
from pathlib import Path

import numpy as np
import torch

from study.core.mi import SubgroupMI

# the module paths of 2e622d6, before study.spec and study.training re-exported their names
load_trial_config = importlib.import_module("study.spec.config").load_trial_config
NullReporter = importlib.import_module("study.training.loop").NullReporter
train = importlib.import_module("study.training.loop").train

HERE = Path(__file__).resolve().parent
LABELS = np.array([0, 0, 0, 1, 1])  # unequal sides: the b side is padded
KW = dict(
    critic={"width": 8, "depth": 1},
    optim={"kind": "adam", "lr": 1e-2},
    ema_rate=0.2,
    input_noise=0.1,
    seed=3,
)
TRIAL = {
    "task.batch": 4,
    "task.wm.transient": 20,
    "task.wm.segment": 40,
    "network.hidden": 8,
    "critic.width": 8,
    "critic.steps": 2,
    "critic.pretrain_steps": 2,
    "train.epochs": 3,
    "train.eval_every": 1,
    "train.checkpoint_every": 1,
    "train.eval_batch": 4,
    "train.threads": 1,
    "train.snapshot_every": 0,
    "seeds": 2,
    "train.device": "cpu",
    "mi.estimator": "mine",
    "mi.weight": 0.5,
}


def mi_states() -> dict:
    out = {}
    for estimator in ("mine", "dv"):
        est = SubgroupMI(2, LABELS, estimator=estimator, **KW)
        data = torch.Generator().manual_seed(0)
        for _ in range(3):
            est.critic_step(torch.randn(2, 64, 5, generator=data), data)
        state = est.state()
        state = {
            "module": {k: v.clone() for k, v in state["module"].items()},
            "optimizer": state["optimizer"],
        }
        data_state = data.get_state()
        gen = torch.Generator().manual_seed(1)
        steps = torch.stack(
            [est.critic_step(torch.randn(2, 64, 5, generator=data), gen) for _ in range(3)]
        )
        act = torch.randn(2, 64, 5, generator=data, requires_grad=True)
        penalty, _ = est.penalty(act, gen)
        penalty.sum().backward()
        out[estimator] = {
            "state": state,
            "data": data_state,
            "steps": steps,
            "penalty": penalty.detach(),
            "grad": act.grad,
            "measure": est.measure(act.detach(), gen),
            "log_ema": est.log_ema.clone(),
            "w_a": est.critic.w_a.detach().clone(),
        }
    return out


def trial(tmp: Path) -> dict:
    cfg = load_trial_config(overrides=TRIAL)
    kept = {}

    class KeepEpoch1(NullReporter):
        def report(self, record, checkpoint=None):
            if record.epoch == 1:
                kept["checkpoint"] = torch.load(checkpoint, weights_only=True)

    full = train(cfg, reporter=KeepEpoch1(), checkpoint_dir=tmp)
    history = [
        {"epoch": r.epoch, "metrics": {k: list(v) for k, v in r.metrics.items()}}
        for r in full.history
    ]
    return {"checkpoint": kept["checkpoint"], "history": history}


if __name__ == "__main__":
    import tempfile

    torch.save(mi_states(), HERE / "mi_state_before_estimator_state.pth")
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(trial(Path(tmp)), HERE / "trial_before_estimator_state.pth")
