"""Tests of study/training/interventions.py through `train()` and the Trainer: each intervention
does exactly what it says, and nothing before it acts.

- an arm is its control's network bit for bit up to `at` (training is deterministic), and a fork
  from the control's kept checkpoint is the same arm bit for bit, before and after the fork;
- a frozen block is bit-identical from `at` on while the rest trains (leaky RNN and GRU, Adam);
- λ after `at` is the one asked, in the loss term, and a penalty switched on late leaves the
  training stream alone; the structure penalty is c·Σ|W_rec| over the between-group entries;
- a swapped partition's metrics follow the new labels (Newman Q from networkx on the saved
  weights), the designed partition's stay as `<metric>_orig`, the critics follow;
- `func_onset` switches each seed at the evaluation that decides its timing onset
  (study.contract.rise's online rule), never before, and leaves the other seeds their control's
  networks;
- a resumed intervened trial continues bit for bit.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch
from tiny_trial import same, tiny

from study.contract.names import SWAP_TRACKED
from study.contract.rise import timing_onsets
from study.core.partition import groups
from study.training import RecordingReporter, Trainer, read_checkpoint, train
from study.training.interventions import func_onset_confirmed, same_partition, swapped_partition
from study.training.reporting import EvalRecord

FAST = {"train.null_partitions": 20, "train.communities": False, "train.heldout_mi_every": 0}


def cfg(**over):
    return tiny(**{**FAST, **over})


def base_metrics(record, names):
    return {k: record.metrics[k] for k in names}


def per_seed(records, name):
    """(T, S) array of one metric over a history."""
    return np.array([r.metrics[name] for r in records])


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    """The control (λ = 0.1 throughout), keeping its epoch-2 checkpoint for forks."""
    folder = tmp_path_factory.mktemp("control")
    rep = RecordingReporter()
    res = train(cfg(**{"train.keep_checkpoints": [2]}), reporter=rep, checkpoint_dir=folder)
    return res, rep, folder


OFF_AT_2 = {"intervention.at": 2, "intervention.mi_weight": 0.0}


# -- arms share their past --------------------------------------------------------------------


def test_an_arm_is_its_control_bit_for_bit_up_to_at_then_not(control):
    ctrl, _, _ = control
    names = list(ctrl.history[0].metrics)
    arm = train(cfg(**OFF_AT_2))
    assert [r.epoch for r in arm.history] == [0, 2, 4, 6]
    for a, c in zip(arm.history[:2], ctrl.history[:2]):  # epochs 0 and 2: the same network
        assert same(base_metrics(a, names), c.metrics)
    assert not same(base_metrics(arm.history[2], names), ctrl.history[2].metrics)
    assert per_seed(arm.history, "intervened").tolist() == [[0, 0], [1, 1], [1, 1], [1, 1]]


def test_a_fork_equals_its_parent_up_to_the_fork_and_the_unforked_arm_after(control, tmp_path):
    ctrl, _, folder = control
    kept = folder / "checkpoint_2.pt"
    assert read_checkpoint(kept)["epoch"] == 2  # kept, not replaced by epochs 4 and 6
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    rep = RecordingReporter()
    fork = train(
        cfg(**OFF_AT_2, **{"train.init_from": str(kept)}),
        reporter=rep,
        checkpoint_dir=tmp_path / "fork",
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # parent untouched
    assert [r.epoch for r in rep.records] == [4, 6]  # only the fork's own evaluations
    assert [r.epoch for r in fork.history] == [0, 2, 4, 6]
    names = list(ctrl.history[0].metrics)
    for f, c in zip(fork.history[:2], ctrl.history[:2]):
        assert same(base_metrics(f, names), c.metrics)
    assert [f.metrics["intervened"] for f in fork.history[:2]] == [(0.0, 0.0), (1.0, 1.0)]
    unforked = train(cfg(**OFF_AT_2))
    for f, u in zip(fork.history, unforked.history):
        assert same(f.metrics, u.metrics)


# -- freeze ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["leaky", "gru"])
def test_a_frozen_block_is_bit_identical_after_at_while_the_rest_trains(kind):
    rep = RecordingReporter()
    over = {
        "network.kind": kind,
        "optim.kind": "adam",  # momentum: zeroed gradients alone would still move an entry
        "intervention.at": 2,
        "intervention.freeze": ["w_rec_between", "w_in"],
    }
    train(cfg(**over), reporter=rep)
    snaps = dict(rep.snapshots)
    rec, inp = ("w_rec", "w_in") if kind == "leaky" else ("u", "w")
    n = 12
    labels = groups(n, 2)
    between = labels[:, None] != labels[None, :]
    blocks = np.tile(between, (1, snaps[2][rec].shape[-1] // n))  # the GRU: its 3 gate blocks
    for epoch in (4, 6):
        w, w2 = snaps[epoch][rec], snaps[2][rec]
        assert np.array_equal(w[:, blocks], w2[:, blocks])  # frozen: bit for bit
        assert not np.array_equal(w[:, ~blocks], w2[:, ~blocks])  # within-group trains
        assert np.array_equal(snaps[epoch][inp], snaps[2][inp])
        assert not np.array_equal(snaps[epoch]["w_out"], snaps[2]["w_out"])
    assert not np.array_equal(snaps[2][rec][:, blocks], snaps[0][rec][:, blocks])  # until at


def test_frozen_entries_have_no_gradient_and_no_optimiser_state():
    tr = Trainer(
        cfg(**{"optim.kind": "adam", "intervention.at": 1, "intervention.freeze": "w_rec"})
    )
    tr.pretrain_critic()
    tr.train_epoch()  # epoch 1: Adam's m and v of W_rec are non-zero
    state = tr.optimizer.state[[p is tr.net.w_rec for p in tr.optimizer.params].index(True)]
    assert state["m"].abs().sum() > 0
    tr.train_epoch()  # the freeze is applied before this epoch's updates
    assert torch.count_nonzero(state["m"]) == 0  # cleared once, and g = 0 keeps it at 0
    assert torch.count_nonzero(tr.net.w_rec.grad) == 0


# -- λ and the structure penalty ------------------------------------------------------------------


def _loss_parts(tr):
    """One network batch's loss as the step computes it, and its parts recomputed: the task
    MSE, the regulariser and the penalty drawn from the same stream state."""
    inputs, targets, x0, noise = tr._batch("network")
    out = tr.net(inputs, x0, noise, n_transient=tr.task.transient)
    gens = [tr.streams.train_gen] + (
        [tr.interventions.late_gen] if tr.interventions.late_gen else []
    )
    saved = [g.get_state() for g in gens]
    loss = tr.network_loss(out, targets)
    after = [g.get_state() for g in gens]
    for g, s in zip(gens, saved):
        g.set_state(s)
    gen = tr.interventions.late_gen or tr.streams.train_gen
    penalty, _ = tr.mi.penalty(out.rows(), gen, transform=out.mi_transform)
    task = (out.outputs - targets).square().mean(dim=(1, 2, 3))
    moved = [not torch.equal(a, s) for a, s in zip(after, saved)]
    return loss, task + tr._regulariser(), penalty, moved


def _trainer_at(over, epochs):
    tr = Trainer(cfg(**over))
    tr.pretrain_critic()
    for _ in range(epochs):
        tr.train_epoch()
    tr.interventions.begin_epoch(tr)  # what the next epoch does first
    return tr


@pytest.mark.parametrize(
    ("base", "asked", "late"), [(0.1, 0.3, False), (0.1, 0.0, False), (0.0, 0.2, True)]
)
def test_lambda_after_at_is_the_one_asked(base, asked, late):
    over = {"mi.weight": base, "intervention.at": 2, "intervention.mi_weight": asked}
    before = _trainer_at(over, 1)  # epoch 1: not yet
    loss, rest, penalty, _ = _loss_parts(before)
    torch.testing.assert_close(loss, rest + base * penalty, rtol=0, atol=1e-6)
    after = _trainer_at(over, 2)  # from epoch 2 on
    loss, rest, penalty, moved = _loss_parts(after)
    torch.testing.assert_close(loss, rest + asked * penalty, rtol=0, atol=1e-6)
    assert penalty.abs().min() > 0  # the term is there to be weighted
    # a penalty switched on late samples from its own stream: the training stream is the
    # control's; one the base run computes keeps drawing from the training stream
    assert moved == ([False, True] if late else [True])


def test_the_structure_penalty_is_c_times_the_between_group_weights():
    tr = _trainer_at({"mi.weight": 0.0, "structure_penalty.weight": 0.05}, 1)
    loss, rest, _, _ = _loss_parts(tr)
    w = tr.net.w_rec.detach().numpy()
    labels = groups(12, 2)
    between = labels[:, None] != labels[None, :]
    expected = 0.05 * np.abs(w[:, between]).sum(axis=1)
    np.testing.assert_allclose((loss - rest).detach().numpy(), expected, rtol=1e-5)


# -- swap ---------------------------------------------------------------------------------------


def test_the_swapped_partition_keeps_sizes_and_differs():
    for n, k in ((12, 2), (40, 3), (3, 2), (10, 5)):
        labels = groups(n, k)
        new = swapped_partition(labels, seed=7)
        assert np.array_equal(np.bincount(new), np.bincount(labels))
        assert not same_partition(new, labels)
        assert np.array_equal(new, swapped_partition(labels, seed=7))  # from its own stream
    assert same_partition(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))  # renamed only
    assert not same_partition(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))


def _newman_q(w, labels):
    """Newman Q of |W| + |W|ᵀ (zero diagonal) under `labels`, by networkx."""
    a = np.abs(w) + np.abs(w).T
    np.fill_diagonal(a, 0.0)
    graph = nx.from_numpy_array(a)
    parts = [set(np.flatnonzero(labels == g)) for g in np.unique(labels)]
    return nx.community.modularity(graph, parts, weight="weight")


def test_swapped_partition_metrics_follow_the_new_labels():
    rep = RecordingReporter()
    res = train(cfg(**{"intervention.at": 2, "intervention.swap_partition": True}), reporter=rep)
    designed = groups(12, 2)
    new = swapped_partition(designed, seed=0)
    snaps = dict(rep.snapshots)
    for rec in res.history:
        w = snaps[rec.epoch]["w_rec"]
        now = new if rec.epoch > 2 else designed  # the first evaluation after the swap: 4
        for s in range(2):
            assert rec.metrics["q_struct"][s] == pytest.approx(_newman_q(w[s], now), abs=1e-5)
            assert rec.metrics["q_struct_orig"][s] == pytest.approx(
                _newman_q(w[s], designed), abs=1e-5
            )
        if rec.epoch <= 2:  # before the swap the designed partition is the penalised one
            for m in SWAP_TRACKED:
                np.testing.assert_array_equal(rec.metrics[f"{m}_orig"], rec.metrics[m])
    # the critics follow: the terms of the rebuilt penalty are the new groups
    tr = _trainer_at({"intervention.at": 1, "intervention.swap_partition": True}, 1)
    sides = [set(tr.mi.a_index[0].tolist()), set(tr.mi.b_index[0].tolist())]
    assert sides == [set(np.flatnonzero(new == 0)), set(np.flatnonzero(new == 1))]
    assert tr.evaluation.labels is tr.interventions.labels


# -- func_onset ---------------------------------------------------------------------------------


class Rule:  # the `emergence` section's defaults
    z, run = 3.0, 3


def _rises(epochs, midpoints, *, width=1.5, amplitude=12.0, noise=0.3, seed=0):
    """(S, T) q_func_z curves: logistic rises at known midpoints (NaN: a flat curve) plus
    Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.asarray(epochs, float)
    rows = [
        amplitude / (1.0 + np.exp(-(t - m) / width)) if np.isfinite(m) else np.zeros_like(t)
        for m in midpoints
    ]
    return np.array(rows) + rng.normal(0.0, noise, (len(midpoints), t.size))


