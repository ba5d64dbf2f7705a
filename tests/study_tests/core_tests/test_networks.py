"""Tests for study/networks.py: the hand-written leaky BPTT, LeakyRNN and GRU against direct
transcriptions of docs/method.md §3.1 and §7.2 (and torch.nn.GRU), population batching and init."""

import math

import pytest
import torch

from study.core.networks import GRU, LeakyRNN, NetOutput, build_network, leaky_scan

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _randn(gen, *shape, dtype=F64, scale=1.0):
    return torch.randn(*shape, generator=gen, dtype=dtype) * scale


# ----------------------------------------------------------------------------------------------
# leaky_scan: forward and hand-written backward against plain autograd


def _scan_loop(drive, x0, w, alpha):
    """x_t = (1 − α)·x_{t−1} + α·tanh(x_{t−1}) W + d_t, step by step with autograd."""
    x, xs = x0, []
    for t in range(drive.shape[1]):
        x = (1 - alpha) * x + alpha * torch.bmm(torch.tanh(x), w) + drive[:, t]
        xs.append(x)
    return torch.stack(xs, dim=1)


def _leaves(gen, s, t, b, n):
    drive = _randn(gen, s, t, b, n, scale=0.5).requires_grad_()
    x0 = _randn(gen, s, b, n).requires_grad_()
    w = _randn(gen, s, n, n, scale=1.3 / math.sqrt(n)).requires_grad_()
    return drive, x0, w


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 5, 3, 4), (3, 17, 2, 7), (1, 40, 4, 12)])
@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_leaky_scan_matches_autograd_loop(shape, alpha):
    gen = _gen(sum(shape))
    drive, x0, w = _leaves(gen, *shape)
    upstream = _randn(gen, *shape)  # a random linear loss exercises every output element
    xs = leaky_scan(drive, x0, w, alpha)
    got = torch.autograd.grad((xs * upstream).sum(), (drive, x0, w))
    ref = _scan_loop(drive, x0, w, alpha)
    want = torch.autograd.grad((ref * upstream).sum(), (drive, x0, w))
    torch.testing.assert_close(xs, ref, rtol=1e-12, atol=1e-12)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 3, 1, 2), (2, 4, 2, 3)])
def test_leaky_scan_passes_gradcheck(shape):
    drive, x0, w = _leaves(_gen(5), *shape)
    assert torch.autograd.gradcheck(lambda d, x, m: leaky_scan(d, x, m, 0.3), (drive, x0, w))


def test_leaky_scan_skips_weight_gradient_when_not_needed():
    drive, x0, w = _leaves(_gen(1), 2, 6, 3, 4)
    w = w.detach()
    xs = leaky_scan(drive, x0, w, 0.2)
    xs.square().sum().backward()
    ref_drive = drive.detach().requires_grad_()
    _scan_loop(ref_drive, x0.detach(), w, 0.2).square().sum().backward()
    assert w.grad is None
    torch.testing.assert_close(drive.grad, ref_drive.grad)


# regression: _LeakyScan.backward kept a non-contiguous upstream layout, then called .view()
def test_leaky_scan_accepts_non_contiguous_upstream_gradient():
    drive, x0, w = _leaves(_gen(2), 2, 5, 3, 4)
    upstream = _randn(_gen(3), 2, 3, 5, 4)  # (S, B, T, N): a loss on the batch-major view
    xs = leaky_scan(drive, x0, w, 0.1)
    got = torch.autograd.grad((xs.transpose(1, 2) * upstream).sum(), (drive, x0, w))
    ref = _scan_loop(drive, x0, w, 0.1)
    want = torch.autograd.grad((ref.transpose(1, 2) * upstream).sum(), (drive, x0, w))
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r)


# ----------------------------------------------------------------------------------------------
# LeakyRNN against docs/method.md §3.1


def _leaky_reference(net, u, x0, noise, n_transient):
    """Direct transcription of docs/method.md §3.1 for each seed, with the transient under no_grad.

    x_t = (1 − α)·x_{t−1} + α·(u_t W_in + b + tanh(x_{t−1}) W_rec) + ξ_t
    z_t = tanh(x_t) W_out + b_out
    """
    a = net.alpha
    states, outs = [], []
    for s in range(u.shape[0]):
        x = x0[s]
        xs, zs = [], []
        for t in range(u.shape[1]):
            with torch.set_grad_enabled(t >= n_transient):
                x = (1 - a) * x + a * (
                    u[s, t] @ net.w_in[s] + net.b[s] + torch.tanh(x) @ net.w_rec[s]
                )
                if noise is not None:
                    x = x + noise[s, t]
            if t >= n_transient:
                xs.append(x)
                zs.append(torch.tanh(x) @ net.w_out[s] + net.b_out[s])
        states.append(torch.stack(xs))
        outs.append(torch.stack(zs))
    return torch.stack(states), torch.stack(outs)


