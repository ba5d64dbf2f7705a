"""Tests of study/training/evaluation.py, its modularity section through Trainer.evaluate:
z-scores, ΔW, communities, GRU gates, W_rec(0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from study.contract.names import MODULARITY_METRICS
from study.core import modularity
from study.spec import ConfigError, load_trial_config
from study.training import Trainer

TINY = {
    "task.batch": 4,
    "task.wm.transient": 20,
    "task.wm.segment": 40,
    "network.hidden": 12,
    "critic.width": 16,
    "critic.steps": 2,
    "critic.pretrain_steps": 2,
    "mi.pairs": 0,
    "train.epochs": 4,
    "train.eval_every": 2,
    "train.eval_batch": 4,
    "train.threads": 1,
    "train.checkpoint_every": 2,
    "train.snapshot_every": 0,
    "train.null_partitions": 50,
    "seeds": 2,
    "train.device": "cpu",
}
CONTRACT = (
    "q_func_z",
    "q_struct_z",
    "q_struct_delta",
    "q_struct_delta_z",
    "nmi_func",
    "nmi_struct",
    "q_func_found",
    "q_struct_found",
    "q_update_z",
    "q_reset_z",
)


def tiny(**over) -> Trainer:
    return Trainer(load_trial_config(overrides={**TINY, **over}))


def test_leaky_evaluation_has_every_contract_metric():
    trainer = tiny()
    assert set(CONTRACT) <= set(MODULARITY_METRICS) <= set(trainer.metric_names)
    res = trainer.evaluate()
    for name in (
        "q_func_z",
        "q_struct_z",
        "nmi_func",
        "nmi_struct",
        "q_func_found",
        "q_struct_found",
    ):
        assert np.isfinite(res[name]).all(), name
    # before any update ΔW = 0: its Q is undefined; the leaky network has no gates
    for name in ("q_struct_delta", "q_struct_delta_z", "q_update_z", "q_reset_z"):
        assert np.isnan(res[name]).all(), name
    assert "eval.modularity" in trainer.timings


def test_weight_change_metrics_follow_the_initial_weights():
    trainer = tiny()
    w0 = trainer.net.recurrent_weights().detach().clone()
    trainer.train_epoch()
    trainer.train_epoch()
    torch.testing.assert_close(trainer.w_rec0, w0)  # W_rec(0) is kept, not the current W
    res = trainer.evaluate()
    delta = modularity.weight_change(trainer.net.recurrent_weights().detach(), w0)
    want = modularity.modularity(delta, trainer.labels).double().numpy()
    np.testing.assert_allclose(res["q_struct_delta"], want, rtol=1e-6)
    assert np.isfinite(res["q_struct_delta_z"]).all()


def test_z_scores_use_the_trials_fixed_null_partitions():
    trainer = tiny()
    parts = trainer.null_partitions
    assert parts.shape == (50, 12)
    assert np.array_equal(parts, tiny().null_partitions)  # a function of the seed only
    assert not np.array_equal(parts, tiny(seed=1).null_partitions)
    res = trainer.evaluate()
    adj = modularity.structural_adjacency(trainer.net.recurrent_weights().detach())
    want = modularity.modularity_zscore(adj, trainer.labels, parts).double().numpy()
    np.testing.assert_allclose(res["q_struct_z"], want, rtol=1e-6)


def test_gru_gate_blocks_are_scored():
    trainer = tiny(**{"network.kind": "gru", "network.noise": 0.0})
    res = trainer.evaluate()
    u = trainer.net.u.detach()
    n = 12
    for gate, block in (("update", u[:, :, :n]), ("reset", u[:, :, n : 2 * n])):
        want = (
            modularity.modularity_zscore(
                modularity.structural_adjacency(block), trainer.labels, trainer.null_partitions
            )
            .double()
            .numpy()
        )
        np.testing.assert_allclose(res[f"q_{gate}_z"], want, rtol=1e-6)
    # the structural graph of the GRU is its candidate block U_h
    torch.testing.assert_close(trainer.w_rec0, u[:, :, 2 * n :])


def test_communities_can_be_switched_off():
    res = tiny(**{"train.communities": False}).evaluate()
    for name in ("nmi_func", "nmi_struct", "q_func_found", "q_struct_found"):
        assert np.isnan(res[name]).all()
    assert np.isfinite(res["q_func_z"]).all()


def test_checkpoint_carries_the_initial_weights():
    trainer = tiny()
    trainer.train_epoch()
    state = trainer.state_dict()
    torch.testing.assert_close(state["w_rec0"], trainer.w_rec0)
    other = tiny()
    other.w_rec0 = torch.zeros_like(other.w_rec0)
    other.load_state_dict(state)
    torch.testing.assert_close(other.w_rec0, trainer.w_rec0)
    assert not torch.equal(other.w_rec0, other.net.recurrent_weights().detach())
    # older checkpoints lack the key: the seeded initialisation has rebuilt W_rec(0) already
    old = {k: v for k, v in state.items() if k != "w_rec0"}
    fresh = tiny()
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.w_rec0, trainer.w_rec0)


def test_single_group_gives_nan_nmi_and_z():
    res = tiny(**{"partition.groups": 1, "mi.weight": 0.0}).evaluate()
    for name in ("nmi_func", "nmi_struct", "q_func_z", "q_struct_z"):
        assert all(math.isnan(v) for v in res[name]), name


def test_too_few_null_partitions_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train\.null_partitions.*greater than or equal to 2"):
        load_trial_config(overrides={"train.null_partitions": 1})


def test_fixed_evaluation_batch_repeats_exactly_and_leaves_training_alone():
    fixed, fresh = tiny(), tiny(**{"train.eval_fixed": False})  # fixed is the default
    a, b = fixed.evaluate(), fixed.evaluate()
    for name in ("q_func", "q_func_z", "accuracy", "task_loss"):
        np.testing.assert_array_equal(a[name], b[name])
    c, d = fresh.evaluate(), fresh.evaluate()
    assert not np.array_equal(c["q_func"], d["q_func"])  # a fresh batch each time
    for t in (fixed, fresh):
        t.train_epoch()
    torch.testing.assert_close(
        fixed.net.recurrent_weights(), fresh.net.recurrent_weights(), rtol=0, atol=0
    )  # evaluation streams never reach training
    assert not np.array_equal(fixed.evaluate()["q_func"], a["q_func"])  # the weights moved
