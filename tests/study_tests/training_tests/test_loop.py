"""Tests of study/training/loop.py: `train()` reports every evaluation, stops on divergence
with its history, trains a single group without MI, and imports neither Ray nor MLflow."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from tiny_trial import tiny

from study.training import Diverged, RecordingReporter, Trainer, metric_names, train


def test_train_reports_every_evaluation_with_all_metrics(tmp_path):
    rep = RecordingReporter()
    res = train(tiny(), reporter=rep, checkpoint_dir=tmp_path)
    assert res.status == "finished" and res.epochs_done == 6
    assert [r.epoch for r in rep.records] == [0, 2, 4, 6]
    assert [e for e, _ in rep.checkpoints] == [0, 2, 4, 6]
    assert [e for e, _ in rep.snapshots] == [0, 2, 4, 6]
    names = metric_names(tiny())
    for rec in rep.records:
        assert tuple(rec.metrics) == names
        assert all(len(v) == 2 for v in rec.metrics.values())  # one value per seed
        for key in ("task_loss", "accuracy", "mi", "mi_gauss", "q_func", "q_struct"):
            assert all(math.isfinite(x) for x in rec.metrics[key]), key
        assert all(isinstance(x, float) for v in rec.metrics.values() for x in v)
    assert set(rep.snapshots[0][1]) >= {"w_in", "w_rec", "w_out"}
    assert rep.snapshots[0][1]["w_rec"].shape == (2, 12, 12)


def test_train_divergence_stops_with_a_message_and_keeps_history():
    # a learning rate of 1e37 sends the weights to ~1e37, so the L2 term overflows to inf
    cfg = tiny(
        **{
            "optim.lr": 1e37,
            "optim.kind": "adam",
            "optim.clip_norm": None,
            "train.eval_every": 1,
            "train.checkpoint_every": 1,
            "train.snapshot_every": 0,
        }
    )
    rep = RecordingReporter()
    res = train(cfg, reporter=rep)
    assert res.status == "diverged"
    assert "not finite at epoch 2" in res.message
    assert "seed(s) [0, 1] of 2" in res.message and "optim.lr=1e+37" in res.message
    assert [r.epoch for r in res.history] == [0, 1]  # what was recorded is kept
    assert all(math.isfinite(x) for x in res.history[0].metrics["task_loss"])


def test_trainer_raises_diverged_on_non_finite_critic_estimate():
    tr = Trainer(tiny())
    with torch.no_grad():
        tr.net.w_rec.fill_(float("nan"))
    with pytest.raises(Diverged, match=r"MI estimate \(critic step\) is not finite"):
        tr.pretrain_critic()


def test_train_without_mi_penalty_and_single_group():
    res = train(tiny(**{"partition.groups": 1, "mi.weight": 0.0, "train.epochs": 2}))
    rec = res.history[-1]
    assert all(math.isnan(x) for x in rec.metrics["mi"])
    # one community holding every unit: Newman Q is exactly 0 (e_cc = a_c = 1)
    assert all(abs(x) < 1e-9 for x in rec.metrics["q_func"])
    assert res.status == "finished"


def test_train_module_does_not_import_ray_or_mlflow():
    code = (
        "import sys, study.training.loop, study.service.summary; "
        "print(sorted(m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