@pytest.mark.parametrize("n_transient", [0, 1, 7])
@pytest.mark.parametrize("with_noise", [False, True])
def test_leaky_rnn_matches_method_transcription(n_transient, with_noise):
    s, t, b, i, n, o = 2, 15, 3, 4, 6, 2
    net = LeakyRNN(s, i, n, o, alpha=0.2, seed=4).double()
    gen = _gen(11)
    with torch.no_grad():  # non-zero biases so that their placement is tested
        net.b.copy_(_randn(gen, s, n, scale=0.3))
        net.b_out.copy_(_randn(gen, s, o, scale=0.3))
    u = (torch.rand(s, t, b, i, generator=gen, dtype=F64) < 0.3).to(F64)
    x0 = _randn(gen, s, b, n).requires_grad_()
    noise = _randn(gen, s, t, b, n, scale=0.1) if with_noise else None
    target = _randn(gen, s, t - n_transient, b, o)

    out = net(u, x0, noise, n_transient=n_transient)
    loss = ((out.outputs - target) ** 2).sum() + out.states.square().mean()
    params = list(net.parameters())
    got = torch.autograd.grad(loss, params + ([x0] if n_transient == 0 else []))

    ref_x, ref_z = _leaky_reference(net, u, x0, noise, n_transient)
    assert out.states.shape == (s, t - n_transient, b, n)
    torch.testing.assert_close(out.states, ref_x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.outputs, ref_z, rtol=1e-10, atol=1e-12)
    ref_loss = ((ref_z - target) ** 2).sum() + ref_x.square().mean()
    want = torch.autograd.grad(ref_loss, params + ([x0] if n_transient == 0 else []))
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


def test_leaky_rnn_transient_gives_no_gradient_to_x0():
    net = LeakyRNN(1, 2, 5, 1, seed=0)
    x0 = torch.randn(1, 2, 5, generator=_gen(0), requires_grad=True)
    out = net(torch.ones(1, 8, 2, 2), x0, n_transient=3)
    assert out.states.shape[1] == 5 and out.states.grad_fn is not None
    out.outputs.sum().backward()
    assert x0.grad is None  # the transient ran without grad, so x0 is cut off
    assert net.w_rec.grad is not None and net.w_rec.grad.abs().sum() > 0


def test_leaky_rnn_outputs_flag_and_mi_transform():
    net = LeakyRNN(2, 3, 4, 2, seed=1)
    u = torch.rand(2, 6, 5, 3, generator=_gen(1))
    x0 = torch.zeros(2, 5, 4)
    full = net(u, x0)
    bare = net(u, x0, outputs=False)
    assert bare.outputs is None
    torch.testing.assert_close(bare.states, full.states)
    torch.testing.assert_close(full.mi_transform(full.states), torch.tanh(full.states))


def test_net_output_rows_are_time_major_samples():
    states = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)  # (S, T, B, N)
    out = NetOutput(states, None, torch.tanh)
    rows = out.rows()
    assert rows.shape == (2, 12, 5)
    for t in range(3):
        for b in range(4):
            torch.testing.assert_close(rows[:, t * 4 + b], states[:, t, b])
    torch.testing.assert_close(out.rows(1), states[:, 1:].reshape(2, 8, 5))


# ----------------------------------------------------------------------------------------------
# population batching: S networks == S separately built networks


@pytest.mark.parametrize("cls", [LeakyRNN, GRU])
def test_population_member_equals_single_network(cls):
    pop = cls(4, 3, 8, 2, seed=10)
    for i in range(4):
        single = cls(1, 3, 8, 2, seed=10 + i)
        for (name, p), q in zip(pop.named_parameters(), single.parameters()):
            torch.testing.assert_close(p[i : i + 1], q, rtol=0, atol=0, msg=name)
    assert not torch.equal(pop.w_out[0], pop.w_out[1])


