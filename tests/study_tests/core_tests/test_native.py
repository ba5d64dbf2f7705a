"""The compiled CPU kernels (study/core/_native): exact random draws, tanh, the leaky scan.

Ground truth: torch's own draws (bit for bit), float64 tanh, the closed form of the linear
recurrence (W = 0) and a float64 step-by-step recurrence with autograd for the gradients.
Skipped where no C++ compiler is available (the torch paths are what runs there).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from study.core import _native, _scan
from study.core._native import draws

pytestmark = pytest.mark.skipif(
    _native.load("kernels") is None or _native.load("rng") is None,
    reason="no compiled kernels here (no C++ compiler?)",
)


# -- random draws ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [16, 17, 31, 623, 624, 625, 1249, 4096 + 5, 100_003])
@pytest.mark.parametrize("offset", [0, 1, 623, 700])
def test_draws_equal_torch_bit_for_bit(n, offset):
    """Same values and same generator state as torch.randn / torch.rand, from any position
    in the Mersenne Twister block (offset values drawn first)."""
    for kind in ("normal", "uniform"):
        ref_gen = torch.Generator().manual_seed(n + offset)
        gen = torch.Generator().manual_seed(n + offset)
        if offset:
            torch.rand(offset, generator=ref_gen)
            torch.rand(offset, generator=gen)
        if kind == "normal":
            ref, got = torch.randn(n, generator=ref_gen), draws.randn((n,), gen)
        else:
            ref, got = torch.rand(n, generator=ref_gen), draws.rand((n,), gen)
        assert torch.equal(ref, got), f"{kind} n={n} offset={offset}"
        assert torch.equal(ref_gen.get_state(), gen.get_state())
        # the next torch draw continues the same stream
        assert torch.equal(torch.randn(40, generator=ref_gen), torch.randn(40, generator=gen))


def test_draws_shapes_and_torch_fallbacks():
    gen, ref_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    got = draws.randn((8, 30, 2, 48), gen)
    assert got.shape == (8, 30, 2, 48) and got.is_contiguous()
    assert torch.equal(got, torch.randn(8, 30, 2, 48, generator=ref_gen))
    # below 16 values, or float64: torch's own path (another algorithm), still equal
    for shape, dtype in (((15,), torch.float32), ((40,), torch.float64)):
        a = draws.randn(shape, gen, dtype=dtype)
        b = torch.randn(shape, generator=ref_gen, dtype=dtype)
        assert a.dtype == dtype and torch.equal(a, b)


@pytest.mark.parametrize(
    "task_args",
    [
        dict(n_bits=2, transient=200, segment=400, off_cue=True),
        dict(n_bits=3, transient=150, segment=300, off_cue=True, p_onset=1 / 50),
        dict(
            n_bits=1, transient=10, segment=20, pulse_len=3, slope=0.25, target_lead=0, p_onset=0.2
        ),
        dict(n_bits=2, transient=0, segment=50, pulse_len=5, slope=0.07, p_onset=0.05),
    ],
)
def test_wm_signals_equal_torch_bit_for_bit(task_args):
    """Pulses and ramped targets of WorkingMemory._signals, from the same onsets."""
    from study.core.tasks.working_memory import WorkingMemory

    task = WorkingMemory(**task_args)
    for seed in range(10):
        shape = (3, 5, task.n_inputs, task.transient + task.seq_len + 1)
        onsets = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < task.p_onset
        ref_inputs, ref_targets = task._signals(onsets.clone())
        inputs, targets = draws.wm_signals(task, onsets.clone())
        assert torch.equal(inputs, ref_inputs) and torch.equal(targets, ref_targets)


def test_draws_are_standard_normal_and_uniform():
    z = draws.randn((400_000,), torch.Generator().manual_seed(0)).double()
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    u = draws.rand((400_000,), torch.Generator().manual_seed(0)).double()
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.005


def test_disabled_native_uses_torch(monkeypatch):
    """STUDY_NATIVE=0: nothing compiled is used (load returns None), results unchanged."""
    monkeypatch.setenv("STUDY_NATIVE", "0")
    assert _native.load("kernels") is None and not _scan.native_scan()
    gen, ref_gen = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    assert torch.equal(draws.randn((100,), gen), torch.randn(100, generator=ref_gen))
    d = torch.randn(2, 5, 3, 4)
    x0, w = torch.randn(2, 3, 4), torch.randn(2, 4, 4) * 0.3
    from study.core.networks import leaky_scan

    assert torch.equal(_scan.leaky_states(d, x0, w, 0.1), leaky_scan(d, x0, w, 0.1))


def test_failed_build_returns_none(tmp_path, monkeypatch):
    """A source that does not compile: load() logs and returns None instead of raising."""
    bad = tmp_path / "bad.cpp"
    bad.write_text("this is not C++\n")
    monkeypatch.setenv("STUDY_NATIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_native, "_HERE", tmp_path)
    monkeypatch.setitem(_native.LIBRARIES, "rng", ("bad.cpp", ()))
    monkeypatch.setattr(_native, "_loaded", {})
    assert _native.load("rng") is None
    assert _native.build_log["rng"].startswith("unavailable")


# -- tanh -----------------------------------------------------------------------------------


def test_tanh_within_two_ulp():
    x = torch.cat(
        [
            torch.linspace(-12, 12, 1_000_001),
            torch.randn(200_000) * 3,
            torch.tensor([0.0, 1e-30, 1e-8, 0.625, 9.5, 20.0, 1e30]),
        ]
    )
    x = torch.cat([x, -x])
    y = torch.empty_like(x)
    _native.load("kernels").tanh_array(x.data_ptr(), y.data_ptr(), x.numel())
    ref = torch.tanh(x.double())
    spacing = torch.pow(2.0, torch.floor(torch.log2(ref.abs().clamp_min(1e-38))) - 23)
    ulps = (y.double() - ref).abs() / spacing
    assert ulps.max().item() <= 2.0
    assert torch.equal(torch.signbit(y), torch.signbit(x))  # odd, -0 stays -0


def test_tanh_special_values():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0] * 4)
    y = torch.empty_like(x)
    _native.load("kernels").tanh_array(x.data_ptr(), y.data_ptr(), x.numel())
    assert torch.isnan(y[0::5]).all()
    assert (y[1::5] == 1).all() and (y[2::5] == -1).all() and (y[3::5] == 0).all()


# -- leaky scan -----------------------------------------------------------------------------


def _reference(drive, x0, w, alpha):
    """float64 step-by-step recurrence, differentiable."""
    x, out = x0, []
    for t in range(drive.shape[1]):
        x = (1 - alpha) * x + alpha * torch.bmm(torch.tanh(x), w) + drive[:, t]
        out.append(x)
    return torch.stack(out, dim=1)


def _inputs(s, t, b, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(s, t, b, n, generator=g) * 0.3,
        torch.randn(s, b, n, generator=g),
        torch.randn(s, n, n, generator=g) * (1.5 / math.sqrt(n)),
    )


def test_scan_with_zero_weights_is_the_closed_form():
    """W = 0: x_t = (1 − α)^{t+1} x0 + Σ_{k<=t} (1 − α)^{t−k} d_k."""
    s, t, b, n, alpha = 2, 30, 3, 20, 0.1
    d, x0, _ = _inputs(s, t, b, n)
    w = torch.zeros(s, n, n)
    xs = _scan.leaky_states(d, x0, w, alpha).double()
    decay = (1 - alpha) ** torch.arange(t, dtype=torch.float64)
    expect = torch.empty(s, t, b, n, dtype=torch.float64)
    for step in range(t):
        past = (decay[: step + 1].flip(0).view(1, -1, 1, 1) * d[:, : step + 1].double()).sum(1)
        expect[:, step] = (1 - alpha) ** (step + 1) * x0.double() + past
    assert torch.allclose(xs, expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "shape", [(8, 60, 20, 48), (3, 25, 7, 40), (2, 20, 9, 70), (1, 6, 1, 3), (2, 10, 25, 16)]
)
def test_scan_forward_and_gradients_match_float64(shape):
    s, t, b, n = shape
    alpha = 0.1
    d, x0, w = _inputs(s, t, b, n, seed=sum(shape))
    xs_ref = _reference(d.double(), x0.double(), w.double(), alpha)
    assert torch.allclose(
        _scan.leaky_states(d, x0, w, alpha).double(), xs_ref, rtol=1e-5, atol=1e-5
    )
    assert torch.allclose(
        _scan.leaky_last(d, x0, w, alpha).double(), xs_ref[:, -1], rtol=1e-5, atol=1e-5
    )
    # gradients of a loss using both the states and the rates
    g = torch.Generator().manual_seed(7)
    cx, cy = torch.randn(s, t, b, n, generator=g), torch.randn(s, t, b, n, generator=g)
    leaves = [v.clone().requires_grad_() for v in (d, x0, w)]
    xs, ys = _scan.leaky_scan_rates(*leaves, alpha)
    assert torch.allclose(ys.double(), torch.tanh(xs_ref), atol=3e-6)
    ((xs * cx).sum() + (ys * cy).sum()).backward()
    ref_leaves = [v.double().requires_grad_() for v in (d, x0, w)]
    xr = _reference(*ref_leaves, alpha)
    ((xr * cx.double()).sum() + (torch.tanh(xr) * cy.double()).sum()).backward()
    for got, ref in zip(leaves, ref_leaves):
        err = (got.grad.double() - ref.grad).abs().max() / ref.grad.abs().max()
        assert err < 2e-5


def test_scan_gradient_of_states_only_and_no_transient():
    d, x0, w = _inputs(2, 12, 4, 24, seed=3)
    d.requires_grad_()
    xs, _ = _scan.leaky_scan_rates(d, x0, w, 0.2)
    xs.square().sum().backward()  # grad for ys is None
    dr = d.detach().double().requires_grad_()
    _reference(dr, x0.double(), w.double(), 0.2).square().sum().backward()
    assert torch.allclose(d.grad.double(), dr.grad, rtol=1e-4, atol=1e-5)
    assert torch.equal(_scan.leaky_last(d[:, :0], x0, w, 0.2), x0)


def test_scan_float64_inputs_use_torch():
    d, x0, w = (v.double() for v in _inputs(2, 5, 3, 8))
    from study.core.networks import leaky_scan

    assert torch.equal(_scan.leaky_states(d, x0, w, 0.1), leaky_scan(d, x0, w, 0.1))
    assert np.isfinite(_scan.leaky_last(d, x0, w, 0.1).numpy()).all()


# -- the whole leaky network: drive, recurrence, readout ------------------------------------


def _network_reference(u, noise, sigma, x0, w_in, b, w, w_out, b_out, alpha):
    d = alpha * (torch.einsum("stbi,sin->stbn", u, w_in) + b[:, None, None]) + sigma * noise
    xs = _reference(d, x0, w, alpha)
    ys = torch.tanh(xs)
    return xs, ys, torch.einsum("stbn,sno->stbo", ys, w_out) + b_out[:, None, None]


@pytest.mark.parametrize(
    "shape", [(8, 40, 20, 4, 48, 2), (3, 17, 5, 6, 40, 3), (2, 9, 3, 1, 16, 1)]
)
def test_network_matches_float64(shape):
    s, t, bsz, i, n, o = shape
    g = torch.Generator().manual_seed(sum(shape))
    # time slices of longer arrays, as the transient split hands them over (read in place)
    u = (torch.rand(s, t + 3, bsz, i, generator=g) < 0.2).float()[:, 3:]
    noise = torch.randn(s, t + 3, bsz, n, generator=g)[:, 3:]
    x0 = torch.randn(s, bsz, n, generator=g)
    weights = [
        torch.randn(s, i, n, generator=g),
        torch.randn(s, n, generator=g) * 0.1,
        torch.randn(s, n, n, generator=g) * (1.2 / math.sqrt(n)),
        torch.randn(s, n, o, generator=g) * 0.3,
        torch.randn(s, o, generator=g) * 0.1,
    ]
    sigma, alpha = 0.1, 0.1
    leaves = [v.clone().requires_grad_() for v in [x0, *weights]]
    xs, ys, z = _scan.leaky_network(u, noise, sigma, leaves[0], *leaves[1:], alpha)
    ref_leaves = [v.double().requires_grad_() for v in [x0, *weights]]
    xr, yr, zr = _network_reference(
        u.double(), noise.double(), sigma, ref_leaves[0], *ref_leaves[1:], alpha
    )
    for got, ref in ((xs, xr), (ys, yr), (z, zr)):
        assert torch.allclose(got.double(), ref, rtol=1e-5, atol=1e-5)
    cx, cy, cz = (torch.randn(v.shape, generator=g) for v in (xs, ys, z))
    ((xs * cx).sum() + (ys * cy).sum() + (z * cz).sum()).backward()
    ((xr * cx.double()).sum() + (yr * cy.double()).sum() + (zr * cz.double()).sum()).backward()
    for got, ref in zip(leaves, ref_leaves):
        err = (got.grad.double() - ref.grad).abs().max() / ref.grad.abs().max()
        assert err < 2e-5
    # without gradient: the same values; the transient's last state alone
    with torch.no_grad():
        xs2, ys2, z2 = _scan.leaky_network(u, noise, sigma, x0, *weights, alpha)
    assert torch.equal(xs2, xs.detach()) and torch.equal(z2, z.detach())
    last = _scan.leaky_network_last(u, noise, sigma, x0, *weights[:3], alpha)
    assert torch.equal(last, xs.detach()[:, -1])
    states = _scan.leaky_network_states(u, noise, sigma, x0, *weights[:3], alpha)
    assert torch.equal(states, xs.detach())


# -- the GRU ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(8, 30, 16, 3, 40, 6), (2, 12, 5, 2, 16, 1), (3, 9, 7, 1, 20, 2)]
)
def test_gru_matches_float64(shape):
    """The compiled GRU against the same equations stepped in float64 with autograd."""
    s, t, bsz, i, n, o = shape
    g = torch.Generator().manual_seed(sum(shape))
    u = torch.rand(s, t + 5, bsz, i, generator=g)[:, 5:]
    noise = torch.randn(s, t + 5, bsz, n, generator=g)[:, 5:]
    h0 = torch.randn(s, bsz, n, generator=g) * 0.5
    weights = [
        torch.randn(s, i, 3 * n, generator=g) * 0.5,
        torch.randn(s, 3 * n, generator=g) * 0.1,
        torch.randn(s, n, 3 * n, generator=g) / math.sqrt(n),
        torch.randn(s, 3 * n, generator=g) * 0.1,
        torch.randn(s, n, o, generator=g) * 0.3,
        torch.randn(s, o, generator=g) * 0.1,
    ]
    sigma = 0.05
    leaves = [v.clone().requires_grad_() for v in [h0, *weights]]
    hs, z = _scan.gru_network(u, noise, sigma, *leaves)
    ref_leaves = [v.double().requires_grad_() for v in [h0, *weights]]
    hr, zr = _gru_reference(u.double(), noise.double(), sigma, *ref_leaves)
    assert torch.allclose(hs.double(), hr, rtol=1e-5, atol=1e-5)
    assert torch.allclose(z.double(), zr, rtol=1e-5, atol=1e-5)
    ch, cz = torch.randn(hs.shape, generator=g), torch.randn(z.shape, generator=g)
    ((hs * ch).sum() + (z * cz).sum()).backward()
    ((hr * ch.double()).sum() + (zr * cz.double()).sum()).backward()
    for got, ref in zip(leaves, ref_leaves):
        err = (got.grad.double() - ref.grad).abs().max() / ref.grad.abs().max()
        assert err < 1e-5
    last = _scan.gru_network_last(u, noise, sigma, h0, *weights[:4])
    assert torch.equal(last, hs.detach()[:, -1])


def _gru_reference(u, noise, sigma, h0, w, b, u_rec, b_rec, w_out, b_out):
    """Keras GRU (reset_after), gate blocks (z, r, h), step by step."""
    n = h0.shape[-1]
    h, states = h0, []
    for t in range(u.shape[1]):
        gx = torch.einsum("sbi,sij->sbj", u[:, t], w) + b[:, None]
        gh = torch.einsum("sbi,sij->sbj", h, u_rec) + b_rec[:, None]
        z = torch.sigmoid(gx[..., :n] + gh[..., :n])
        r = torch.sigmoid(gx[..., n : 2 * n] + gh[..., n : 2 * n])
        c = torch.tanh(gx[..., 2 * n :] + r * gh[..., 2 * n :])
        h = (1 - z) * c + z * h + sigma * noise[:, t]
        states.append(h)
    hs = torch.stack(states, dim=1)
    return hs, torch.einsum("stbn,sno->stbo", hs, w_out) + b_out[:, None, None]


def test_sigmoid_and_exp_through_the_gru_extremes():
    """Saturated gates (|pre-activation| ~ 100): finite, and equal to the float64 result."""
    g = torch.Generator().manual_seed(0)
    s, t, bsz, i, n = 1, 4, 3, 2, 16
    u = torch.randn(s, t, bsz, i, generator=g) * 50
    weights = [
        torch.randn(s, i, 3 * n, generator=g) * 2,
        torch.zeros(s, 3 * n),
        torch.randn(s, n, 3 * n, generator=g),
        torch.zeros(s, 3 * n),
    ]
    h0 = torch.zeros(s, bsz, n)
    hs, _ = _scan.gru_network(u, None, 0.0, h0, *weights, None, None)
    hr, _ = _gru_reference(
        u.double(),
        torch.zeros(s, t, bsz, n, dtype=torch.float64),
        0.0,
        h0.double(),
        *(v.double() for v in weights),
        torch.zeros(s, n, 1, dtype=torch.float64),
        torch.zeros(s, 1, dtype=torch.float64),
    )
    assert torch.isfinite(hs).all()
    assert torch.allclose(hs.double(), hr, atol=1e-6)


# -- the critic -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        (8, 300, 24, 24, 64, 2, "relu", True),
        (3, 100, 7, 11, 32, 3, "leaky_relu", False),
        (2, 50, 5, 5, 16, 1, "relu", True),
        (4, 97, 24, 16, 80, 2, "leaky_relu", True),
    ],
)
def test_critic_scores_match_float64(case):
    """Joint and shuffled scores and every gradient (weights and the three inputs) against the
    same Critic evaluated in float64 through torch autograd."""
    from study.core import _critic
    from study.core.mi import Critic

    r, m, da, db, h, depth, act, out_bias = case
    critic = Critic(r, da, db, width=h, depth=depth, activation=act, out_bias=out_bias)
    with torch.no_grad():
        for p in critic.parameters():  # non-zero biases, so every term is exercised
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    ref = Critic(r, da, db, width=h, depth=depth, activation=act, out_bias=out_bias).double()
    ref.compute_dtype = torch.float64
    ref.load_state_dict({k: v.double() for k, v in critic.state_dict().items()})
    g = torch.Generator().manual_seed(1)
    a, bj, bs = (torch.randn(r, m, d, generator=g) for d in (da, db, db))
    weight = torch.randn(r, 2 * m, generator=g)
    assert _critic.usable(critic, a)
    ins = [x.clone().requires_grad_() for x in (a, bj, bs)]
    scores = _critic.critic_scores(critic, *ins)
    (scores * weight).sum().backward()
    ins64 = [x.double().requires_grad_() for x in (a, bj, bs)]
    ha = ref.project_a(ins64[0])
    expect = torch.cat(
        [ref.head(ha + ref.project_b(ins64[1])), ref.head(ha + ref.project_b(ins64[2]))], dim=1
    ).double()
    (expect * weight.double()).sum().backward()
    assert torch.allclose(scores.double(), expect, rtol=1e-5, atol=1e-5)
    for got, want in [*zip(critic.parameters(), ref.parameters()), *zip(ins, ins64)]:
        err = (got.grad.double() - want.grad).abs().max() / want.grad.abs().max()
        assert err < 1e-5
    with torch.no_grad():  # no activations kept, same scores
        assert torch.equal(_critic.critic_scores(critic, a, bj, bs), scores.detach())


def test_critic_frozen_gives_input_gradients_only():
    from study.core import _critic
    from study.core.mi import Critic

    critic = Critic(2, 4, 4, width=16, depth=2)
    critic.requires_grad_(False)
    a = torch.randn(2, 10, 4, requires_grad=True)
    b = torch.randn(2, 10, 4)
    _critic.critic_scores(critic, a, b, b.flip(1)).sum().backward()
    assert a.grad is not None and all(p.grad is None for p in critic.parameters())


@pytest.mark.parametrize("depth,act", [(2, "relu"), (3, "leaky_relu")])
def test_critic_permuted_partner_equals_gathered_rows(depth, act):
    """perm= (the noisy_partner mode) gives the scores and gradients of bs = bj[perm]."""
    from study.core import _critic
    from study.core.mi import Critic
    from study.core.mi.estimators import random_permutations, take_rows

    r, m, d = 3, 130, 12
    critic = Critic(r, d, d, width=32, depth=depth, activation=act)
    g = torch.Generator().manual_seed(4)
    a, bj = torch.randn(r, m, d, generator=g), torch.randn(r, m, d, generator=g)
    perm = random_permutations(r, m, g, "cpu")
    w = torch.randn(r, 2 * m, generator=g)
    x = [a.clone().requires_grad_(), bj.clone().requires_grad_()]
    (_critic.critic_scores(critic, *x, perm=perm) * w).sum().backward()
    got = [p.grad.clone() for p in critic.parameters()] + [v.grad for v in x]
    critic.zero_grad()
    y = [a.clone().requires_grad_(), bj.clone().requires_grad_()]
    scores = _critic.critic_scores(critic, y[0], y[1], take_rows(y[1], perm))
    (scores * w).sum().backward()
    want = [p.grad for p in critic.parameters()] + [v.grad for v in y]
    for u, v in zip(got, want):
        assert torch.allclose(u, v, rtol=1e-5, atol=1e-6)


def test_network_sampled_rows_gradient_equals_dense():
    """The sampled rates' gradient, handed to BPTT row by row, equals the dense path's."""
    from study.core.mi.estimators import random_permutations, take_rows

    s, t, bsz, i, n, o = 3, 30, 6, 4, 24, 2
    g = torch.Generator().manual_seed(11)
    u = (torch.rand(s, t, bsz, i, generator=g) < 0.2).float()
    noise = torch.randn(s, t, bsz, n, generator=g)
    x0 = torch.randn(s, bsz, n, generator=g)
    weights = [
        torch.randn(s, i, n, generator=g),
        torch.randn(s, n, generator=g) * 0.1,
        torch.randn(s, n, n, generator=g) / math.sqrt(n),
        torch.randn(s, n, o, generator=g),
        torch.randn(s, o, generator=g),
    ]
    sample = random_permutations(s, t * bsz, g, "cpu")[:, :50]
    coef = torch.randn(s, 50, n, generator=g)
    grads = []
    for sampled_path in (True, False):
        leaves = [v.clone().requires_grad_() for v in weights]
        if sampled_path:
            xs, ys, z, rows = _scan.leaky_network_sampled(
                u, noise, 0.1, x0, *leaves, 0.1, sample=sample, states=False
            )
            assert xs is None
        else:
            _, ys, z = _scan.leaky_network(u, noise, 0.1, x0, *leaves, 0.1)
            rows = take_rows(ys.reshape(s, -1, n), sample)
        ((rows * coef).sum() + z.square().sum()).backward()
        grads.append([v.grad for v in leaves])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_exact_mode_keeps_only_the_bit_identical_library(monkeypatch):
    """STUDY_NATIVE=exact: the exact draws stay, the kernels that round differently go."""
    monkeypatch.setenv("STUDY_NATIVE", "exact")
    assert _native.load("rng") is not None and _native.load("kernels") is None
    assert not _scan.native_scan()


@pytest.mark.parametrize(
    "case",
    [
        (8, 500, 24, 24, 64, 2, "relu", True, True),
        (2, 100, 5, 5, 16, 1, "relu", True, True),
        (4, 97, 16, 16, 64, 2, "leaky_relu", True, False),
        (3, 130, 8, 8, 32, 3, "leaky_relu", False, False),
    ],
)
def test_critic_stats_equal_the_reduced_scores(case):
    """critic_stats' (mean joint score, log mean exp shuffled score) and their gradients
    (kept online: running maximum, rescaled) against the same reductions of critic_scores."""
    from study.core import _critic
    from study.core.mi import Critic
    from study.core.mi.estimators import log_mean_exp, random_permutations, take_rows

    r, m, da, db, h, depth, act, out_bias, use_perm = case
    critic = Critic(r, da, db, width=h, depth=depth, activation=act, out_bias=out_bias)
    with torch.no_grad():
        for p in critic.parameters():  # scores of a few units spread: the softmax is uneven
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    g = torch.Generator().manual_seed(0)
    a, bj = torch.randn(r, m, da, generator=g), torch.randn(r, m, db, generator=g)
    perm = random_permutations(r, m, g, "cpu")
    bs = None if use_perm else take_rows(bj, perm)
    cj, cl = torch.randn(r, generator=g), torch.randn(r, generator=g)

    def run(stats: bool):
        critic.zero_grad()
        x = [v.clone().requires_grad_() for v in (a, bj)]
        xs = None if use_perm else bs.clone().requires_grad_()
        kw = {"perm": perm} if use_perm else {}
        if stats:
            jm, lm = _critic.critic_stats(critic, x[0], x[1], xs, **kw)
        else:
            s = _critic.critic_scores(critic, x[0], x[1], xs, **kw)
            jm, lm = s[:, :m].mean(1), log_mean_exp(s[:, m:])
        ((jm * cj).sum() + (lm * cl).sum()).backward()
        grads = [p.grad.clone() for p in critic.parameters()] + [v.grad for v in x]
        return jm.detach(), lm.detach(), grads + ([] if use_perm else [xs.grad])

    jm, lm, got = run(True)
    jm_ref, lm_ref, want = run(False)
    assert torch.allclose(jm, jm_ref, atol=1e-5) and torch.allclose(lm, lm_ref, atol=1e-5)
    for u, v in zip(got, want, strict=True):
        assert (u - v).norm() <= 2e-5 * v.norm() + 1e-7
