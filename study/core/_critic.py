"""The MI critic's joint and shuffled scores in one compiled pass (study/core/_native/kernels.cpp).

`critic_scores(critic, a, bj, bs)` returns the (R, 2M) scores of a `study.core.mi.Critic` on
the joint rows (a, bj) and the shuffled rows (a, bs): the same function as
`critic.head(critic.project_a(a) + critic.project_b(b))` for each b, differentiable in a, bj,
bs and every critic weight. The compiled forward runs both branches of one replica together,
48 rows at a time, so a's projection is computed once and each layer's activations stay in
cache between the register-blocked products; the backward is written out by hand (no autograd
graph of ~20 nodes per step) and accumulates every weight gradient in the same pass.

`usable(critic, a)` says whether the compiled pass applies: a float32 critic on the CPU whose
width is a multiple of 16, and the compiled library loaded. Otherwise callers keep the torch
code. Values equal the torch path's to float rounding, not bit for bit.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from study.core._native import load

__all__ = ["critic_scores", "usable"]


def usable(critic, a: Tensor) -> bool:
    """Whether `critic_scores` can serve this critic and input."""
    width = critic.w_a.shape[-1]
    return (
        a.device.type == "cpu"
        and critic.compute_dtype == torch.float32
        and a.dtype == torch.float32
        and width % 16 == 0
        and load("kernels") is not None
    )


def _ptrs(tensors) -> ctypes.Array | None:
    if not tensors:
        return None
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


def _ptr(t: Tensor | None):
    return None if t is None else t.data_ptr()


class _Scores(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        keep: bool,
        slope: float,
        depth: int,
        perm,
        a,
        bj,
        bs,
        w_a,
        w_b,
        b_1,
        w_o,
        b_o,
        *hidden,
    ):
        ctx.keep = keep  # activations are kept for a backward only when one can follow
        a, bj = a.contiguous(), bj.contiguous()
        bs = bs.contiguous() if bs is not None else None
        perm = perm.contiguous() if perm is not None else None
        r, m, da = a.shape
        db, h = w_b.shape[1], w_a.shape[2]
        w_h, b_h = [w.contiguous() for w in hidden[0::2]], [b.contiguous() for b in hidden[1::2]]
        params = [w_a.contiguous(), w_b.contiguous(), b_1.contiguous(), w_o.contiguous()]
        bo = b_o.contiguous() if b_o is not None else None
        scores = torch.empty(r, 2 * m)
        saved = [torch.empty(r, 2 * m, h) for _ in range(depth)] if ctx.keep else []
        load("kernels").critic_forward(
            r,
            m,
            da,
            db,
            h,
            depth,
            a.data_ptr(),
            bj.data_ptr(),
            _ptr(bs),
            _ptr(perm),
            params[0].data_ptr(),
            params[1].data_ptr(),
            params[2].data_ptr(),
            _ptrs(w_h),
            _ptrs(b_h),
            params[3].data_ptr(),
            _ptr(bo),
            float(slope),
            scores.data_ptr(),
            _ptrs(saved),
        )
        ctx.slope, ctx.depth, ctx.has_bo = float(slope), depth, b_o is not None
        ctx.has_bs = bs is not None
        ctx.save_for_backward(a, bj, bs if bs is not None else perm, *params, *w_h, *saved)
        return scores

    @staticmethod
    def backward(ctx, dscores: Tensor):
        depth = ctx.depth
        a, bj, third, w_a, w_b, b_1, w_o, *rest = ctx.saved_tensors
        bs, perm = (third, None) if ctx.has_bs else (None, third)
        w_h, saved = rest[: depth - 1], rest[depth - 1 :]
        r, m, da = a.shape
        db, h = w_b.shape[1], w_a.shape[2]
        need = ctx.needs_input_grad[2:]  # (slope, depth, a, bj, bs, w_a, …, hidden…)
        params = any(need[5:])
        grads = {}
        if params:
            grads = {
                "w_a": torch.empty_like(w_a),
                "w_b": torch.empty_like(w_b),
                "b_1": torch.empty_like(b_1),
                "w_o": torch.empty_like(w_o),
                "b_o": torch.empty(r, 1, 1) if ctx.has_bo else None,
                "w_h": [torch.empty_like(w) for w in w_h],
                "b_h": [torch.empty(r, 1, h) for _ in w_h],
            }
        d_a = torch.empty_like(a) if need[2] else None
        d_bj = torch.empty_like(bj) if need[3] else None
        d_bs = torch.empty_like(bs) if need[4] and bs is not None else None
        load("kernels").critic_backward(
            r,
            m,
            da,
            db,
            h,
            depth,
            a.data_ptr(),
            bj.data_ptr(),
            _ptr(bs),
            _ptr(perm),
            w_a.data_ptr(),
            w_b.data_ptr(),
            _ptrs(list(w_h)),
            w_o.data_ptr(),
            ctx.slope,
            _ptrs(list(saved)),
            dscores.contiguous().data_ptr(),
            _ptr(grads.get("w_a")),
            _ptr(grads.get("w_b")),
            _ptr(grads.get("b_1")),
            _ptrs(grads.get("w_h")),
            _ptrs(grads.get("b_h")),
            _ptr(grads.get("w_o")),
            _ptr(grads.get("b_o")),
            _ptr(d_a),
            _ptr(d_bj),
            _ptr(d_bs),
        )
        hidden = []
        for i in range(depth - 1):
            hidden += [grads["w_h"][i] if params else None, grads["b_h"][i] if params else None]
        return (
            None,
            None,
            None,
            None,
            d_a,
            d_bj,
            d_bs,
            grads.get("w_a"),
            grads.get("w_b"),
            grads.get("b_1"),
            grads.get("w_o"),
            grads.get("b_o"),
            *hidden,
        )


def critic_scores(
    critic, a: Tensor, bj: Tensor, bs: Tensor | None = None, *, perm: Tensor | None = None
) -> Tensor:
    """(R, 2M) critic scores: joint rows (a, bj) in [:, :M], shuffled rows (a, bs) in [:, M:].

    a (R, M, da), bj and bs (R, M, db). Instead of bs, `perm` (R, M) int64 may say that the
    shuffled rows are bj's rows permuted (bs[r, m] = bj[r, perm[r, m]], the noisy_partner
    mode): b's projection is then computed once and permuted. Requires `usable(critic, a)`.
    """
    if (bs is None) == (perm is None):
        raise ValueError("critic_scores(): give exactly one of bs and perm")
    slope = 0.0 if critic.activation == "relu" else float(critic.leaky_slope)
    hidden = []
    for w, b in zip(critic.w_h, critic.b_h):
        hidden += [w, b]
    inputs = (a, bj, bs, critic.w_a, critic.w_b, critic.b_1, critic.w_o, critic.b_o, *hidden)
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    return _Scores.apply(keep, slope, 1 + len(critic.w_h), perm, *inputs)


# -- the two statistics DV and MINE need, in one pass ---------------------------------------


class _Stats(torch.autograd.Function):
    """(jm, lm) per replica, with both gradients computed in the forward pass (per replica
    they are scaled by the incoming gradients in backward: replicas share no weights)."""

    @staticmethod
    def forward(
        ctx,
        grads: bool,
        slope: float,
        depth: int,
        perm,
        a,
        bj,
        bs,
        w_a,
        w_b,
        b_1,
        w_o,
        b_o,
        *hidden,
    ):
        a, bj = a.contiguous(), bj.contiguous()
        bs = bs.contiguous() if bs is not None else None
        perm = perm.contiguous() if perm is not None else None
        r, m, da = a.shape
        db, h = w_b.shape[1], w_a.shape[2]
        w_h = [w.contiguous() for w in hidden[0::2]]
        b_h = [b.contiguous() for b in hidden[1::2]]
        params = [w_a.contiguous(), w_b.contiguous(), b_1.contiguous(), w_o.contiguous()]
        bo = b_o.contiguous() if b_o is not None else None
        jm, lm = torch.empty(r), torch.empty(r)
        need = ctx.needs_input_grad[4:]  # a, bj, bs, w_a, w_b, b_1, w_o, b_o, hidden…
        want_params = grads and any(need[3:])
        sets = {}
        if want_params:
            sets = {
                "w_a": torch.empty(2, *w_a.shape),
                "w_b": torch.empty(2, *w_b.shape),
                "b_1": torch.empty(2, *b_1.shape),
                "w_o": torch.empty(2, *w_o.shape),
                "b_o": torch.empty(2, r, 1, 1) if bo is not None else None,
                "w_h": [torch.empty(2, *w.shape) for w in w_h],
                "b_h": [torch.empty(2, *b.shape) for b in b_h],
            }
        want_inputs = grads and any(need[:3])
        d_a = torch.empty(2, *a.shape) if want_inputs and need[0] else None
        # with perm, bj's gradient takes both sets (bs is bj's rows); without, bj set 0 only
        d_bj = torch.zeros(2, *bj.shape) if want_inputs and (need[1] or perm is not None) else None
        d_bs = torch.zeros(2, *bs.shape) if want_inputs and bs is not None and need[2] else None
        any_grads = want_params or want_inputs
        load("kernels").critic_stats(
            r,
            m,
            da,
            db,
            h,
            depth,
            a.data_ptr(),
            bj.data_ptr(),
            _ptr(bs),
            _ptr(perm),
            params[0].data_ptr(),
            params[1].data_ptr(),
            params[2].data_ptr(),
            _ptrs(w_h),
            _ptrs(b_h),
            params[3].data_ptr(),
            _ptr(bo),
            float(slope),
            jm.data_ptr(),
            lm.data_ptr(),
            int(any_grads),
            _ptr(sets.get("w_a")),
            _ptr(sets.get("w_b")),
            _ptr(sets.get("b_1")),
            _ptrs(sets.get("w_h")),
            _ptrs(sets.get("b_h")),
            _ptr(sets.get("w_o")),
            _ptr(sets.get("b_o")),
            _ptr(d_a),
            _ptr(d_bj),
            _ptr(d_bs),
        )
        ctx.depth, ctx.perm = depth, perm is not None
        ctx.want_params = want_params
        ctx.sets = sets if want_params else None
        ctx.inputs = (d_a, d_bj, d_bs)
        return jm, lm

    @staticmethod
    def backward(ctx, g_jm, g_lm):
        r = (
            (ctx.inputs[0] if ctx.inputs[0] is not None else ctx.inputs[1]).shape[1]
            if any(x is not None for x in ctx.inputs)
            else None
        )

        def combine(pair):  # pair (2, R, …): g_jm[r] · set 0 + g_lm[r] · set 1
            if pair is None:
                return None
            shape = (-1,) + (1,) * (pair.dim() - 2)
            out = pair[0] * (g_jm.view(shape) if g_jm is not None else 0.0)
            if g_lm is not None:
                out = out + pair[1] * g_lm.view(shape)
            return out

        del r
        d_a, d_bj, d_bs = (combine(x) for x in ctx.inputs)
        need = ctx.needs_input_grad[4:]
        grads = [None] * 8
        hidden = []
        if ctx.want_params:
            s = ctx.sets
            grads[3:7] = [
                combine(s["w_a"]),
                combine(s["w_b"]),
                combine(s["b_1"]),
                combine(s["w_o"]),
            ]
            grads[7] = combine(s["b_o"])
            for w, b in zip(s["w_h"], s["b_h"], strict=True):
                hidden += [combine(w), combine(b)]
        else:
            hidden = [None] * (2 * (ctx.depth - 1))
        grads[0] = d_a if need[0] else None
        grads[1] = d_bj if need[1] else None
        grads[2] = d_bs if need[2] else None
        return (None, None, None, None, *grads, *hidden)


def critic_stats(
    critic, a: Tensor, bj: Tensor, bs: Tensor | None = None, *, perm: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(jm, lm), each (R,): the mean critic score on the joint rows (a, bj) and the log mean
    exp of the scores on the shuffled rows (a, bs) (or bs = bj[perm]), differentiable in the
    inputs and every weight; the same functions of `critic_scores(...)` as
    `scores[:, :M].mean(1)` and `log_mean_exp(scores[:, M:])`, computed without keeping the
    activations (each chunk of rows goes forward and backward while in cache)."""
    if (bs is None) == (perm is None):
        raise ValueError("critic_stats(): give exactly one of bs and perm")
    slope = 0.0 if critic.activation == "relu" else float(critic.leaky_slope)
    hidden = []
    for w, b in zip(critic.w_h, critic.b_h, strict=True):
        hidden += [w, b]
    inputs = (a, bj, bs, critic.w_a, critic.w_b, critic.b_1, critic.w_o, critic.b_o, *hidden)
    grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    return _Stats.apply(grads, slope, 1 + len(critic.w_h), perm, *inputs)