MIDPOINTS = (8.0, 15.0, 22.0, math.nan)  # three rises at known epochs and a flat curve


def test_func_onset_is_decided_online_by_the_contracts_rule():
    # the decision is study.contract.rise's: at the first evaluation whose past fixes the
    # half-rise onset (its decided_at), never before; the onset it fixes is the true midpoint
    epochs = np.arange(0.0, 41.0)
    z = _rises(epochs, MIDPOINTS)
    offline = timing_onsets(epochs, z, threshold=Rule.z, run=Rule.run)
    online = np.array(
        [func_onset_confirmed(epochs[: k + 1], z[:, : k + 1], Rule) for k in range(epochs.size)]
    )  # (T, S)
    for s, m in enumerate(MIDPOINTS):
        if math.isnan(m):  # a flat curve is never decided
            assert not online[:, s].any() and not offline[s].emerged
            continue
        o = offline[s]
        assert o.status == "onset" and abs(o.epoch - m) <= 1.0  # the known half-rise
        first = int(np.argmax(online[:, s]))
        assert online[first:, s].all() and not online[:first, s].any()
        assert epochs[first] == o.decided_at  # decided when its bounded window is seen
        assert o.decided_at > m + 2 * 1.5  # after the rise is resolved, never at its start


def test_func_onset_switches_each_seed_when_its_onset_is_decided():
    # the Trainer's interventions read q_func_z from its history: fed a known history, each
    # seed switches at the evaluation that decides its onset, and a flat seed never does
    tr = Trainer(cfg(**{"seeds": 4, "intervention.at": "func_onset", "intervention.mi_weight": 0}))
    epochs = np.arange(0.0, 41.0)
    z = _rises(epochs, MIDPOINTS, seed=1)
    decided = [o.decided_at for o in timing_onsets(epochs, z, threshold=Rule.z, run=Rule.run)]
    tr.history = []
    for k, t in enumerate(epochs):
        tr.epoch = int(t)
        out = tr.interventions.evaluate(tr, [], {"q_func_z": torch.as_tensor(z[:, k])})
        on = out["intervened"].cpu().numpy()
        assert on.tolist() == [float(t >= d) for d in decided], t  # NaN: never
        tr.history.append(EvalRecord(int(t), {"q_func_z": tuple(float(v) for v in z[:, k])}, 0.0))
    assert tr.interventions.switch_epoch.tolist() == [
        int(d) if np.isfinite(d) else -1 for d in decided
    ]


