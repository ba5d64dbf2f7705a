"""Tests for study/optim.py: ReplicaOptimizer steps against the Keras formulas written out by hand
(docs/method.md §14.1–14.3), per-tensor and per-replica clipping, and state round trips."""

import math

import numpy as np
import pytest
import torch

from study.core.optim import ReplicaOptimizer

SHAPES = [(3, 4), (3, 2, 5)]  # two parameter tensors with a leading replica axis R = 3


def _params(seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_() for s in SHAPES]


def _grad_sequence(seed, n_steps, scales=(1e-3, 1.0, 30.0)):
    """Per step, one gradient per tensor whose replica norms span below and above the clip."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(n_steps):
        grads = []
        for shape in SHAPES:
            g = rng.standard_normal(shape)
            g *= rng.choice(scales, size=(shape[0],) + (1,) * (len(shape) - 1))
            grads.append(g)
        steps.append(grads)
    return steps


def _clip(g, clip_norm, clip_value):
    """Keras clipping of one replica's gradient: g·c/max(‖g‖, c), then element-wise [−v, v]."""
    if clip_norm is not None:
        norm = np.sqrt((g**2).sum())
        g = g * clip_norm / max(norm, clip_norm)
    if clip_value is not None:
        g = np.clip(g, -clip_value, clip_value)
    return g


def _keras_rmsprop(w, grads, *, lr, rho, eps, clip_norm=None, clip_value=None):
    """Keras RMSprop: v ← ρv + (1 − ρ)g², w ← w − lr·g/√(v + ε) (ε inside the root)."""
    w, v = w.copy(), np.zeros_like(w)
    for g in grads:
        g = np.stack([_clip(gr, clip_norm, clip_value) for gr in g])  # per replica
        v = rho * v + (1 - rho) * g**2
        w = w - lr * g / np.sqrt(v + eps)
    return w


def _keras_adam(w, grads, *, lr, beta1, beta2, eps, clip_norm=None, clip_value=None):
    """Keras Adam: bias-corrected rate lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ), ε outside the root."""
    w, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = np.stack([_clip(gr, clip_norm, clip_value) for gr in g])
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        lr_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        w = w - lr_t * m / (np.sqrt(v) + eps)
    return w


def _run(opt, params, steps):
    for grads in steps:
        opt.zero_grad()
        for p, g in zip(params, grads):
            p.grad = torch.as_tensor(g)
        opt.step()


