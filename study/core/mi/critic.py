"""The critic T(a, b) of the MI bounds: a small MLP batched over R = S·P replicas, one per (seed,
term), in float32 or with bfloat16 matrix products.

Shapes: a (R, M, da), b (R, M, db) -> scores (R, M); every weight has the leading replica axis R.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from study.core.networks import glorot_uniform

__all__ = ["Critic", "PRECISIONS", "compute_dtype"]

PRECISIONS = ("float32", "bfloat16")


class Critic(nn.Module):
    """T(a, b) = w_outᵀ φ(… φ(a W_a + b W_b + c₁) …) + c_out, batched over R replicas.

    The first layer is two dense maps summed (docs/method.md §4.3), Glorot-uniform kernels, zero
    biases. `depth` hidden layers of `width` units with ReLU or LeakyReLU.

    `precision` "bfloat16" runs every matrix product (and the activations between them) in
    bfloat16 with float32 accumulation, on bf16 copies of the float32 weights made per call, so
    gradients and the optimiser stay float32; the scores come back as float32 and everything
    after them (log-mean-exp, the bound) is float32. The casts are explicit rather than
    autocast, so CPU and CUDA take the same path and autocast's per-op dispatch is not paid.
    Pays where the hardware has bf16 matrix units (AMX or AVX512-BF16 CPUs, tensor-core GPUs);
    elsewhere oneDNN emulates it and it is slower than float32 (bench/bench_precision.py
    records which a machine has).
    """

    def __init__(
        self,
        n_replicas: int,
        dim_a: int,
        dim_b: int,
        *,
        width: int = 512,
        depth: int = 2,
        activation: str = "relu",
        leaky_slope: float = 0.25,
        out_bias: bool = True,
        precision: str = "float32",
        seeds: list[int] | None = None,
    ):
        super().__init__()
        self.compute_dtype = compute_dtype(precision)
        if self.compute_dtype == torch.bfloat16:  # float32 accumulation on CUDA (process-wide)
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        if activation not in ("relu", "leaky_relu"):
            raise ValueError(
                f"Critic: activation must be 'relu' or 'leaky_relu', got {activation!r}"
            )
        if depth < 1 or width < 1:
            raise ValueError(
                f"Critic: depth and width must be >= 1, got depth={depth}, width={width}"
            )
        seeds = seeds if seeds is not None else list(range(n_replicas))
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.activation, self.leaky_slope = activation, leaky_slope
        self.w_a = nn.Parameter(glorot_uniform(gens, dim_a, width))
        self.w_b = nn.Parameter(glorot_uniform(gens, dim_b, width))
        self.b_1 = nn.Parameter(torch.zeros(n_replicas, 1, width))
        self.w_h = nn.ParameterList(
            [nn.Parameter(glorot_uniform(gens, width, width)) for _ in range(depth - 1)]
        )
        self.b_h = nn.ParameterList(
            [nn.Parameter(torch.zeros(n_replicas, 1, width)) for _ in range(depth - 1)]
        )
        self.w_o = nn.Parameter(glorot_uniform(gens, width, 1))
        self.b_o = nn.Parameter(torch.zeros(n_replicas, 1, 1)) if out_bias else None

    def _act_(self, h: Tensor) -> Tensor:
        # in place: h is always a fresh pre-activation here, and a new (R, M, H) tensor per
        # layer costs an allocation and a memory pass as large as the op itself on a CPU
        if self.activation == "relu":
            return torch.relu_(h)
        return nn.functional.leaky_relu_(h, self.leaky_slope)

    def _lp(self, x: Tensor) -> Tensor:
        """x in the compute dtype (a no-op in float32; a differentiable cast otherwise)."""
        return x if x.dtype == self.compute_dtype else x.to(self.compute_dtype)

    def project_a(self, a: Tensor) -> Tensor:
        """(R, M, da) -> (R, M, H) in the compute dtype; includes the first-layer bias."""
        return torch.baddbmm(self._lp(self.b_1), self._lp(a), self._lp(self.w_a))

    def project_b(self, b: Tensor) -> Tensor:
        """(R, M, db) -> (R, M, H) in the compute dtype."""
        return torch.bmm(self._lp(b), self._lp(self.w_b))

    def head(self, pre: Tensor) -> Tensor:
        """First-layer pre-activations (R, M, H), a tensor the caller gives up -> scores (R, M),
        always float32."""
        lp = self._lp
        h = self._act_(pre)
        for w, b in zip(self.w_h, self.b_h):
            h = self._act_(torch.baddbmm(lp(b), h, lp(w)))
        if self.b_o is None:
            out = torch.bmm(h, lp(self.w_o))
        else:
            out = torch.baddbmm(lp(self.b_o), h, lp(self.w_o))
        return out.squeeze(-1).float()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.head(self.project_a(a) + self.project_b(b))


def compute_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a critic precision name ("float32" or "bfloat16").

    On CUDA, bfloat16 products accumulate in float32: a bfloat16 `Critic` switches off torch's
    reduced-precision (bf16) split-K reduction for the process. float32 is left exactly as
    torch's default (no TF32), so float32 runs stay comparable with earlier ones.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Critic: precision must be one of {PRECISIONS}, but got {precision!r}")
    return torch.float32 if precision == "float32" else torch.bfloat16