@pytest.mark.parametrize("cls, n_transient", [(LeakyRNN, 0), (LeakyRNN, 4), (GRU, 0), (GRU, 3)])
def test_population_outputs_and_gradients_equal_separate_networks(cls, n_transient):
    s, t, b, i, n, o = 3, 12, 4, 3, 8, 2
    pop = cls(s, i, n, o, seed=20)
    singles = [cls(1, i, n, o, seed=20 + k) for k in range(s)]
    gen = _gen(3)
    u = torch.randn(s, t, b, i, generator=gen)
    x0 = torch.randn(s, b, n, generator=gen) * 0.5
    noise = torch.randn(s, t, b, n, generator=gen) * 0.1
    target = torch.randn(s, t - n_transient, b, o, generator=gen)

    out = pop(u, x0, noise, n_transient=n_transient)
    # the population loss is the sum of member losses, so member gradients must be exact
    ((out.outputs - target) ** 2).mean(dim=(1, 2, 3)).sum().backward()
    for k, net in enumerate(singles):
        one = net(u[k : k + 1], x0[k : k + 1], noise[k : k + 1], n_transient=n_transient)
        ((one.outputs - target[k : k + 1]) ** 2).mean().backward()
        torch.testing.assert_close(out.states[k : k + 1], one.states, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.outputs[k : k + 1], one.outputs, rtol=1e-5, atol=1e-6)
        for (name, p), q in zip(pop.named_parameters(), net.parameters()):
            torch.testing.assert_close(p.grad[k : k + 1], q.grad, rtol=1e-4, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------------------------
# GRU against the Keras reset_after equations (docs/method.md §7.2) and torch.nn.GRU


def _gru_reference(net, u, h0, noise, n_transient):
    """Keras GRU, reset_after=True, gate blocks (z, r, h), per seed:
    z = σ(x W_z + b_z + h U_z + b'_z), r = σ(x W_r + b_r + h U_r + b'_r),
    ĥ = tanh(x W_h + b_h + r ⊙ (h U_h + b'_h)), h ← z ⊙ h + (1 − z) ⊙ ĥ (+ noise); y = h W_o + b_o.
    """
    n = net.n_hidden
    blk = {"z": slice(0, n), "r": slice(n, 2 * n), "h": slice(2 * n, 3 * n)}
    states = []
    for s in range(u.shape[0]):
        w, uu, b, br = net.w[s], net.u[s], net.b[s], net.b_rec[s]
        h, hs = h0[s], []
        for t in range(u.shape[1]):
            with torch.set_grad_enabled(t >= n_transient):
                x = u[s, t]
                z = torch.sigmoid(
                    x @ w[:, blk["z"]] + b[blk["z"]] + h @ uu[:, blk["z"]] + br[blk["z"]]
                )
                r = torch.sigmoid(
                    x @ w[:, blk["r"]] + b[blk["r"]] + h @ uu[:, blk["r"]] + br[blk["r"]]
                )
                cand = torch.tanh(
                    x @ w[:, blk["h"]] + b[blk["h"]] + r * (h @ uu[:, blk["h"]] + br[blk["h"]])
                )
                h = z * h + (1 - z) * cand
                if noise is not None:
                    h = h + noise[s, t]
            if t >= n_transient:
                hs.append(h)
        states.append(torch.stack(hs))
    states = torch.stack(states)
    outputs = torch.einsum("stbn,sno->stbo", states, net.w_out) + net.b_out[:, None, None]
    return states, outputs


def _gru_with_biases(s, i, n, o, seed):
    net = GRU(s, i, n, o, seed=seed).double()
    gen = _gen(seed + 100)
    with torch.no_grad():
        for p in (net.b, net.b_rec, net.b_out):
            p.copy_(_randn(gen, *p.shape, scale=0.5))
    return net


@pytest.mark.parametrize("n_transient", [0, 5])
@pytest.mark.parametrize("with_noise", [False, True])
def test_gru_matches_keras_transcription(n_transient, with_noise):
    s, t, b, i, n, o = 2, 11, 3, 3, 5, 6
    net = _gru_with_biases(s, i, n, o, seed=7)
    gen = _gen(8)
    u = _randn(gen, s, t, b, i)
    h0 = _randn(gen, s, b, n, scale=0.5).requires_grad_()
    noise = _randn(gen, s, t, b, n, scale=0.05) if with_noise else None
    out = net(u, h0, noise, n_transient=n_transient)
    ref_h, ref_y = _gru_reference(net, u, h0, noise, n_transient)
    torch.testing.assert_close(out.states, ref_h, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.outputs, ref_y, rtol=1e-10, atol=1e-12)
    leaves = list(net.parameters()) + ([h0] if n_transient == 0 else [])
    got = torch.autograd.grad(out.outputs.square().sum(), leaves)
    want = torch.autograd.grad(ref_y.square().sum(), leaves)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.mi_transform(out.states), out.states)  # MI uses h itself


