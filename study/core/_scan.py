"""The leaky network on compiled CPU kernels (study/core/_native/kernels.cpp), torch otherwise.

The network of `study.core.networks.LeakyRNN` for S seeds at once, drive, recurrence and
readout in one pass:

    d_t = α (u_t W_in + b) + σ ξ_t,  x_t = (1 − α) x_{t−1} + α tanh(x_{t−1}) W + d_t,
    z_t = tanh(x_t) W_out + b_out

with inputs u (S, T, B, I), noise ξ (S, T, B, N) unscaled, x0 (S, B, N), W_in (S, I, N),
b (S, N), W (S, N, N), W_out (S, N, O), b_out (S, O).

- `leaky_network(...)` -> (xs, ys, z): states, rates tanh(xs) and readout, differentiable in
  x0 and every weight (u and ξ are data);
- `leaky_network_last(...)` -> x_{T−1} without gradient (the transient);
- `leaky_states`, `leaky_last`, `leaky_scan_rates`: the bare recurrence on a given drive d,
  as `study.core.networks.leaky_scan`.

The compiled forward runs one seed's T steps back to back with its weights in cache, each
step one register-blocked (B × N)·(N × N) product with the drive, the update, tanh and the
readout fused around it; it keeps tanh(x_t), so neither the readout nor BPTT recomputes it.
The backward runs the same loop in reverse and accumulates every weight gradient step by step
(dL/dd_t is never stored). Values equal the torch path's to float rounding (another summation
order, a tanh within 2 ulp), not bit for bit. Without the compiled library, or for float64 or
CUDA tensors, every function runs torch code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from study.core._leaky import leaky_scan
from study.core._native import load

__all__ = [
    "usable",
    "tanh",
    "leaky_network",
    "leaky_network_sampled",
    "leaky_network_states",
    "leaky_network_last",
    "leaky_states",
    "leaky_last",
    "leaky_scan_rates",
    "gru_network",
    "gru_network_last",
    "native_scan",
]


def native_scan() -> bool:
    """Whether the compiled recurrence is in use in this process."""
    return load("kernels") is not None


def _usable(*tensors: Tensor | None) -> bool:
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors if t is not None)
        and load("kernels") is not None
    )


def usable(*tensors: Tensor | None) -> bool:
    """Whether the compiled kernels serve these tensors: float32 on the CPU, library loaded."""
    return _usable(*tensors)


def tanh(x: Tensor) -> Tensor:
    """torch.tanh(x), with the compiled kernel (within 2 ulp) where no gradient is recorded."""
    if (x.requires_grad and torch.is_grad_enabled()) or not _usable(x):
        return torch.tanh(x)
    x = x.contiguous()
    y = torch.empty_like(x)
    load("kernels").tanh_array(x.data_ptr(), y.data_ptr(), x.numel())
    return y


def _ptr(t: Tensor | None):
    return None if t is None else t.data_ptr()


def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().contiguous()


def _seed_strided(x: Tensor | None) -> tuple[Tensor | None, int]:
    """x (S, …) whose every seed block is contiguous (a time slice of a contiguous array is),
    with its seed stride; a copy when it is not."""
    if x is None:
        return None, 0
    x = x.detach()
    if x.shape[0] > 0 and not x[0].is_contiguous():
        x = x.contiguous()
    return x, x.stride(0) if x.dim() > 0 else 0


def _forward(
    u,
    noise,
    sigma,
    x0,
    w_in,
    b,
    w,
    w_out,
    b_out,
    alpha,
    *,
    states: bool,
    rates: bool,
    outputs: bool,
    last: bool,
):
    """The compiled forward; returns (xs, ys, r0, z, x_last), None where not asked for."""
    u, u_ss = _seed_strided(u)
    noise, noise_ss = _seed_strided(noise)
    x0, w_in, b, w, w_out, b_out = (_c(v) for v in (x0, w_in, b, w, w_out, b_out))
    s, bsz, n = x0.shape
    ref = u if u is not None else noise
    t_len = ref.shape[1]
    n_in = u.shape[-1] if u is not None else 0
    n_out = w_out.shape[-1] if (outputs and w_out is not None) else 0
    xs = torch.empty(s, t_len, bsz, n) if states else None
    ys = torch.empty(s, t_len, bsz, n) if rates else None
    r0 = torch.empty(s, bsz, n) if rates else None
    z = torch.empty(s, t_len, bsz, n_out) if n_out else None
    xl = torch.empty(s, bsz, n) if last else None
    load("kernels").leaky_net_forward(
        _ptr(u),
        u_ss,
        _ptr(noise),
        noise_ss,
        float(sigma),
        x0.data_ptr(),
        _ptr(w_in),
        _ptr(b),
        w.data_ptr(),
        _ptr(w_out),
        _ptr(b_out),
        float(alpha),
        s,
        t_len,
        bsz,
        n_in,
        n,
        n_out,
        _ptr(xs),
        _ptr(ys),
        _ptr(r0),
        _ptr(z),
        _ptr(xl),
    )
    return xs, ys, r0, z, xl


class _LeakyNet(torch.autograd.Function):
    """(xs, ys, z, ys[sample]) of the network; gradients for ξ, x0, W_in, b, W, W_out, b_out."""

    @staticmethod
    def forward(ctx, sigma, alpha, states, sample, u, noise, x0, w_in, b, w, w_out, b_out):
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None, not zeros
        xs, ys, r0, z, _ = _forward(
            u,
            noise,
            sigma,
            x0,
            w_in,
            b,
            w,
            w_out,
            b_out,
            alpha,
            states=states,
            rates=True,
            outputs=w_out is not None,
            last=False,
        )
        ctx.sigma, ctx.alpha = float(sigma), float(alpha)
        ctx.shapes = (
            u.shape[-1] if u is not None else 0,
            w_out.shape[-1] if w_out is not None else 0,
        )
        uu, ctx.u_ss = _seed_strided(u)
        sampled, row_map = None, None
        if sample is not None:  # rows t·B + b of each seed's rates, and where each went
            s, t_len, bsz, n = ys.shape
            flat = ys.view(s, t_len * bsz, n)
            sampled = torch.gather(flat, 1, sample.unsqueeze(-1).expand(-1, -1, n))
            row_map = torch.full((s, t_len * bsz), -1, dtype=torch.int32)
            row_map.scatter_(
                1,
                sample,
                torch.arange(sample.shape[1], dtype=torch.int32).expand_as(sample).contiguous(),
            )
        ctx.save_for_backward(uu, ys, r0, _c(w), _c(w_out), row_map)
        return xs, ys, z, sampled

    @staticmethod
    def backward(ctx, grad_xs, grad_ys, grad_z, grad_sampled):
        u, ys, r0, w, w_out, row_map = ctx.saved_tensors
        n_in, n_out = ctx.shapes
        s, t_len, bsz, n = ys.shape
        # (sigma, alpha, states, sample, u, noise, x0, w_in, b, w, w_out, b_out)
        need = ctx.needs_input_grad[2:]
        if need[2]:
            raise RuntimeError("leaky_network: no gradient for the inputs u (they are data)")

        def out(flag, *shape):
            return torch.empty(*shape) if flag else None

        g_noise = out(need[3], s, t_len, bsz, n)
        g_x0 = torch.empty(s, bsz, n)
        g_w_in, g_b, g_w = out(need[5], s, n_in, n), out(need[6], s, n), out(need[7], s, n, n)
        g_w_out, g_b_out = out(need[8], s, n, n_out), out(need[9], s, n_out)
        gs = _c(grad_sampled) if row_map is not None else None
        load("kernels").leaky_net_backward(
            _ptr(u),
            ctx.u_ss,
            ys.data_ptr(),
            r0.data_ptr(),
            None,
            w.data_ptr(),
            _ptr(w_out),
            ctx.alpha,
            s,
            t_len,
            bsz,
            n_in,
            n,
            n_out,
            _ptr(_c(grad_xs)),
            _ptr(_c(grad_ys)),
            _ptr(_c(grad_z)),
            _ptr(row_map if gs is not None else None),
            _ptr(gs),
            gs.shape[1] if gs is not None else 0,
            ctx.sigma,
            _ptr(g_noise),
            g_x0.data_ptr(),
            _ptr(g_w_in),
            _ptr(g_b),
            _ptr(g_w),
            _ptr(g_w_out),
            _ptr(g_b_out),
        )
        return (
            None,
            None,
            None,
            None,
            None,
            g_noise,
            g_x0 if need[4] else None,
            g_w_in,
            g_b,
            g_w,
            g_w_out,
            g_b_out,
        )


def _take_rows(x: Tensor, index: Tensor) -> Tensor:
    """x (S, M, N), index (S, K) -> (S, K, N): out[s, k] = x[s, index[s, k]]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _torch_network(u, noise, sigma, x0, w_in, b, w, w_out, b_out, alpha):
    """The same network in torch ops (the fallback): drive, `leaky_scan`, readout."""
    s, t_len, bsz, _ = (u if u is not None else noise).shape
    n = x0.shape[-1]
    d = torch.zeros(s, t_len, bsz, n, dtype=x0.dtype, device=x0.device)
    if u is not None:
        d = torch.baddbmm(
            b.unsqueeze(1), u.reshape(s, t_len * bsz, -1), w_in, beta=alpha, alpha=alpha
        ).view(s, t_len, bsz, n)
    if noise is not None:
        d = d + sigma * noise
    xs = leaky_scan(d, x0, w, alpha)
    ys = torch.tanh(xs)
    z = None
    if w_out is not None:
        z = torch.baddbmm(b_out.unsqueeze(1), ys.reshape(s, t_len * bsz, n), w_out).view(
            s, t_len, bsz, -1
        )
    return xs, ys, z


