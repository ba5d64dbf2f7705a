"""Tests of study/train.py and study/summary.py: reporting, exact resume, divergence, outputs."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from study.spec import load_trial_config
from study.service.summary import summarize, write_outputs
from study.training.loop import Diverged, RecordingReporter, Trainer, metric_names, train

TINY = {
    "task.batch": 4, "task.wm.transient": 20, "task.wm.segment": 40, "network.hidden": 12,
    "critic.width": 16, "critic.steps": 2, "critic.pretrain_steps": 2, "mi.pairs": 0,
    "train.epochs": 6, "train.eval_every": 2, "train.eval_batch": 4,
    "train.checkpoint_every": 2, "train.snapshot_every": 2, "train.threads": 1, "seeds": 2,
    "train.device": "cpu",
}


def same(a, b) -> bool:
    """Metric dicts equal value for value, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        np.array_equal(np.array(a[k]), np.array(b[k]), equal_nan=True) for k in a)


def tiny(**over):
    return load_trial_config(overrides={**TINY, **over})


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


def test_train_resume_gives_the_uninterrupted_curves(tmp_path):
    cfg = tiny()
    full = train(cfg, checkpoint_dir=tmp_path / "full")

    class Kill(RecordingReporter):
        def report(self, record, checkpoint):
            super().report(record, checkpoint)
            if record.epoch == 2:
                raise KeyboardInterrupt  # the process dies right after the epoch-2 checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(cfg, reporter=Kill(), checkpoint_dir=tmp_path / "cut")
    resumed_rep = RecordingReporter()
    resumed = train(cfg, reporter=resumed_rep, checkpoint_dir=tmp_path / "cut",
                    resume_from=tmp_path / "cut")
    assert [r.epoch for r in resumed_rep.records] == [4, 6]  # only the new evaluations
    assert [r.epoch for r in resumed.history] == [0, 2, 4, 6]
    for a, b in zip(full.history, resumed.history):
        assert same(a.metrics, b.metrics)  # bit for bit, every metric of every seed


def test_train_resume_rejects_a_different_config(tmp_path):
    train(tiny(**{"train.epochs": 2}), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"different config \(mi.weight: 0.1 -> 0.3"):
        train(tiny(**{"mi.weight": 0.3}), resume_from=tmp_path)
    # more epochs is a legal continuation
    more = train(tiny(**{"train.epochs": 4}), resume_from=tmp_path)
    assert [r.epoch for r in more.history] == [0, 2, 4]


def test_train_same_seed_same_metrics():
    a = train(tiny(**{"train.epochs": 3, "train.eval_every": 1, "train.checkpoint_every": 1}))
    b = train(tiny(**{"train.epochs": 3, "train.eval_every": 1, "train.checkpoint_every": 1}))
    c = train(tiny(**{"train.epochs": 3, "train.eval_every": 1, "train.checkpoint_every": 1,
                      "seed": 5}))
    assert all(same(x.metrics, y.metrics) for x, y in zip(a.history, b.history))
    assert not all(same(x.metrics, y.metrics) for x, y in zip(a.history, c.history))


def test_train_member_initialisation_does_not_depend_on_population_size():
    # member i is initialised from seed + i whatever S is (DESIGN.md §3, population batching)
    big = Trainer(tiny(seeds=3, seed=10))
    small = Trainer(tiny(seeds=1, seed=12))
    assert torch.equal(big.net.w_rec[2], small.net.w_rec[0])
    assert torch.equal(big.mi.critic.w_a[2], small.mi.critic.w_a[0])


def test_train_divergence_stops_with_a_message_and_keeps_history():
    # a learning rate of 1e37 sends the weights to ~1e37, so the L2 term overflows to inf
    cfg = tiny(**{"optim.lr": 1e37, "optim.kind": "adam", "optim.clip_norm": None,
                  "train.eval_every": 1, "train.checkpoint_every": 1, "train.snapshot_every": 0})
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


def test_summarize_finals_success_and_onsets():
    cfg = tiny(**{"train.final_window": 2})
    from study.training.loop import EvalRecord

    epochs = np.arange(0, 200, 10)
    sig = 1 / (1 + np.exp(-(epochs - 55) / 5))  # q_func half-way between evaluations 50 and 60
    late = 1 / (1 + np.exp(-(epochs - 135) / 5))  # q_struct between 130 and 140
    hist = []
    for i, e in enumerate(epochs):
        m = {k: (0.0, 0.0) for k in metric_names(cfg)}
        m["accuracy"] = (0.95, 0.5)
        m["q_func"] = (0.4 * sig[i], 0.0)
        m["q_struct"] = (0.2 * late[i], 0.0)
        # z-scores: first >= 3 (of 10) three evaluations in a row from epoch 60 and 140
        m["q_func_z"] = (10 * sig[i], 0.0)
        m["q_struct_z"] = (10 * late[i], 0.0)
        hist.append(EvalRecord(int(e), m, 0.0))
    s = summarize(cfg, hist, [7, 8])
    assert list(s.curves.columns[:3]) == ["seed", "seed_value", "epoch"]
    assert len(s.curves) == 2 * len(epochs)
    seed0, seed1 = s.seeds.iloc[0], s.seeds.iloc[1]
    assert seed0["seed_value"] == 7 and bool(seed0["success"]) and not bool(seed1["success"])
    assert bool(seed0["differentiated"])  # success and final q_struct 0.2 > 0.1
    assert seed0["t_func"] == 60 and seed0["t_struct"] == 140 and seed0["lag"] == 80
    assert not bool(seed1["func_emerged"]) and math.isnan(seed1["t_func"])
    assert s.metrics["final.success_rate"] == 0.5
    assert s.metrics["final.differentiated_rate"] == 0.5
    assert s.metrics["t_func"] == 60 and s.metrics["lag"] == 80  # medians over emerged seeds
    assert s.metrics["n_func_emerged"] == 1 and s.metrics["n_func_first"] == 1
    assert s.metrics["n_neither"] == 1 and s.metrics["n_struct_first"] == s.metrics["n_tie"] == 0
    assert seed0["first"] == "function" and seed1["first"] == "neither"
    assert seed1["t_func_censor"] == 170  # last start with 3 evaluations: 170, 180, 190
    assert s.metrics["t_func_half"] == 60  # descriptive half-rise of the raw q_func
    assert s.metrics["final.q_func"] == pytest.approx(np.median([0.4 * sig[-2:].mean(), 0.0]))


def test_write_outputs_files(tmp_path):
    res = train(tiny(**{"train.epochs": 2}))
    s = summarize(res.config, res.history, res.seed_values)
    paths = write_outputs(tmp_path, res.config, s)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in paths)
    assert names == ["config.yaml", "curves.parquet", "figures/q_curves.png", "seeds.parquet"]
    curves = pd.read_parquet(tmp_path / "curves.parquet")
    assert set(curves["epoch"]) == {0, 2} and set(curves["seed"]) == {0, 1}
    reloaded = load_trial_config(tmp_path / "config.yaml")
    assert reloaded == res.config


def test_train_module_does_not_import_ray_or_mlflow():
    code = ("import sys, study.training.loop, study.service.summary; "
            "print(sorted(m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
