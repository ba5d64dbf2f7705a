"""The leaky recurrence on compiled CPU kernels (study/core/_native/kernels.cpp), torch otherwise.

x_t = (1 − α)·x_{t−1} + α·tanh(x_{t−1}) W + d_t for S seeds at once: drive d (S, T, B, N),
x0 (S, B, N), W (S, N, N), as `study.core.networks.leaky_scan`. Three entry points:

- `leaky_states(d, x0, W, α)`: every state x_t, (S, T, B, N), without gradient (critic batches);
- `leaky_last(d, x0, W, α)`: only x_{T−1}, (S, B, N), without gradient (the transient);
- `leaky_scan_rates(d, x0, W, α)`: (xs, ys) with ys = tanh(xs), differentiable in d, x0, W.

The compiled forward runs one seed's T steps back to back with W in cache and the whole step,
tanh included, fused around one register-blocked (B × N)·(N × N) product; it keeps tanh(x_t)
of every step, so neither the readout nor BPTT recomputes it. The backward is the same loop
run backwards, then dL/dW = α Σ_t tanh(x_{t−1})ᵀ dL/dd_t as one batched matrix product.
Values equal the torch path's to float rounding (another summation order and a tanh within
2 ulp), not bit for bit. Without the compiled library every function runs the torch code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from study.core._native import load

__all__ = ["leaky_states", "leaky_last", "leaky_scan_rates", "native_scan"]


def native_scan() -> bool:
    """Whether the compiled recurrence is in use in this process."""
    return load("kernels") is not None


def _usable(*tensors: Tensor) -> bool:
    return (all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and load("kernels") is not None)


def _ptr(t: Tensor | None):
    return None if t is None else t.data_ptr()


def _forward(drive: Tensor, x0: Tensor, w: Tensor, alpha: float, *, states: bool,
             rates: bool, last: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    drive, x0, w = drive.contiguous(), x0.contiguous(), w.contiguous()
    s, t, b, n = drive.shape
    xs = torch.empty_like(drive) if states else None
    rs = torch.empty(s, t + 1, b, n) if rates else None
    xl = torch.empty(s, b, n) if last else None
    load("kernels").leaky_forward(drive.data_ptr(), x0.data_ptr(), w.data_ptr(), float(alpha),
                                  s, t, b, n, _ptr(xs), _ptr(rs), _ptr(xl))
    return xs, rs, xl


def _torch_states(drive: Tensor, x0: Tensor, w: Tensor, alpha: float) -> Tensor:
    from study.core.networks import _scan_forward  # the reference loop

    xs = torch.empty_like(drive)
    _scan_forward(drive, x0, w, alpha, xs)
    return xs


@torch.no_grad()
def leaky_states(drive: Tensor, x0: Tensor, w: Tensor, alpha: float) -> Tensor:
    """Every state (S, T, B, N) of the recurrence, no gradient."""
    if not _usable(drive, x0, w):
        return _torch_states(drive, x0, w, alpha)
    return _forward(drive, x0, w, alpha, states=True, rates=False, last=False)[0]


@torch.no_grad()
def leaky_last(drive: Tensor, x0: Tensor, w: Tensor, alpha: float) -> Tensor:
    """The last state x_{T−1} (S, B, N), no gradient; T = 0 gives x0."""
    if drive.shape[1] == 0:
        return x0
    if not _usable(drive, x0, w):
        return _torch_states(drive, x0, w, alpha)[:, -1]
    return _forward(drive, x0, w, alpha, states=False, rates=False, last=True)[2]


class _LeakyRates(torch.autograd.Function):
    """(xs, tanh(xs)) with BPTT in the compiled kernels; gradients for drive, x0 and W."""

    @staticmethod
    def forward(ctx, drive: Tensor, x0: Tensor, w: Tensor, alpha: float):
        xs, rates, _ = _forward(drive, x0, w, alpha, states=True, rates=True, last=False)
        ctx.save_for_backward(w, rates)
        ctx.alpha = float(alpha)
        return xs, rates[:, 1:]  # rates[:, t + 1] = tanh(x_t)

    @staticmethod
    def backward(ctx, grad_xs: Tensor | None, grad_ys: Tensor | None):
        w, rates = ctx.saved_tensors
        s, t1, b, n = rates.shape
        t = t1 - 1
        gx = grad_xs.contiguous() if grad_xs is not None else None
        gy = grad_ys.contiguous() if grad_ys is not None else None
        grad_drive = torch.empty(s, t, b, n)
        grad_x0 = torch.empty(s, b, n)
        load("kernels").leaky_backward(_ptr(gx), _ptr(gy), rates.data_ptr(), w.contiguous().data_ptr(),
                                       ctx.alpha, s, t, b, n, grad_drive.data_ptr(),
                                       grad_x0.data_ptr())
        grad_w = None
        if ctx.needs_input_grad[2]:
            # dL/dW = α Σ_t tanh(x_{t−1})ᵀ dL/dd_t: (S, N, T·B) · (S, T·B, N)
            grad_w = torch.bmm(rates[:, :t].reshape(s, t * b, n).transpose(1, 2),
                               grad_drive.view(s, t * b, n)).mul_(ctx.alpha)
        return grad_drive, grad_x0, grad_w, None


def leaky_scan_rates(drive: Tensor, x0: Tensor, w: Tensor, alpha: float
                     ) -> tuple[Tensor, Tensor]:
    """(xs, ys): the states (S, T, B, N) and their rates tanh(xs), differentiable."""
    if not _usable(drive, x0, w):
        from study.core.networks import leaky_scan

        xs = leaky_scan(drive, x0, w, alpha)
        return xs, torch.tanh(xs)
    return _LeakyRates.apply(drive, x0, w, alpha)
