"""Tests of study/service/summary.py: finals, success and onsets of a history, and the
output files of a trained tiny trial."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from tiny_trial import tiny

from study.service.summary import summarize, write_outputs
from study.spec import load_trial_config
from study.training import metric_names, train


def test_summarize_finals_success_and_onsets():
    cfg = tiny(**{"train.final_window": 2})
    from study.training import EvalRecord

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