def test_gru_matches_torch_nn_gru():
    i, n, o = 3, 6, 2
    net = _gru_with_biases(1, i, n, o, seed=9)
    ref = torch.nn.GRU(i, n, dtype=F64)
    z, r, h = slice(0, n), slice(n, 2 * n), slice(2 * n, 3 * n)
    with torch.no_grad():  # nn.GRU blocks are (r, z, n), stored transposed (docs/method.md §7.3)
        ref.weight_ih_l0.copy_(torch.cat([net.w[0][:, g] for g in (r, z, h)], dim=1).T)
        ref.weight_hh_l0.copy_(torch.cat([net.u[0][:, g] for g in (r, z, h)], dim=1).T)
        ref.bias_ih_l0.copy_(torch.cat([net.b[0][g] for g in (r, z, h)]))
        ref.bias_hh_l0.copy_(torch.cat([net.b_rec[0][g] for g in (r, z, h)]))
    gen = _gen(10)
    u = _randn(gen, 1, 20, 4, i)
    h0 = _randn(gen, 1, 4, n, scale=0.5)
    want, _ = ref(u[0], h0)  # (T, B, N)
    got = net(u, h0).states[0]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_gru_recurrent_weights_is_candidate_block():
    net = GRU(2, 3, 7, 1, seed=0)
    rec = net.recurrent_weights()
    assert rec.shape == (2, 7, 7)
    torch.testing.assert_close(rec, net.u[:, :, 14:21])
    torch.testing.assert_close(net.input_weights(), net.w[:, :, 14:21])
    assert set(net.regularised()) == {"in", "rec", "out"}
    assert net.regularised()["rec"] is net.u  # L2 on all 3 recurrent blocks (docs/method.md §7.5)


# ----------------------------------------------------------------------------------------------
# initialisation statistics (docs/method.md §3.3, §7.4)


@pytest.mark.parametrize("gain", [1.0, 1.5])
def test_leaky_rnn_init_statistics(gain):
    s, i, n, o = 4, 4, 200, 3
    net = LeakyRNN(s, i, n, o, gain=gain, seed=3)
    w = net.w_rec.detach().double()
    sigma = gain / math.sqrt(n)
    # std of an estimated std over M samples ≈ σ/√(2M): 2 % is > 10 standard errors
    assert w.std().item() == pytest.approx(sigma, rel=0.02)
    assert abs(w.mean().item()) < 5 * sigma / math.sqrt(w.numel())
    for weight, fan_in, fan_out in ((net.w_in, i, n), (net.w_out, n, o)):
        limit = math.sqrt(6 / (fan_in + fan_out))  # Glorot-uniform
        x = weight.detach().double()
        assert x.abs().max().item() <= limit
        assert x.abs().max().item() > 0.95 * limit
        assert x.var().item() == pytest.approx(limit**2 / 3, rel=0.15)
    assert net.b.abs().sum() == 0 and net.b_out.abs().sum() == 0
    assert not torch.equal(net.w_rec[0], net.w_rec[1])  # members are independent draws


def test_gru_init_statistics():
    s, i, n, o = 3, 3, 16, 6
    net = GRU(s, i, n, o, seed=2)
    for k in range(s):  # Keras orthogonal over the whole (N, 3N) kernel: orthonormal rows
        u = net.u[k].detach().double()
        torch.testing.assert_close(u @ u.T, torch.eye(n, dtype=F64), rtol=0, atol=1e-5)
    limit = math.sqrt(6 / (i + 3 * n))
    assert net.w.abs().max().item() <= limit
    assert net.w.abs().max().item() > 0.9 * limit
    assert net.w_out.abs().max().item() <= math.sqrt(6 / (n + o))
    for p in (net.b, net.b_rec, net.b_out):
        assert p.abs().sum() == 0


# ----------------------------------------------------------------------------------------------
# build_network


@pytest.mark.parametrize("kind, cls", [("leaky", LeakyRNN), ("gru", GRU)])
def test_build_network_builds_named_kind(kind, cls):
    net = build_network(kind, 2, 3, 5, 1, alpha=0.3, seed=4)
    assert type(net) is cls
    assert (net.n_seeds, net.n_inputs, net.n_hidden, net.n_outputs) == (2, 3, 5, 1)
    torch.testing.assert_close(net.w_out, cls(2, 3, 5, 1, seed=4).w_out)
    if kind == "leaky":
        assert net.alpha == 0.3


@pytest.mark.parametrize(
    "args, match",
    [
        (
            ("lstm", 1, 2, 3, 1),
            r"build_network\(\): kind must be 'leaky' or 'gru', but got 'lstm'",
        ),
        (("leaky", 0, 2, 3, 1), r"n_seeds must be a positive int, but got n_seeds=0"),
        (("gru", 1, 2, 0, 1), r"n_hidden must be a positive int, but got n_hidden=0"),
        (("leaky", 1, 2.0, 3, 1), r"n_inputs must be a positive int, but got n_inputs=2.0"),
        (("leaky", 1, 2, 3, True), r"n_outputs must be a positive int, but got n_outputs=True"),
    ],
)
def test_build_network_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        build_network(*args)