def test_func_onset_in_training_switches_only_where_the_rule_decides():
    # a real control and its func_onset arm: the arm's seeds switch exactly where the rule,
    # applied to the control's own history (the arm's, bit for bit, until a switch), decides,
    # and each seed is its control's network up to its switch. (A tiny trial's q_func_z seldom
    # shows a resolved rise in 10 epochs, so this mostly checks that no seed switches early;
    # the test above switches seeds on known rises.)
    over = {
        "seeds": 3,
        "mi.weight": 0.3,
        "train.epochs": 10,
        "train.eval_every": 1,
        "train.checkpoint_every": 1,
        "train.snapshot_every": 0,
        "emergence.run": 1,
    }
    ctrl = train(cfg(**over))
    z = per_seed(ctrl.history, "q_func_z").T  # (S, T)
    epochs = [r.epoch for r in ctrl.history]
    rule = type("Rule", (), {"z": 0.5, "run": 1})
    when = []
    for s in range(z.shape[0]):
        hit = [
            k
            for k in range(len(epochs))
            if func_onset_confirmed(epochs[: k + 1], z[s : s + 1, : k + 1], rule)[0]
        ]
        when.append(hit[0] if hit else None)
    arm = train(
        cfg(
            **over,
            **{"emergence.z": 0.5, "intervention.at": "func_onset", "intervention.mi_weight": 0.0},
        )
    )
    names = list(ctrl.history[0].metrics)
    on = per_seed(arm.history, "intervened")
    last = len(ctrl.history) - 1
    for s, w in enumerate(when):
        w = last + 1 if w is None else w
        assert on[:, s].tolist() == [float(i >= w) for i in range(last + 1)]
        for i in range(min(w, last) + 1):  # seed s is its control's network until its switch
            a = {k: arm.history[i].metrics[k][s] for k in names}
            c = {k: ctrl.history[i].metrics[k][s] for k in names}
            assert same(a, c), (s, i)


# -- resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [2, 4])
def test_an_intervened_trial_resumes_bit_for_bit(cut, tmp_path):
    over = {
        "optim.kind": "adam",
        "intervention.at": 2,
        "intervention.mi_weight": 0.3,
        "intervention.freeze": ["w_rec_within"],
        "intervention.swap_partition": True,
    }
    full = train(cfg(**over))

    class Kill(RecordingReporter):
        def report(self, record, checkpoint):
            super().report(record, checkpoint)
            if record.epoch == cut:  # at the intervention's epoch, or after it acted
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg(**over), reporter=Kill(), checkpoint_dir=tmp_path)
    resumed = train(cfg(**over), checkpoint_dir=tmp_path, resume_from=tmp_path)
    assert [r.epoch for r in resumed.history] == [0, 2, 4, 6]
    for a, b in zip(full.history, resumed.history):
        assert same(a.metrics, b.metrics)
