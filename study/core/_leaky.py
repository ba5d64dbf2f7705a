"""The leaky recurrence in torch ops with a hand-written BPTT (`leaky_scan`), optionally
replayed as captured CUDA graphs (STUDY_CUDA_GRAPHS).

The torch path of the leaky RNN (study.core.networks re-exports `leaky_scan`) and the fallback of
the compiled kernels (study.core._scan), kept apart from both so neither imports the other.
"""

from __future__ import annotations

import torch
from torch import Tensor

from study.contract import settings

__all__ = ["leaky_scan", "cuda_graphs_enabled"]


class _LeakyScan(torch.autograd.Function):
    """x_t = (1 − α)·x_{t−1} + α·tanh(x_{t−1}) W + d_t, with hand-written BPTT.

    Autograd over a 2000-step Python loop records ~5 nodes per step and its backward is dominated
    by per-node overhead; here the backward is one batched matmul and two fused element-wise ops
    per step, plus one large matmul for dW over all steps at once.
    """

    @staticmethod
    def forward(ctx, drive: Tensor, x0: Tensor, w: Tensor, alpha: float) -> Tensor:
        # drive (S, T, B, N); x0 (S, B, N); w (S, N, N) -> xs (S, T, B, N)
        if drive.is_cuda and cuda_graphs_enabled():
            xs = _graphed("forward", _scan_forward, (drive, x0, w), alpha)[0]
        else:
            xs = torch.empty_like(drive)
            _scan_forward(drive, x0, w, alpha, xs)
        ctx.save_for_backward(x0, w, xs)
        ctx.alpha = alpha
        return xs

    @staticmethod
    def backward(ctx, grad_xs: Tensor):
        x0, w, xs = ctx.saved_tensors
        alpha = ctx.alpha
        grad_xs = grad_xs.contiguous()  # a loss on a transposed view hands us strided gradients
        s, n_t, b, n = xs.shape
        # rates r_{t-1} feeding step t, and tanh' at those states
        r_prev = torch.tanh(torch.cat([x0.unsqueeze(1), xs[:, :-1]], dim=1))  # (S, T, B, N)
        dtanh = 1.0 - r_prev * r_prev
        w_t = w.transpose(1, 2).contiguous()
        if grad_xs.is_cuda and cuda_graphs_enabled():
            grad_drive, delta = _graphed("backward", _scan_backward, (grad_xs, w_t, dtanh), alpha)
        else:
            grad_drive = torch.empty_like(grad_xs)
            delta = torch.empty_like(x0)
            _scan_backward(grad_xs, w_t, dtanh, alpha, grad_drive, delta)
        grad_w = None
        if ctx.needs_input_grad[2]:
            grad_w = torch.bmm(r_prev.view(s, -1, n).transpose(1, 2), grad_drive.view(s, -1, n))
            grad_w.mul_(alpha)
        return grad_drive, delta, grad_w, None


def _scan_forward(drive: Tensor, x0: Tensor, w: Tensor, alpha: float, xs: Tensor) -> None:
    """The forward recurrence into xs (S, T, B, N); 4 kernels per step."""
    x = x0
    for t in range(drive.shape[1]):
        carry = torch.add(drive[:, t], x, alpha=1.0 - alpha)
        x = torch.baddbmm(carry, torch.tanh(x), w, alpha=alpha)
        xs[:, t] = x


def _scan_backward(
    grad_xs: Tensor,
    w_t: Tensor,
    dtanh: Tensor,
    alpha: float,
    grad_drive: Tensor,
    delta_out: Tensor,
) -> None:
    """BPTT through the recurrence: dL/d drive into grad_drive, dL/dx0 into delta_out."""
    delta = torch.zeros_like(delta_out)
    for t in range(grad_xs.shape[1] - 1, -1, -1):
        delta = delta + grad_xs[:, t]  # dL/dx_t
        grad_drive[:, t] = delta
        back = torch.bmm(delta, w_t)
        delta = torch.addcmul(delta * (1.0 - alpha), back, dtanh[:, t], value=alpha)
    delta_out.copy_(delta)


# ----------------------------------------------------------------------------------------------
# CUDA graphs of the scan loops (opt-in: STUDY_CUDA_GRAPHS=1)

_GRAPHS: dict[tuple, tuple] = {}  # key -> (graph, static inputs, static outputs), LRU order
_MAX_GRAPHS = 8


def cuda_graphs_enabled() -> bool:
    """Whether leaky scans on CUDA replay captured CUDA graphs (env STUDY_CUDA_GRAPHS=1).

    A paper-wm epoch runs the 3000-step recurrence 11 times and its BPTT once, ~4 small kernels
    per step: on a GPU that is ~140 000 launches, each costing more than its kernel. A graph
    replays a whole loop as one launch. Opt-in until the GPU check in bench/gpu.sh confirms it
    (the results equal the eager loop's; only the launch pattern differs).
    """
    return settings.cuda_graphs()


def _graphed(kind: str, loop, inputs: tuple[Tensor, ...], alpha: float) -> tuple[Tensor, ...]:
    """Run `loop(*inputs, alpha, *outputs)` by replaying a CUDA graph captured for these shapes.

    Inputs are copied into the graph's static tensors and its outputs cloned out, so callers
    own what they get (a later replay overwrites the static outputs). One graph per (kind,
    shapes, dtype, device, alpha), at most _MAX_GRAPHS kept (least recently used dropped).
    """
    key = (
        kind,
        tuple(tuple(x.shape) for x in inputs),
        inputs[0].dtype,
        inputs[0].device,
        float(alpha),
    )
    entry = _GRAPHS.pop(key, None)
    if entry is None:
        static_in = tuple(x.detach().clone() for x in inputs)
        if kind == "forward":
            static_out = (torch.empty_like(static_in[0]),)
        else:  # grad_drive like grad_xs, dL/dx0 like one step of it
            static_out = (torch.empty_like(static_in[0]), torch.empty_like(static_in[0][:, 0]))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside capture (cuBLAS handles, workspaces)
            loop(*static_in, alpha, *static_out)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: autograd runs the backward's capture on its own device thread
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            loop(*static_in, alpha, *static_out)
        entry = (graph, static_in, static_out)
        while len(_GRAPHS) >= _MAX_GRAPHS:
            _GRAPHS.pop(next(iter(_GRAPHS)))
    _GRAPHS[key] = entry
    graph, static_in, static_out = entry
    for dst, src in zip(static_in, inputs):
        dst.copy_(src)
    graph.replay()
    return tuple(x.clone() for x in static_out)


def leaky_scan(drive: Tensor, x0: Tensor, w: Tensor, alpha: float) -> Tensor:
    """Run the leaky recurrence; drive (S, T, B, N), x0 (S, B, N), w (S, N, N) -> (S, T, B, N)."""
    return _LeakyScan.apply(drive, x0, w, alpha)
