"""Population-batched recurrent networks: a leaky-integrator RNN and a GRU (docs/method.md §3, §7).

Every weight has a leading seed axis S, so S independent networks run as one batched recurrence.
Weights use the row-vector convention of the reference (W[i, j] is the weight from i to j).
Layout is seed-major then time-major, so the (time × batch) samples of one seed are contiguous
rows: inputs (S, T, B, I), states (S, T, B, N), outputs (S, T, B, O).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from study.core import _scan
from study.core._leaky import leaky_scan

__all__ = ["NetOutput", "LeakyRNN", "GRU", "build_network", "leaky_scan", "glorot_uniform"]


@dataclass
class NetOutput:
    """States of S networks, seed-major then time-major: sample (t, b) is row t·B + b."""

    states: Tensor | None  # (S, T, B, N) raw states (pre-activations x, or GRU h)
    outputs: Tensor | None  # (S, T, B, O) readout, None when not asked for
    mi_transform: Callable[[Tensor], Tensor]  # states -> activity whose subgroup MI is penalised
    # mi_transform(states) when the network computed it anyway (the compiled leaky RNN)
    rates: Tensor | None = None
    # (S, K, N) mi_transform of the rows `sample` asked forward() for; states is then None
    sampled: Tensor | None = None

    def activity(self) -> Tensor:
        """(S, T, B, N) mi_transform(states): the activity whose subgroup MI is measured."""
        return self.rates if self.rates is not None else self.mi_transform(self.states)

    def rows(self, start: int = 0) -> Tensor:
        """Correlation activity as samples: (S, (T − start)·B, N), a view when start = 0."""
        s, _, _, n = self.states.shape
        return self.states[:, start:].reshape(s, -1, n)


def glorot_uniform(gens: list[torch.Generator], fan_in: int, fan_out: int) -> Tensor:
    """(len(gens), fan_in, fan_out) Glorot-uniform kernels, U(−l, l) with l = √(6/(fan_in +
    fan_out)), replica r drawn from gens[r] (the networks' and the critics' initialisation)."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.stack([(torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * limit for g in gens])


def member_generators(seed: int, n_seeds: int) -> list[torch.Generator]:
    """CPU generators for initialisation: member i uses seed + i, whatever S is."""
    return [torch.Generator().manual_seed(seed + i) for i in range(n_seeds)]


# ----------------------------------------------------------------------------------------------
# Leaky RNN


class _Population(nn.Module):
    """Sizes, validation and the linear readout shared by both networks."""

    def __init__(self, n_seeds: int, n_inputs: int, n_hidden: int, n_outputs: int):
        super().__init__()
        _check_sizes(n_seeds, n_inputs, n_hidden, n_outputs)
        self.n_seeds, self.n_inputs, self.n_hidden, self.n_outputs = (
            n_seeds,
            n_inputs,
            n_hidden,
            n_outputs,
        )

    def _readout(self, activity: Tensor) -> Tensor:
        """(S, T, B, N) -> (S, T, B, O): activity W_out + b_out, one batched matmul."""
        s, t, b, n = activity.shape
        return torch.baddbmm(
            self.b_out.unsqueeze(1), activity.reshape(s, t * b, n), self.w_out
        ).view(s, t, b, -1)

    def output_weights(self) -> Tensor:
        """(S, N, O)."""
        return self.w_out


