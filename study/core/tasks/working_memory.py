"""n-bit flip-flop working-memory task: on/off pulse lines, ramped ±1 targets (docs/method.md §2).

`sample` gives NumPy float32 arrays with the seed axis first: inputs (S, B, transient + segment,
2·n_bits) ordered (on₁, off₁, on₂, off₂, ...), targets (S, B, segment, n_bits) aligned with the
last `segment` input steps, deterministic for given `np.random.Generator`s. `sample_tensors`
generates the same signals as torch tensors on the training device from a `torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from study.core._checks import _check_int
from study.core._native import draws

__all__ = ["WorkingMemory", "build", "ramp_targets"]


class WorkingMemory:
    """The task object used by the training loop.

    Args:
        n_bits: number of independent memories (outputs); 2 in the paper.
        p_onset: probability of a pulse onset per step and input line (1/500).
        pulse_len: steps a pulse stays at 1 (40); overlapping pulses merge.
        slope: target ramp per step (0.1, so a flip takes 20 steps).
        transient: leading steps run without gradient and without scoring (1000).
        segment: scored steps (2000).
        off_cue: force an "off" onset at t = 0 on every bit, so the initial memory is cued
            (docs/feasibility.md §5.3; not in the reference).
        target_lead: 1 reproduces the reference quirk (target at t is y_{t+1}); 0 aligns them.
        washout: scored steps excluded from the loss.
    """

    name = "working_memory"
    metric = "accuracy"
    device_sampling = True  # the loop draws batches with `sample_tensors` (study.core.tasks.Task)
    fixed_eval_pool = False

    def __init__(
        self,
        *,
        n_bits: int = 2,
        p_onset: float = 1 / 500,
        pulse_len: int = 40,
        slope: float = 0.1,
        transient: int = 1000,
        segment: int = 2000,
        off_cue: bool = False,
        target_lead: int = 1,
        washout: int = 0,
    ):
        _check_int("WorkingMemory", "n_bits", n_bits, 1)
        _check_int("WorkingMemory", "pulse_len", pulse_len, 1)
        _check_int("WorkingMemory", "transient", transient, 0)
        _check_int("WorkingMemory", "segment", segment, 1)
        _check_int("WorkingMemory", "washout", washout, 0)
        if not 0 < p_onset < 1:
            raise ValueError(
                f"WorkingMemory: p_onset must be in (0, 1), but got p_onset={p_onset}"
            )
        if not slope > 0:
            raise ValueError(f"WorkingMemory: slope must be positive, but got slope={slope}")
        if target_lead not in (0, 1):
            raise ValueError(f"WorkingMemory: target_lead must be 0 or 1, but got {target_lead}")
        if washout >= segment:
            raise ValueError(
                f"WorkingMemory: washout must be shorter than segment, but got "
                f"washout={washout}, segment={segment}"
            )
        self.n_bits = n_bits
        self.p_onset = p_onset
        self.pulse_len = pulse_len
        self.slope = slope
        self.transient = transient
        self.seq_len = segment
        self.off_cue = off_cue
        self.target_lead = target_lead
        self.washout = washout
        self.n_inputs = 2 * n_bits
        self.n_outputs = n_bits
        # channel of each input line / output, for specialisation indices (docs/method.md §10.1)
        self.input_channels = np.repeat(np.arange(n_bits), 2)
        self.output_channels = np.arange(n_bits)

    def sample(
        self, rngs: Sequence[np.random.Generator], batch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fresh sequences for each member of the population.

        Args:
            rngs: one generator per member (the same generator may repeat).
            batch: sequences per member.

        Returns:
            inputs (S, B, transient + segment, 2·n_bits) and targets (S, B, segment, n_bits),
            float32.
        """
        _check_int("WorkingMemory", "batch", batch, 1)
        # time is the last axis internally (contiguous cumulative sums); one extra step because
        # the target at index t may be y_{t+1} (docs/method.md §2.3)
        onsets = np.stack(
            [
                rng.random(
                    (batch, self.n_inputs, self.transient + self.seq_len + 1), dtype=np.float32
                )
                < self.p_onset
                for rng in rngs
            ]
        )  # (S, B, 2n, T+1)
        inputs, targets = self._signals(torch.from_numpy(onsets))
        return (
            inputs.permute(0, 2, 1, 3).numpy(),  # (S, T, B, ·) -> (S, B, T, ·)
            targets.permute(0, 2, 1, 3).contiguous().numpy(),
        )

    def sample_tensors(
        self, gen: torch.Generator, n_seeds: int, batch: int, device: torch.device | str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh sequences generated where they are used (e.g. on the GPU), seed-major then
        time-major as the networks want them: inputs (S, T, B, 2·n_bits) and targets
        (S, segment, B, n_bits), float32."""
        _check_int("WorkingMemory", "batch", batch, 1)
        shape = (n_seeds, batch, self.n_inputs, self.transient + self.seq_len + 1)
        # torch.rand's values and _signals' results, computed faster on the CPU where the
        # compiled draws apply (study/core/_native/draws.py; equal bit for bit)
        onsets = draws.rand(shape, gen, device=device) < self.p_onset
        return draws.wm_signals(self, onsets)

    def _signals(self, onsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Onsets (S, B, 2n, T+1) bool -> inputs (S, T, B, 2n) and targets (S, T', B, n)."""
        total = self.transient + self.seq_len
        if self.off_cue:
            onsets[:, :, 1::2, 0] = True
        on, off = onsets[:, :, 0::2], onsets[:, :, 1::2]  # (S, B, n, T+1)

        # a line is high while any onset lies in its last pulse_len steps
        csum = torch.cumsum(onsets, dim=-1, dtype=torch.int32)
        pulses = csum > 0
        pulses[..., self.pulse_len :] = (
            csum[..., self.pulse_len :] - csum[..., : -self.pulse_len]
        ) > 0

        # latent state: +1 after an on onset, -1 after an off onset, "on" wins ties;
        # s_0 = 2·on_0 − 1
        events = torch.where(on, 1, torch.where(off, -1, 0)).to(torch.int8)
        events[..., 0] = torch.where(on[..., 0], 1, -1).to(torch.int8)
        y = ramp_targets(events, self.slope)  # (S, B, n, T+1)

        inputs = pulses[..., :total].permute(0, 3, 1, 2).to(torch.float32)
        lead = self.target_lead
        targets = y[..., lead + self.transient : lead + total].permute(0, 3, 1, 2)
        return inputs.contiguous(), targets.contiguous()


def ramp_targets(events, slope: float):
    """Ramped targets y_t = clip(y_{t−1} + slope·s_t, −1, 1), y_0 = 0, along the last axis.

    `events` (..., T) holds +1/−1 at state switches and 0 elsewhere (events[..., 0] ≠ 0);
    s_t is the last non-zero event at or before t. Computed run by run instead of step by step:
    within a run of constant s the target is a clipped ramp from the run's starting value, so only
    the few run boundaries need a sequential pass (a 3000-step Python loop costs ~10 ms per batch,
    and far more on a GPU). Accepts a NumPy array or a torch tensor (on any device) and returns
    the same kind, float32: the ±1 plateaus are exact; ramps are computed in float64.
    """
    if isinstance(events, np.ndarray):
        return ramp_targets(torch.from_numpy(events), slope).numpy()
    lead_shape, t_len = events.shape[:-1], events.shape[-1]
    dev = events.device
    ev = events.reshape(-1, t_len)  # (Q, T)
    q = ev.shape[0]
    times = torch.arange(t_len, device=dev)
    last = torch.cummax(torch.where(ev != 0, times, 0), dim=1).values
    s = torch.gather(ev, 1, last)  # (Q, T) int8

    # runs over t >= 1 (y_0 = 0 is fixed); a run starts at t = 1 and wherever s changes
    s1 = s[:, 1:]
    n = t_len - 1
    y = torch.zeros((q, t_len), dtype=torch.float64, device=dev)
    if n > 0:
        start = torch.ones((q, n), dtype=torch.bool, device=dev)
        start[:, 1:] = s1[:, 1:] != s1[:, :-1]
        rows, cols = torch.nonzero(start, as_tuple=True)
        run = torch.cumsum(start, dim=1) - 1  # run index of each step
        n_runs = int(run[:, -1].max()) + 1
        idx = run[rows, cols]
        run_start = torch.full((q, n_runs + 1), n, dtype=torch.int64, device=dev)
        run_start[rows, idx] = cols
        run_len = torch.diff(run_start, dim=1).to(torch.float64)  # runs past a row's end: unused
        run_sign = torch.zeros((q, n_runs), dtype=torch.float64, device=dev)
        run_sign[rows, idx] = s1[rows, cols].to(torch.float64)
        v = torch.zeros((q, n_runs), dtype=torch.float64, device=dev)  # value before each run
        for r in range(n_runs - 1):
            v[:, r + 1] = torch.clamp(v[:, r] + slope * run_sign[:, r] * run_len[:, r], -1.0, 1.0)
        # value at step t = clip(v_run + slope·s·(steps into the run)); the per-run offset
        # v_run − slope·s·(run_start − 1) makes this one fused pass over (Q, T)
        offset = v - slope * run_sign * (run_start[:, :-1] - 1)
        ramp = torch.gather(offset, 1, run)
        ramp += slope * s1 * torch.arange(n, dtype=torch.float64, device=dev)
        y[:, 1:] = torch.clamp(ramp, -1.0, 1.0)
    return y.to(torch.float32).reshape(*lead_shape, t_len)


def build(cfg) -> WorkingMemory:
    """The working-memory task of a TrialConfig (`task.wm`; n_bits may follow the groups)."""
    w = cfg.task.wm
    return WorkingMemory(
        n_bits=cfg.n_bits,
        p_onset=w.p_onset,
        pulse_len=w.pulse_len,
        slope=w.slope,
        transient=w.transient,
        segment=w.segment,
        off_cue=w.off_cue,
        target_lead=w.target_lead,
        washout=w.washout,
    )
