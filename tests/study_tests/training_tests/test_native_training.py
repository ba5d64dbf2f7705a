"""The training loop on the compiled kernels against the same loop on its torch code.

STUDY_NATIVE switches between them in-process (read on every call). The data of a batch
(inputs, targets, initial states, noise) must be equal bit for bit, the generator left in the
same state; a network step's and a critic step's gradients equal to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from study.core import _native
from study.spec import load_trial_config
from study.training.loop import Trainer

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(
    _native.load("kernels") is None or _native.load("rng") is None,
    reason="no compiled kernels here (no C++ compiler?)",
)

WM = (
    "cpu-wm",
    {
        "seeds": 3,
        "network.hidden": 12,
        "partition.groups": 3,
        "task.wm.n_bits": "groups",
        "task.wm.transient": 20,
        "task.wm.segment": 40,
        "task.batch": 5,
        "critic.width": 32,
        "mi.pairs": 64,
    },
)
SEP = (
    "cpu-separation",
    {
        "seeds": 2,
        "network.hidden": 8,
        "task.chaos.n_samples": 60,
        "task.chaos.drop": 20,
        "task.chaos.washout": 4,
        "task.batch": 3,
        "task.chaos.n_train": 6,
        "task.chaos.n_test": 4,
        "critic.width": 16,
        "mi.pairs": 50,
        "train.eval_batch": 4,
    },
)


def _trainer(case, native: str, monkeypatch) -> Trainer:
    monkeypatch.setenv("STUDY_NATIVE", native)
    preset, over = case
    return Trainer(load_trial_config(REPO / "search_spaces" / f"{preset}.yaml", over))


@pytest.mark.parametrize("purpose", ["network", "critic", "eval"])
def test_batches_are_identical(purpose, monkeypatch, tmp_path):
    """The compiled draws and task signals give the torch code's batch, bit for bit."""
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path))
    batches, states = [], []
    for native in ("0", "1"):
        tr = _trainer(WM, native, monkeypatch)
        batches.append(tr._batch(purpose))
        states.append(tr.streams.train_gen.get_state())
    for a, b in zip(*batches):
        assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(*states)


def _gradients(tr: Trainer, native: str, monkeypatch) -> list[torch.Tensor]:
    """One network step's gradients (task, regulariser, penalty) from the trainer's current
    state and streams, which are restored afterwards, so both codes see the same step."""
    monkeypatch.setenv("STUDY_NATIVE", native)
    state = tr.streams.state()
    step = tr.optimizer.step
    tr.optimizer.step = lambda: None  # keep the weights: only the gradients are compared
    try:
        tr._network_step()
    finally:
        tr.optimizer.step = step
        tr.streams.load_state(state)
    return [p.grad.clone() for p in tr.net.parameters()]


@pytest.mark.parametrize("case", [WM, SEP], ids=["leaky", "gru"])
def test_network_step_gradients_match_torch(case, monkeypatch, tmp_path):
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path))
    tr = _trainer(case, "0", monkeypatch)
    tr.pretrain_critic()  # a trained critic: a non-trivial penalty gradient
    torch_grads = _gradients(tr, "0", monkeypatch)
    native_grads = _gradients(tr, "1", monkeypatch)
    for a, b in zip(torch_grads, native_grads, strict=True):
        assert (a - b).norm() <= 1e-4 * a.norm() + 1e-9


@pytest.mark.parametrize("case", [WM, SEP], ids=["leaky", "gru"])
def test_critic_step_matches_torch(case, monkeypatch, tmp_path):
    """One critic step from the same state and streams: the measured values and the critic's
    gradients agree to float rounding (not the updated weights: RMSprop's and Adam's first
    steps divide by the gradient's own scale, so a near-zero entry's rounding decides its sign)."""
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path))
    tr = _trainer(case, "0", monkeypatch)
    tr.mi.optimizer.step = lambda: None  # keep the weights: compare gradients
    streams = tr.streams.state()
    values, grads = [], []
    for native in ("0", "1"):
        monkeypatch.setenv("STUDY_NATIVE", native)
        tr.streams.load_state(streams)
        values.append(tr._critic_round(1))
        grads.append([p.grad.clone() for p in tr.mi.critic.parameters()])
    assert torch.allclose(values[0], values[1], rtol=1e-4, atol=1e-5)
    # all weights at once: the output bias's DV gradient is 0 up to cancellation (1 − Σ softmax)
    a, b = (torch.cat([g.flatten() for g in gs]) for gs in grads)
    assert (a - b).norm() <= 1e-4 * a.norm()