class LeakyRNN(_Population):
    """Leaky-integrator tanh RNN with additive state noise (docs/method.md §3.1).

    x_t = (1 − α)·x_{t−1} + α·(u_t W_in + b + tanh(x_{t−1}) W_rec) + ξ_t,  ξ_t ~ N(0, σ² I)
    z_t = tanh(x_t) W_out + b_out

    MI uses the rates tanh(x); correlations use the pre-activations x (docs/method.md §14.9).
    """

    def __init__(
        self,
        n_seeds: int,
        n_inputs: int,
        n_hidden: int,
        n_outputs: int,
        *,
        alpha: float = 0.1,
        gain: float = 1.0,
        seed: int = 0,
    ):
        super().__init__(n_seeds, n_inputs, n_hidden, n_outputs)
        self.alpha = alpha  # the state noise is drawn by the caller and passed to forward()
        gen = member_generators(seed, n_seeds)
        s, n = n_seeds, n_hidden
        # W_rec ~ N(0, g²/N); W_in, W_out Glorot-uniform; zero biases (docs/method.md §3.3)
        self.w_rec = nn.Parameter(
            torch.stack([torch.randn(n, n, generator=g) * (gain / math.sqrt(n)) for g in gen])
        )
        self.w_in = nn.Parameter(glorot_uniform(gen, n_inputs, n))
        self.b = nn.Parameter(torch.zeros(s, n))
        self.w_out = nn.Parameter(glorot_uniform(gen, n, n_outputs))
        self.b_out = nn.Parameter(torch.zeros(s, n_outputs))

    def forward(
        self,
        inputs: Tensor,
        x0: Tensor,
        noise: Tensor | None = None,
        *,
        n_transient: int = 0,
        outputs: bool = True,
        sample: Tensor | None = None,
    ) -> NetOutput:
        """Run S networks on their inputs.

        Args:
            inputs: (S, T, B, I) float.
            x0: (S, B, N) initial pre-activations.
            noise: (S, T, B, N) pre-drawn state noise (already scaled by σ), or None.
            n_transient: leading steps run without gradient and dropped from the result.
            outputs: compute the readout (not needed for critic batches).
            sample: (S, K) rows t·B + b (distinct within a seed, t after the transient) whose
                rates tanh(x) are wanted as `NetOutput.sampled` (the MI penalty's rows); the
                states are then not kept (`states` is None).

        Returns:
            NetOutput over the remaining T − n_transient steps. On the CPU in float32 the
            compiled kernels run it (study/core/_scan.py; `rates` is then filled in), equal to
            the torch code to float rounding; elsewhere the torch code below.
        """
        if _scan.usable(inputs, x0, noise, self.w_rec):
            return self._forward_compiled(inputs, x0, noise, n_transient, outputs, sample)
        x = x0
        if n_transient:
            with torch.no_grad():
                d = self._drive(
                    inputs[:, :n_transient], noise[:, :n_transient] if noise is not None else None
                )
                x = leaky_scan(d, x0, self.w_rec, self.alpha)[:, -1]
            inputs = inputs[:, n_transient:]
            noise = noise[:, n_transient:] if noise is not None else None
        xs = leaky_scan(self._drive(inputs, noise), x, self.w_rec, self.alpha)  # (S, T', B, N)
        out = self._readout(torch.tanh(xs)) if outputs else None
        sampled = None
        if sample is not None:  # the rows first, then tanh: only they pay for it
            s, t, b, n = xs.shape
            rows = torch.gather(xs.reshape(s, t * b, n), 1, sample.unsqueeze(-1).expand(-1, -1, n))
            sampled = torch.tanh(rows)
        return NetOutput(xs, out, torch.tanh, sampled=sampled)

    def _forward_compiled(self, inputs, x0, noise, n_transient, outputs, sample) -> NetOutput:
        """forward() on the compiled kernels: drive, recurrence, tanh and readout in one pass."""
        weights = (self.w_in, self.b, self.w_rec)
        x = x0
        if n_transient:
            x = _scan.leaky_network_last(
                inputs[:, :n_transient],
                noise[:, :n_transient] if noise is not None else None,
                1.0,
                x0,
                *weights,
                self.alpha,
            )
            inputs = inputs[:, n_transient:]
            noise = noise[:, n_transient:] if noise is not None else None
        if not outputs and sample is None and not torch.is_grad_enabled():  # a critic batch
            xs = _scan.leaky_network_states(inputs, noise, 1.0, x, *weights, self.alpha)
            return NetOutput(xs, None, _scan.tanh)
        xs, ys, z, sampled = _scan.leaky_network_sampled(
            inputs,
            noise,
            1.0,
            x,
            *weights,
            self.w_out if outputs else None,
            self.b_out if outputs else None,
            self.alpha,
            sample=sample,
            states=sample is None,
        )
        return NetOutput(xs, z, _scan.tanh, rates=ys, sampled=sampled)

    def _drive(self, u: Tensor, noise: Tensor | None) -> Tensor:
        # α·(u W_in + b) + ξ for all steps at once: (S, T, B, N), one matmul over all samples
        s, t, b, i = u.shape
        d = torch.baddbmm(
            self.b.unsqueeze(1),
            u.reshape(s, t * b, i),
            self.w_in,
            beta=self.alpha,
            alpha=self.alpha,
        ).view(s, t, b, -1)
        return d.add_(noise) if noise is not None else d

    def recurrent_weights(self) -> Tensor:
        """(S, N, N): the matrix used for structural modularity."""
        return self.w_rec

    def input_weights(self) -> Tensor:
        """(S, I, N)."""
        return self.w_in

    def regularised(self) -> dict[str, Tensor]:
        """The weights the explicit penalty acts on, by role (docs/method.md §3.4)."""
        return {"in": self.w_in, "rec": self.w_rec, "out": self.w_out}

    def snapshot(self) -> dict[str, Tensor]:
        return {
            "w_in": self.w_in,
            "w_rec": self.w_rec,
            "b": self.b,
            "w_out": self.w_out,
            "b_out": self.b_out,
        }


