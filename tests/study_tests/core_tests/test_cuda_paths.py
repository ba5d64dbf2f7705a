"""GPU-only checks of the CUDA code paths (skipped without CUDA; bench/gpu.sh runs them):
the CUDA-graph leaky scan equals the eager loop (forward and hand-written BPTT), the bfloat16
critic on CUDA keeps float32 accumulation and agrees with float32, and a CUDA epoch makes one
host sync for its finiteness checks. On the CPU only the guard is checked: graphs are never used.
"""

import numpy as np
import pytest
import torch

from study.core import _leaky
from study.core.mi import SubgroupMI
from study.core.networks import leaky_scan
from study.spec import load_trial_config
from study.training import Diverged, Trainer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY = {
    "task.batch": 4,
    "task.wm.transient": 20,
    "task.wm.segment": 60,
    "network.hidden": 8,
    "critic.width": 16,
    "critic.steps": 2,
    "critic.pretrain_steps": 2,
    "train.epochs": 2,
    "seeds": 2,
    "train.device": "cuda",
}


def _scan_inputs(device, s=3, t=50, b=4, n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    drive = torch.randn(s, t, b, n, generator=gen).to(device).requires_grad_(True)
    x0 = torch.randn(s, b, n, generator=gen).to(device).requires_grad_(True)
    w = (torch.randn(s, n, n, generator=gen) / n**0.5).to(device).requires_grad_(True)
    return drive, x0, w


def _scan_and_grads(drive, x0, w, alpha=0.2):
    xs = leaky_scan(drive, x0, w, alpha)
    (xs.square().sum() + xs[:, -1].sum()).backward()
    return xs.detach(), drive.grad, x0.grad, w.grad


def test_cpu_scan_never_uses_graphs(monkeypatch):
    monkeypatch.setenv("STUDY_CUDA_GRAPHS", "1")
    before = len(_leaky._GRAPHS)
    _scan_and_grads(*_scan_inputs("cpu"))
    assert len(_leaky._GRAPHS) == before


@cuda
def test_cuda_graph_scan_equals_eager(monkeypatch):
    got = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("STUDY_CUDA_GRAPHS", flag)
        for rep in range(2):  # the second graphed call replays the captured graph
            got[flag, rep] = _scan_and_grads(*_scan_inputs("cuda", seed=rep))
    assert any(k[0] == "forward" for k in _leaky._GRAPHS)
    assert any(k[0] == "backward" for k in _leaky._GRAPHS)
    for rep in range(2):
        for a, b in zip(got["0", rep], got["1", rep]):  # same kernels, replayed
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@cuda
def test_cuda_graph_epoch_equals_eager_epoch(monkeypatch):
    weights = []
    for flag in ("0", "1"):
        monkeypatch.setenv("STUDY_CUDA_GRAPHS", flag)
        tr = Trainer(load_trial_config(overrides=TINY))
        tr.pretrain_critic()
        tr.train_epoch()
        tr.train_epoch()
        weights.append(tr.net.w_rec.detach().cpu())
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-5, atol=1e-6)


@cuda
def test_cuda_bf16_critic_agrees_with_float32():
    assert not torch.backends.cuda.matmul.allow_tf32  # float32 stays strict float32
    labels = np.repeat([0, 1], 8)
    gen = torch.Generator(device="cuda").manual_seed(0)
    act = torch.randn(2, 20000, 16, generator=gen, device="cuda")
    act[..., 8:] += 0.8 * act[..., :8]
    f32 = SubgroupMI(2, labels, critic={"width": 256}, seed=0).cuda()
    for _ in range(50):
        f32.critic_step(act, gen)
    bf16 = SubgroupMI(2, labels, critic={"width": 256, "precision": "bfloat16"}, seed=0).cuda()
    with torch.no_grad():
        for p, q in zip(bf16.critic.parameters(), f32.critic.parameters()):
            p.copy_(q)
    assert not torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    v32 = f32.measure(act, torch.Generator(device="cuda").manual_seed(1))
    v16 = bf16.measure(act, torch.Generator(device="cuda").manual_seed(1))
    assert v16.dtype == torch.float32
    torch.testing.assert_close(v16, v32, rtol=0, atol=0.02)


@cuda
def test_cuda_epoch_checks_are_lazy_and_still_raise():
    tr = Trainer(load_trial_config(overrides=TINY))
    assert tr.lazy_checks
    tr.train_epoch()
    assert not tr._pending  # flushed at the end of the epoch
    with torch.no_grad():
        tr.net.w_rec[0].fill_(float("nan"))
    with pytest.raises(Diverged, match=r"not finite at epoch 2 for seed\(s\) \[0\] of 2"):
        tr.train_epoch()
