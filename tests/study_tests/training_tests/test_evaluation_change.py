"""The weight-change, GRU-block and lesion sections of study/training/evaluation.py, through
Trainer.evaluate, against ground truth: weights set to a known change (closed forms for the
block contrast and the decomposition), networkx for the GRU blocks' Q, lesions against the
intact evaluation of networks given the lesioned weights, R² on the scored steps in NumPy."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch

from study.contract.names import GRU_BLOCK_METRICS, WEIGHT_CHANGE_METRICS, lesion_metrics
from study.spec import load_trial_config
from study.training import Trainer, train

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
    "train.eval_batch": 8,
    "train.threads": 1,
    "train.checkpoint_every": 2,
    "train.snapshot_every": 0,
    "train.null_partitions": 50,
    "train.communities": False,
    "train.heldout_mi_every": 0,
    "seeds": 2,
    "train.device": "cpu",
}
GRU = {"network.kind": "gru", "network.noise": 0.0}
CHAOS = {
    **GRU,
    "task.name": "chaos_separation",
    "task.chaos.n_train": 8,
    "task.chaos.n_test": 4,
    "task.chaos.n_samples": 300,
    "task.chaos.drop": 100,
    "task.chaos.washout": 20,
    "train.eval_batch": 4,
    "train.corr_pooling": "per_sequence",
}


def tiny(**over) -> Trainer:
    return Trainer(load_trial_config(overrides={**TINY, **over}))


def _between(trainer: Trainer) -> torch.Tensor:
    lab = torch.as_tensor(trainer.labels)
    return lab[:, None] != lab[None, :]


def _nx_q(a: np.ndarray, labels: np.ndarray) -> float:
    graph = nx.from_numpy_array(a)
    comms = [set(np.flatnonzero(labels == k).tolist()) for k in range(labels.max() + 1)]
    return nx.community.modularity(graph, comms, weight="weight")


def test_every_new_metric_is_evaluated_in_order():
    trainer = tiny()
    names = trainer.metric_names
    for group in (WEIGHT_CHANGE_METRICS, GRU_BLOCK_METRICS, lesion_metrics("accuracy")):
        assert set(group) <= set(names)
    assert tuple(trainer.evaluate()) == names


def test_pruned_between_blocks_give_the_closed_form_statistics():
    trainer = tiny()
    between = _between(trainer)
    w0 = trainer.w_rec0.clone()
    with torch.no_grad():
        trainer.net.w_rec.copy_(torch.where(between, 0.5 * w0, w0))
    res = trainer.evaluate()
    mask = between.numpy()
    for s in range(2):
        want = 0.5 * np.abs(w0[s].numpy()[mask]).mean()  # d: 0 within, −½|W0| between
        assert res["dw_block"][s] == pytest.approx(want, rel=1e-5)
    assert (res["dw_block_z"] > 3).all()  # within grew relative to between
    np.testing.assert_allclose(res["w_between_ratio"], 0.5, rtol=1e-5)
    np.testing.assert_allclose(res["w_between_proj"], 0.5, rtol=1e-5)
    np.testing.assert_allclose(res["w_between_orth"], 0.0, atol=1e-5)
    for part in ("ratio", "proj"):
        np.testing.assert_allclose(res[f"w_within_{part}"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(res["w_within_orth"], 0.0, atol=1e-6)
    for name in GRU_BLOCK_METRICS:  # the leaky RNN has no gate blocks
        assert np.isnan(res[name]).all(), name


def test_at_epoch_zero_nothing_changed():
    res = tiny().evaluate()
    assert (res["dw_block"] == 0).all() and np.isnan(res["dw_block_z"]).all()
    for block in ("within", "between"):
        np.testing.assert_allclose(res[f"w_{block}_ratio"], 1.0, rtol=1e-6)


def test_gru_blocks_are_scored_one_by_one_and_summed():
    trainer = tiny(**GRU)
    n = 12
    between = _between(trainer)
    u0 = trainer.net.u.detach().clone()
    with torch.no_grad():  # only the update gate's between-group block shrinks
        trainer.net.u[:, :, :n] = torch.where(between, 0.5 * u0[:, :, :n], u0[:, :, :n])
    res = trainer.evaluate()
    u = trainer.net.u.detach().double().numpy()
    mask = between.numpy()
    lab = trainer.labels
    for s in range(2):
        blocks = {"update": u[s, :, :n], "reset": u[s, :, n : 2 * n], "cand": u[s, :, 2 * n :]}
        for gate in ("update", "reset"):
            a = np.abs(blocks[gate]) + np.abs(blocks[gate]).T
            np.fill_diagonal(a, 0)
            assert res[f"q_{gate}"][s] == pytest.approx(_nx_q(a, lab), abs=1e-6)
        total = sum(np.abs(b) for b in blocks.values())
        a = total + total.T
        np.fill_diagonal(a, 0)
        assert res["q_gru_sum"][s] == pytest.approx(_nx_q(a, lab), abs=1e-6)
        want = 0.5 * np.abs(u0[s, :, :n].numpy()[mask]).mean()
        assert res["dw_block_update"][s] == pytest.approx(want, rel=1e-5)
        assert res["dw_block_gru_sum"][s] == pytest.approx(want, rel=1e-5)  # others unchanged
    assert np.isfinite(res["q_gru_sum_z"]).all() and (res["dw_block_update_z"] > 3).all()
    assert (res["dw_block_reset"] == 0).all() and (res["dw_block"] == 0).all()
    assert np.isnan(res["dw_block_z"]).all()  # U_h has not changed: no z


def _set_rec(trainer: Trainer, w: torch.Tensor) -> None:
    with torch.no_grad():
        trainer.net.w_rec.copy_(w)


def test_lesions_equal_the_intact_evaluation_of_the_lesioned_weights():
    # W(0) = B0 + C0 and W(t) = B + C (B block-diagonal within, C between): zeroing the
    # between blocks leaves B, resetting them gives B + C0, resetting all gives B0 + C0
    trainer = tiny(**{"train.lesion_every": 1})
    between = _between(trainer)
    gen = torch.Generator().manual_seed(0)
    w0 = trainer.w_rec0.clone()
    trained = w0 + 0.3 * torch.randn(w0.shape, generator=gen)
    _set_rec(trainer, trained)
    res = trainer.evaluate()
    assert torch.equal(trainer.net.w_rec.detach(), trained)  # the training weights untouched
    zero = torch.zeros_like(w0)
    wants = {
        "zero_between": torch.where(between, zero, trained),
        "reset_between": torch.where(between, w0, trained),
        "reset_rec": w0,
    }
    for lesion, weights in wants.items():
        other = tiny()
        _set_rec(other, weights)
        intact = other.evaluate()
        for metric in ("accuracy", "q_func_z"):
            np.testing.assert_allclose(
                res[f"lesion_{lesion}_{metric}"], intact[metric], rtol=1e-6, atol=1e-9
            )
    # a lesion that changes nothing measures the intact network: block-diagonal W(t)
    block_diag = torch.where(between, zero, trained)
    _set_rec(trainer, block_diag)
    res = trainer.evaluate()
    np.testing.assert_array_equal(res["lesion_zero_between_accuracy"], res["accuracy"])
    np.testing.assert_allclose(res["lesion_zero_between_q_func_z"], res["q_func_z"], rtol=1e-6)


def test_gru_lesions_reset_every_recurrent_block():
    trainer = tiny(**GRU, **{"train.lesion_every": 1})
    u0 = trainer.net.u.detach().clone()
    with torch.no_grad():
        trainer.net.u.add_(0.3 * torch.randn(u0.shape, generator=torch.Generator().manual_seed(1)))
    res = trainer.evaluate()
    reset = tiny(**GRU).evaluate()  # the same networks at W(0), on the same fixed batch
    for metric in ("accuracy", "q_func_z"):
        np.testing.assert_allclose(res[f"lesion_reset_rec_{metric}"], reset[metric], rtol=1e-6)
    assert not np.allclose(res["q_func_z"], reset["q_func_z"])  # the change mattered


def test_lesions_are_nan_unless_due_and_never_change_training():
    names = lesion_metrics("accuracy")
    off = train(load_trial_config(overrides=TINY))
    on = train(load_trial_config(overrides={**TINY, "train.lesion_every": 2}))
    assert [r.epoch for r in on.history] == [0, 2, 4]
    for a, b in zip(off.history, on.history):
        for name, values in a.metrics.items():
            if name in names:
                assert np.isnan(values).all()
            else:  # every other curve bit for bit
                assert np.array_equal(values, b.metrics[name], equal_nan=True), name
    due = [r.epoch for r in on.history if not np.isnan(r.metrics[names[0]]).any()]
    assert due == [0, 4]  # evaluation 0, 2 (epoch 4) and the last


def test_r2_is_scored_after_the_washout():
    trainer = tiny(**CHAOS)
    with torch.no_grad():
        trainer.net.u.mul_(0.5)
    res = trainer.evaluate()
    inputs, targets, x0, noise = trainer._batch("eval")  # the fixed batch again
    with torch.no_grad():
        out = trainer.net(inputs, x0, noise, n_transient=trainer.task.transient)
    z, y = out.outputs.double().numpy(), targets.double().numpy()  # (S, T, B, O)
    w = trainer.task.washout
    assert w == 20
    for s in range(2):
        zs, ys = z[s, w:].reshape(-1, z.shape[-1]), y[s, w:].reshape(-1, y.shape[-1])
        r2 = 1 - ((ys - zs) ** 2).sum(0) / ((ys - ys.mean(0)) ** 2).sum(0)
        assert res["r2"][s] == pytest.approx(r2.mean(), rel=1e-5)
        za, ya = z[s].reshape(-1, z.shape[-1]), y[s].reshape(-1, y.shape[-1])
        every_step = 1 - ((ya - za) ** 2).sum(0) / ((ya - ya.mean(0)) ** 2).sum(0)
        assert not math.isclose(res["r2"][s], every_step.mean(), rel_tol=1e-4)