# ----------------------------------------------------------------------------------------------
# GRU


class GRU(_Population):
    """Keras-style GRU (reset_after=True) with a linear readout, seed-batched (docs/method.md §7).

    Gate blocks are ordered (z, r, h) along the last axis as in Keras:
        z = σ(x W_z + b_z + h U_z + b'_z),  r = σ(x W_r + b_r + h U_r + b'_r)
        ĥ = tanh(x W_h + b_h + r ⊙ (h U_h + b'_h)),  h ← z ⊙ h + (1 − z) ⊙ ĥ (+ noise)
    The hidden state h is used both for MI and for correlations; U_h is the recurrent matrix.
    """

    def __init__(
        self, n_seeds: int, n_inputs: int, n_hidden: int, n_outputs: int, *, seed: int = 0
    ):
        super().__init__(n_seeds, n_inputs, n_hidden, n_outputs)
        gen = member_generators(seed, n_seeds)
        s, n = n_seeds, n_hidden
        self.w = nn.Parameter(glorot_uniform(gen, n_inputs, 3 * n))  # Glorot over (I, 3N)
        u = torch.empty(s, n, 3 * n)
        for i, g in enumerate(gen):  # Keras: orthogonal over the whole (N, 3N) kernel
            nn.init.orthogonal_(u[i], generator=g)
        self.u = nn.Parameter(u)
        self.b = nn.Parameter(torch.zeros(s, 3 * n))
        self.b_rec = nn.Parameter(torch.zeros(s, 3 * n))
        self.w_out = nn.Parameter(glorot_uniform(gen, n, n_outputs))
        self.b_out = nn.Parameter(torch.zeros(s, n_outputs))

    def forward(
        self,
        inputs: Tensor,
        x0: Tensor,
        noise: Tensor | None = None,
        *,
        n_transient: int = 0,
        outputs: bool = True,
        sample: Tensor | None = None,
    ) -> NetOutput:
        """Same contract as LeakyRNN.forward; x0 is the initial hidden state h_0. On the CPU in
        float32 the compiled kernels run it (study/core/_scan.py)."""
        out = self._forward(inputs, x0, noise, n_transient, outputs)
        if sample is not None:  # the MI activity is h itself: its rows, kept differentiable
            s, t, b, n = out.states.shape
            index = sample.unsqueeze(-1).expand(-1, -1, n)
            out.sampled = torch.gather(out.states.reshape(s, t * b, n), 1, index)
        return out

    def _forward(self, inputs, x0, noise, n_transient, outputs) -> NetOutput:
        if _scan.usable(inputs, x0, noise, self.u):
            weights = (self.w, self.b, self.u, self.b_rec)
            h = x0
            if n_transient:
                h = _scan.gru_network_last(
                    inputs[:, :n_transient],
                    noise[:, :n_transient] if noise is not None else None,
                    1.0,
                    x0,
                    *weights,
                )
                inputs = inputs[:, n_transient:]
                noise = noise[:, n_transient:] if noise is not None else None
            hs, z = _scan.gru_network(
                inputs,
                noise,
                1.0,
                h,
                *weights,
                self.w_out if outputs else None,
                self.b_out if outputs else None,
            )
            return NetOutput(hs, z, _identity, rates=hs)
        n = self.n_hidden
        s, t_len, b, i = inputs.shape
        gx_all = torch.baddbmm(self.b.unsqueeze(1), inputs.reshape(s, t_len * b, i), self.w)
        gx_all = gx_all.view(s, t_len, b, 3 * n)  # input projections of every step at once
        h = x0
        states = []
        # unbind, not gx_all[:, t]: each select's backward would materialise a full-size zero
        # tensor, making BPTT quadratic in T (docs/feasibility.md §1)
        for t, gx in enumerate(gx_all.unbind(1)):
            grad = t >= n_transient
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                gh = torch.baddbmm(self.b_rec.unsqueeze(1), h, self.u)  # (S, B, 3N)
                zr = torch.sigmoid(gx[..., : 2 * n] + gh[..., : 2 * n])
                z, r = zr[..., :n], zr[..., n:]
                cand = torch.tanh(gx[..., 2 * n :] + r * gh[..., 2 * n :])
                h = cand + z * (h - cand)
                if noise is not None:
                    h = h + noise[:, t]
            if grad:
                states.append(h)
        hs = torch.stack(states, dim=1)  # (S, T', B, N)
        return NetOutput(hs, self._readout(hs) if outputs else None, _identity)

    def recurrent_weights(self) -> Tensor:
        """(S, N, N): the candidate block U_h (docs/method.md §10.2: the block used for Q_str)."""
        n = self.n_hidden
        return self.u[:, :, 2 * n :]

    def gate_recurrent_weights(self) -> dict[str, Tensor]:
        """The per-gate recurrent blocks of U, each (S, N, N): update U_z, reset U_r, cand. U_h."""
        n = self.n_hidden
        return {
            "update": self.u[:, :, :n],
            "reset": self.u[:, :, n : 2 * n],
            "candidate": self.u[:, :, 2 * n :],
        }

    def input_weights(self) -> Tensor:
        """(S, I, N): the candidate-block input kernel W_h."""
        return self.w[:, :, 2 * self.n_hidden :]

    def regularised(self) -> dict[str, Tensor]:
        # reference: L2 on the input and recurrent kernels (all gates) and on the readout
        return {"in": self.w, "rec": self.u, "out": self.w_out}

    def snapshot(self) -> dict[str, Tensor]:
        return {
            "w": self.w,
            "u": self.u,
            "b": self.b,
            "b_rec": self.b_rec,
            "w_out": self.w_out,
            "b_out": self.b_out,
            "w_rec": self.recurrent_weights(),
        }


def _identity(x: Tensor) -> Tensor:
    return x


def build_network(
    kind: str,
    n_seeds: int,
    n_inputs: int,
    n_hidden: int,
    n_outputs: int,
    *,
    alpha: float = 0.1,
    gain: float = 1.0,
    seed: int = 0,
) -> LeakyRNN | GRU:
    """Construct the network named by `kind` ("leaky" or "gru")."""
    if kind == "leaky":
        return LeakyRNN(n_seeds, n_inputs, n_hidden, n_outputs, alpha=alpha, gain=gain, seed=seed)
    if kind == "gru":
        return GRU(n_seeds, n_inputs, n_hidden, n_outputs, seed=seed)
    raise ValueError(f"build_network(): kind must be 'leaky' or 'gru', but got {kind!r}")


def _check_sizes(n_seeds: int, n_inputs: int, n_hidden: int, n_outputs: int) -> None:
    for name, value in (
        ("n_seeds", n_seeds),
        ("n_inputs", n_inputs),
        ("n_hidden", n_hidden),
        ("n_outputs", n_outputs),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"network: {name} must be a positive int, but got {name}={value!r}")