CASES = [
    ("rmsprop", {"lr": 0.003, "rho": 0.9, "eps": 1e-7}),
    ("rmsprop", {"lr": 0.01, "rho": 0.5, "eps": 1e-2}),
    ("adam", {"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7}),
    ("adam", {"lr": 0.05, "beta1": 0.5, "beta2": 0.9, "eps": 1e-3}),
]
CLIPS = [(None, None), (4.0, None), (None, 0.5)]


@pytest.mark.parametrize("kind, hyper", CASES)
@pytest.mark.parametrize("clip_norm, clip_value", CLIPS)
def test_replica_optimizer_matches_keras_formulas(kind, hyper, clip_norm, clip_value):
    params = _params(0)
    start = [p.detach().numpy().copy() for p in params]
    steps = _grad_sequence(1, 6)
    opt = ReplicaOptimizer(params, kind=kind, clip_norm=clip_norm, clip_value=clip_value, **hyper)
    _run(opt, params, steps)
    reference = _keras_rmsprop if kind == "rmsprop" else _keras_adam
    for k, (p, w0) in enumerate(zip(params, start)):
        want = reference(
            w0, [s[k] for s in steps], clip_norm=clip_norm, clip_value=clip_value, **hyper
        )
        np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-12, atol=1e-14)


def test_rmsprop_epsilon_is_inside_the_root():
    # with g = 0.001, ε = 1e-2: Keras steps lr·g/√((1 − ρ)g² + ε) ≈ 1e-5·lr; ε outside the root
    # (PyTorch) would give lr·g/(√((1 − ρ)g²) + ε) ≈ 0.03·lr
    p = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    opt = ReplicaOptimizer([p], kind="rmsprop", lr=1.0, rho=0.9, eps=1e-2)
    p.grad = torch.full((1, 1), 1e-3, dtype=torch.float64)
    opt.step()
    assert p.item() == pytest.approx(-1e-3 / math.sqrt(0.1 * 1e-6 + 1e-2), rel=1e-12)


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
def test_clip_norm_acts_per_replica(kind):
    # replica 0 gets a huge gradient; replica 1 must step exactly as if replica 0 were small
    def replica1_after(scale0):
        p = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
        opt = ReplicaOptimizer([p], kind=kind, lr=0.1, eps=1e-7, clip_norm=4.0)
        for step in range(3):
            g = torch.tensor([[scale0, 0.0, 0.0], [0.5, -0.2, 0.1 * step]], dtype=torch.float64)
            p.grad = g
            opt.step()
        return p.detach()

    huge, small = replica1_after(1e8), replica1_after(1e-3)
    torch.testing.assert_close(huge[1], small[1], rtol=0, atol=0)
    assert not torch.equal(huge[0], small[0])


def test_clip_norm_acts_per_tensor():
    a = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    opt = ReplicaOptimizer([a, b], kind="adam", lr=1.0, eps=1.0, clip_norm=1.0)
    a.grad = torch.full((1, 4), 100.0, dtype=torch.float64)  # norm 200, clipped to 1
    b.grad = torch.full((1, 4), 0.1, dtype=torch.float64)  # norm 0.2, unchanged
    opt.step()
    # first Keras Adam step per element: lr·g/(|g| + ε/√(1 − β₂)) with the clipped g; a large ε
    # makes the step depend on the scale of g, so the clip shows
    eps_hat = 1.0 / math.sqrt(1 - 0.999)
    np.testing.assert_allclose(a.detach().numpy(), -0.5 / (0.5 + eps_hat), rtol=1e-12)
    np.testing.assert_allclose(b.detach().numpy(), -0.1 / (0.1 + eps_hat), rtol=1e-12)


def test_clip_value_is_elementwise():
    p = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    opt = ReplicaOptimizer([p], kind="adam", lr=1.0, eps=1.0, clip_value=0.5)
    p.grad = torch.tensor([[3.0, -0.2, -7.0], [0.1, 0.5, -0.6]], dtype=torch.float64)
    opt.step()
    clipped = np.array([[0.5, -0.2, -0.5], [0.1, 0.5, -0.5]])
    eps_hat = 1.0 / math.sqrt(1 - 0.999)  # first Adam step: lr·g/(|g| + ε/√(1 − β₂))
    np.testing.assert_allclose(
        p.detach().numpy(), -clipped / (np.abs(clipped) + eps_hat), rtol=1e-12
    )


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
def test_state_dict_round_trip_continues_identically(kind):
    steps = _grad_sequence(2, 8)
    params = _params(3)
    opt = ReplicaOptimizer(params, kind=kind, lr=0.01, clip_norm=4.0)
    _run(opt, params, steps[:4])
    saved_state = opt.state_dict()
    saved_params = [p.detach().clone() for p in params]
    _run(opt, params, steps[4:])

    resumed = [w.clone().requires_grad_() for w in saved_params]
    opt2 = ReplicaOptimizer(resumed, kind=kind, lr=0.01, clip_norm=4.0)
    opt2.load_state_dict(saved_state)
    assert opt2.step_count == 4  # Adam's bias correction depends on it
    _run(opt2, resumed, steps[4:])
    for p, q in zip(params, resumed):
        torch.testing.assert_close(p, q, rtol=0, atol=0)

    fresh = [w.clone().requires_grad_() for w in saved_params]  # without the state: differs
    _run(ReplicaOptimizer(fresh, kind=kind, lr=0.01, clip_norm=4.0), fresh, steps[4:])
    assert not torch.equal(fresh[0], params[0])


def test_state_dict_is_a_copy():
    p = torch.zeros(1, 2, requires_grad=True)
    opt = ReplicaOptimizer([p], kind="rmsprop", lr=0.1)
    p.grad = torch.ones(1, 2)
    opt.step()
    sd = opt.state_dict()
    p.grad = torch.ones(1, 2)
    opt.step()
    assert sd["step_count"] == 1
    torch.testing.assert_close(sd["state"][0]["v"], torch.full((1, 2), 0.1))


def test_step_skips_parameters_without_gradient():
    a = torch.ones(2, 2, requires_grad=True)
    b = torch.ones(2, 2, requires_grad=True)
    opt = ReplicaOptimizer([a, b], kind="rmsprop", lr=0.1)
    a.grad = torch.ones(2, 2)
    opt.step()
    assert torch.equal(b, torch.ones(2, 2)) and not torch.equal(a, torch.ones(2, 2))
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_from_config_reads_every_field():
    from study.spec import OptimizerConfig

    cfg = OptimizerConfig(
        kind="adam", lr=0.5, beta1=0.8, beta2=0.95, eps=1e-4, clip_norm=None, clip_value=2.0
    )
    opt = ReplicaOptimizer.from_config([torch.zeros(1, 1, requires_grad=True)], cfg)
    assert (opt.kind, opt.lr, opt.beta1, opt.beta2, opt.eps, opt.clip_norm, opt.clip_value) == (
        "adam",
        0.5,
        0.8,
        0.95,
        1e-4,
        None,
        2.0,
    )


def test_replica_optimizer_rejects_unknown_kind():
    with pytest.raises(
        ValueError, match=r"optimizer kind must be 'rmsprop' or 'adam', but got 'sgd'"
    ):
        ReplicaOptimizer([torch.zeros(1, requires_grad=True)], kind="sgd")


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
def test_cleared_state_and_zero_gradients_never_move_an_entry(kind):
    # after momentum built up, zero the gradient of some entries: with their state cleared
    # they stay bit for bit; Adam's momentum alone would still move them
    def run(clear):
        gen = torch.Generator().manual_seed(3)
        p = torch.randn(3, 4, 5, generator=gen, requires_grad=True)
        opt = ReplicaOptimizer([p], kind=kind, lr=0.01)
        frozen = torch.rand(3, 4, 5, generator=gen) < 0.5
        for _ in range(5):
            p.grad = torch.randn(3, 4, 5, generator=gen)
            opt.step()
        if clear:
            opt.clear_state(p, frozen)
        before = p.detach().clone()
        for _ in range(5):
            p.grad = torch.randn(3, 4, 5, generator=gen).masked_fill_(frozen, 0.0)
            opt.step()
        return p.detach(), before, frozen

    after, before, frozen = run(clear=True)
    assert torch.equal(after[frozen], before[frozen])
    assert not torch.equal(after[~frozen], before[~frozen])
    after, before, frozen = run(clear=False)
    assert torch.equal(after[frozen], before[frozen]) == (kind == "rmsprop")


def test_clear_state_refuses_a_foreign_tensor():
    opt = ReplicaOptimizer([torch.zeros(2, 3, requires_grad=True)])
    with pytest.raises(ValueError, match=r"not a parameter of this optimiser"):
        opt.clear_state(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))