def leaky_network(
    u: Tensor,
    noise: Tensor | None,
    sigma: float,
    x0: Tensor,
    w_in: Tensor,
    b: Tensor,
    w: Tensor,
    w_out: Tensor | None,
    b_out: Tensor | None,
    alpha: float,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(xs, ys, z): states (S, T, B, N), rates tanh(xs) and readout (S, T, B, O) (None when
    w_out is None); differentiable in x0, W_in, b, W, W_out, b_out (and ξ)."""
    xs, ys, z, _ = leaky_network_sampled(u, noise, sigma, x0, w_in, b, w, w_out, b_out, alpha)
    return xs, ys, z


def leaky_network_sampled(
    u: Tensor,
    noise: Tensor | None,
    sigma: float,
    x0: Tensor,
    w_in: Tensor,
    b: Tensor,
    w: Tensor,
    w_out: Tensor | None,
    b_out: Tensor | None,
    alpha: float,
    *,
    sample: Tensor | None = None,
    states: bool = True,
) -> tuple[Tensor | None, Tensor, Tensor | None, Tensor | None]:
    """(xs, ys, z, ys_sampled): as `leaky_network`, plus the rates of the rows `sample`
    (S, K) (flat indices t·B + b, distinct within a seed) as (S, K, N), whose gradient flows
    back without a dense (S, T, B, N) tensor. states=False skips storing xs (None)."""
    if not _usable(u, noise, x0, w_in, b, w, w_out, b_out):
        xs, ys, z = _torch_network(u, noise, sigma, x0, w_in, b, w, w_out, b_out, alpha)
        sampled = None
        if sample is not None:
            sampled = _take_rows(ys.reshape(ys.shape[0], -1, ys.shape[-1]), sample)
        return xs, ys, z, sampled
    if not torch.is_grad_enabled():
        xs, ys, _, z, _ = _forward(
            u,
            noise,
            sigma,
            x0,
            w_in,
            b,
            w,
            w_out,
            b_out,
            alpha,
            states=states,
            rates=True,
            outputs=w_out is not None,
            last=False,
        )
        sampled = None
        if sample is not None:
            sampled = _take_rows(ys.view(ys.shape[0], -1, ys.shape[-1]), sample)
        return xs, ys, z, sampled
    return _LeakyNet.apply(sigma, alpha, states, sample, u, noise, x0, w_in, b, w, w_out, b_out)


@torch.no_grad()
def leaky_network_states(
    u: Tensor,
    noise: Tensor | None,
    sigma: float,
    x0: Tensor,
    w_in: Tensor,
    b: Tensor,
    w: Tensor,
    alpha: float,
) -> Tensor:
    """Only the states (S, T, B, N), no gradient (a critic batch)."""
    if not _usable(u, noise, x0, w_in, b, w):
        return _torch_network(u, noise, sigma, x0, w_in, b, w, None, None, alpha)[0]
    return _forward(
        u,
        noise,
        sigma,
        x0,
        w_in,
        b,
        w,
        None,
        None,
        alpha,
        states=True,
        rates=False,
        outputs=False,
        last=False,
    )[0]


@torch.no_grad()
def leaky_network_last(
    u: Tensor,
    noise: Tensor | None,
    sigma: float,
    x0: Tensor,
    w_in: Tensor,
    b: Tensor,
    w: Tensor,
    alpha: float,
) -> Tensor:
    """The last state x_{T−1} (S, B, N), no gradient; T = 0 gives x0."""
    if (u if u is not None else noise).shape[1] == 0:
        return x0
    if not _usable(u, noise, x0, w_in, b, w):
        return _torch_network(u, noise, sigma, x0, w_in, b, w, None, None, alpha)[0][:, -1]
    return _forward(
        u,
        noise,
        sigma,
        x0,
        w_in,
        b,
        w,
        None,
        None,
        alpha,
        states=False,
        rates=False,
        outputs=False,
        last=True,
    )[4]


# -- the bare recurrence on a given drive -------------------------------------------------------


@torch.no_grad()
def leaky_states(drive: Tensor, x0: Tensor, w: Tensor, alpha: float) -> Tensor:
    """Every state (S, T, B, N) of x_t = (1 − α) x_{t−1} + α tanh(x_{t−1}) W + d_t."""
    if not _usable(drive, x0, w):
        return leaky_scan(drive, x0, w, alpha)
    return _forward(
        None,
        drive,
        1.0,
        x0,
        None,
        None,
        w,
        None,
        None,
        alpha,
        states=True,
        rates=False,
        outputs=False,
        last=False,
    )[0]


@torch.no_grad()
def leaky_last(drive: Tensor, x0: Tensor, w: Tensor, alpha: float) -> Tensor:
    """The last state x_{T−1} (S, B, N) of the recurrence on drive; T = 0 gives x0."""
    if drive.shape[1] == 0:
        return x0
    if not _usable(drive, x0, w):
        return leaky_scan(drive, x0, w, alpha)[:, -1]
    return _forward(
        None,
        drive,
        1.0,
        x0,
        None,
        None,
        w,
        None,
        None,
        alpha,
        states=False,
        rates=False,
        outputs=False,
        last=True,
    )[4]


def leaky_scan_rates(drive: Tensor, x0: Tensor, w: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """(xs, ys): the states (S, T, B, N) on drive and their rates tanh(xs), differentiable in
    drive, x0 and W."""
    xs, ys, _ = leaky_network(None, drive, 1.0, x0, None, None, w, None, None, alpha)
    return xs, ys


# -- the GRU ------------------------------------------------------------------------------------


def _gru_forward(
    u,
    noise,
    sigma,
    h0,
    w,
    b,
    u_rec,
    b_rec,
    w_out,
    b_out,
    *,
    states: bool,
    outputs: bool,
    last: bool,
):
    u, u_ss = _seed_strided(u)
    noise, noise_ss = _seed_strided(noise)
    h0, w, b, u_rec, b_rec, w_out, b_out = (_c(v) for v in (h0, w, b, u_rec, b_rec, w_out, b_out))
    s, t_len, bsz, n_in = u.shape
    n = h0.shape[-1]
    n_out = w_out.shape[-1] if (outputs and w_out is not None) else 0
    hs = torch.empty(s, t_len, bsz, n) if states else None
    z = torch.empty(s, t_len, bsz, n_out) if n_out else None
    hl = torch.empty(s, bsz, n) if last else None
    load("kernels").gru_forward(
        u.data_ptr(),
        u_ss,
        _ptr(noise),
        noise_ss,
        float(sigma),
        h0.data_ptr(),
        w.data_ptr(),
        b.data_ptr(),
        u_rec.data_ptr(),
        b_rec.data_ptr(),
        _ptr(w_out),
        _ptr(b_out),
        s,
        t_len,
        bsz,
        n_in,
        n,
        n_out,
        _ptr(hs),
        _ptr(z),
        _ptr(hl),
    )
    return hs, z, hl


class _GRUNet(torch.autograd.Function):
    """(hs, z) of the GRU; gradients for h0, W, b, U, b_rec, W_out, b_out."""

    @staticmethod
    def forward(ctx, sigma, u, noise, h0, w, b, u_rec, b_rec, w_out, b_out):
        ctx.set_materialize_grads(False)
        hs, z, _ = _gru_forward(
            u,
            noise,
            sigma,
            h0,
            w,
            b,
            u_rec,
            b_rec,
            w_out,
            b_out,
            states=True,
            outputs=w_out is not None,
            last=False,
        )
        uu, u_ss = _seed_strided(u)
        ctx.u_ss = u_ss
        ctx.n_out = w_out.shape[-1] if w_out is not None else 0
        ctx.save_for_backward(uu, hs, _c(h0), _c(w), _c(b), _c(u_rec), _c(b_rec), _c(w_out))
        return hs, z

    @staticmethod
    def backward(ctx, grad_hs, grad_z):
        u, hs, h0, w, b, u_rec, b_rec, w_out = ctx.saved_tensors
        s, t_len, bsz, n = hs.shape
        n_in, n_out = u.shape[-1], ctx.n_out
        need = ctx.needs_input_grad  # (sigma, u, noise, h0, w, b, u_rec, b_rec, w_out, b_out)
        if need[1] or need[2]:
            raise RuntimeError("gru_network: no gradient for the inputs or the noise (data)")

        def out(flag, *shape):
            return torch.empty(*shape) if flag else None

        g_h0 = torch.empty(s, bsz, n)
        g_w, g_b = out(need[4], s, n_in, 3 * n), out(need[5], s, 3 * n)
        g_u, g_br = out(need[6], s, n, 3 * n), out(need[7], s, 3 * n)
        g_wo, g_bo = out(need[8], s, n, n_out), out(need[9], s, n_out)
        load("kernels").gru_backward(
            u.data_ptr(),
            ctx.u_ss,
            hs.data_ptr(),
            h0.data_ptr(),
            w.data_ptr(),
            b.data_ptr(),
            u_rec.data_ptr(),
            b_rec.data_ptr(),
            _ptr(w_out),
            s,
            t_len,
            bsz,
            n_in,
            n,
            n_out,
            _ptr(_c(grad_hs)),
            _ptr(_c(grad_z)),
            g_h0.data_ptr(),
            _ptr(g_w),
            _ptr(g_b),
            _ptr(g_u),
            _ptr(g_br),
            _ptr(g_wo),
            _ptr(g_bo),
        )
        return (None, None, None, g_h0 if need[3] else None, g_w, g_b, g_u, g_br, g_wo, g_bo)


def _torch_gru(u, noise, sigma, h0, w, b, u_rec, b_rec, w_out, b_out):
    """The same GRU in torch ops (the fallback), step by step as networks.GRU runs it."""
    s, t_len, bsz, n_in = u.shape
    n = h0.shape[-1]
    gx_all = torch.baddbmm(b.unsqueeze(1), u.reshape(s, t_len * bsz, n_in), w)
    gx_all = gx_all.view(s, t_len, bsz, 3 * n)
    h, states = h0, []
    for t, gx in enumerate(gx_all.unbind(1)):
        gh = torch.baddbmm(b_rec.unsqueeze(1), h, u_rec)
        zr = torch.sigmoid(gx[..., : 2 * n] + gh[..., : 2 * n])
        z, r = zr[..., :n], zr[..., n:]
        cand = torch.tanh(gx[..., 2 * n :] + r * gh[..., 2 * n :])
        h = cand + z * (h - cand)
        if noise is not None:
            h = h + sigma * noise[:, t]
        states.append(h)
    hs = torch.stack(states, dim=1)
    zo = None
    if w_out is not None:
        zo = torch.baddbmm(b_out.unsqueeze(1), hs.reshape(s, t_len * bsz, n), w_out).view(
            s, t_len, bsz, -1
        )
    return hs, zo


def gru_network(
    u: Tensor,
    noise: Tensor | None,
    sigma: float,
    h0: Tensor,
    w: Tensor,
    b: Tensor,
    u_rec: Tensor,
    b_rec: Tensor,
    w_out: Tensor | None,
    b_out: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """(hs, z): the GRU's states (S, T, B, N) and readout (S, T, B, O) (None when w_out is
    None), differentiable in h0 and every weight; u (S, T, B, I) and ξ (S, T, B, N) are data
    (a time slice of a longer array is read in place)."""
    if not _usable(u, noise, h0, w, b, u_rec, b_rec, w_out, b_out):
        return _torch_gru(u, noise, sigma, h0, w, b, u_rec, b_rec, w_out, b_out)
    if not torch.is_grad_enabled():
        hs, z, _ = _gru_forward(
            u,
            noise,
            sigma,
            h0,
            w,
            b,
            u_rec,
            b_rec,
            w_out,
            b_out,
            states=True,
            outputs=w_out is not None,
            last=False,
        )
        return hs, z
    return _GRUNet.apply(sigma, u, noise, h0, w, b, u_rec, b_rec, w_out, b_out)


@torch.no_grad()
def gru_network_last(
    u: Tensor,
    noise: Tensor | None,
    sigma: float,
    h0: Tensor,
    w: Tensor,
    b: Tensor,
    u_rec: Tensor,
    b_rec: Tensor,
) -> Tensor:
    """The GRU's last state h_{T−1} (S, B, N), no gradient; T = 0 gives h0."""
    if u.shape[1] == 0:
        return h0
    if not _usable(u, noise, h0, w, b, u_rec, b_rec):
        return _torch_gru(u, noise, sigma, h0, w, b, u_rec, b_rec, None, None)[0][:, -1]
    return _gru_forward(
        u, noise, sigma, h0, w, b, u_rec, b_rec, None, None, states=False, outputs=False, last=True
    )[2]
