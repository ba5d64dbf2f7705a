"""n-bit flip-flop working-memory task with on/off pulse lines and ramped ±1 targets (method.md §2).

Arrays are NumPy float32 with the seed axis first: inputs (S, B, transient + segment, 2·n_bits)
ordered (on₁, off₁, on₂, off₂, ...), targets (S, B, segment, n_bits) aligned with the last
`segment` input steps. Deterministic for given `np.random.Generator`s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["WorkingMemory", "ramp_targets"]


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
            (feasibility.md §5.3; not in the reference).
        target_lead: 1 reproduces the reference quirk (target at t is y_{t+1}); 0 aligns them.
        washout: scored steps excluded from the loss.
    """

    metric = "accuracy"

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
        _check_int("n_bits", n_bits, 1)
        _check_int("pulse_len", pulse_len, 1)
        _check_int("transient", transient, 0)
        _check_int("segment", segment, 1)
        _check_int("washout", washout, 0)
        if not 0 < p_onset < 1:
            raise ValueError(f"WorkingMemory: p_onset must be in (0, 1), but got p_onset={p_onset}")
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
        # channel of each input line / output, for the specialisation indices (method.md §10.1)
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
        _check_int("batch", batch, 1)
        total = self.transient + self.seq_len
        # time is the last axis internally (contiguous cumulative sums); one extra step because
        # the target at index t may be y_{t+1} (method.md §2.3)
        onsets = np.stack(
            [rng.random((batch, self.n_inputs, total + 1), dtype=np.float32) < self.p_onset
             for rng in rngs]
        )  # (S, B, 2n, T+1)
        if self.off_cue:
            onsets[:, :, 1::2, 0] = True
        on, off = onsets[:, :, 0::2], onsets[:, :, 1::2]  # (S, B, n, T+1)

        # a line is high while any onset lies in its last pulse_len steps
        csum = np.cumsum(onsets, axis=-1, dtype=np.int32)
        pulses = csum > 0
        pulses[..., self.pulse_len:] = (csum[..., self.pulse_len:] - csum[..., : -self.pulse_len]) > 0

        # latent state: +1 after an on onset, -1 after an off onset, "on" wins ties; s_0 = 2·on_0 − 1
        events = off.astype(np.int8)
        np.negative(events, out=events)
        events[on] = 1
        events[..., 0] = np.where(on[..., 0], 1, -1)
        y = ramp_targets(events, self.slope)  # (S, B, n, T+1)

        inputs = pulses[..., :total].transpose(0, 1, 3, 2).astype(np.float32)
        lead = self.target_lead
        targets = y[..., lead + self.transient: lead + total].transpose(0, 1, 3, 2)
        return inputs, np.ascontiguousarray(targets, dtype=np.float32)


def ramp_targets(events: np.ndarray, slope: float) -> np.ndarray:
    """Ramped targets y_t = clip(y_{t−1} + slope·s_t, −1, 1), y_0 = 0, along the last axis.

    `events` (..., T) holds +1/−1 at state switches and 0 elsewhere (events[..., 0] ≠ 0);
    s_t is the last non-zero event at or before t. Computed run by run instead of step by step:
    within a run of constant s the target is a clipped ramp from the run's starting value, so only
    the few run boundaries need a sequential pass (a 3000-step Python loop costs ~10 ms per batch).
    Returns float32: the ±1 plateaus are exact; ramps are computed in float64, then rounded.
    """
    lead_shape, t_len = events.shape[:-1], events.shape[-1]
    ev = events.reshape(-1, t_len)  # (Q, T)
    q = ev.shape[0]
    times = np.arange(t_len, dtype=np.int32)
    last = np.maximum.accumulate(np.where(ev != 0, times, 0).astype(np.int32), axis=1)
    s = np.take_along_axis(ev, last, axis=1)  # (Q, T) int8

    # runs over t >= 1 (y_0 = 0 is fixed); a run starts at t = 1 and wherever s changes
    s1 = s[:, 1:]
    n = t_len - 1
    y = np.zeros((q, t_len))
    if n > 0:
        start = np.ones((q, n), dtype=bool)
        np.not_equal(s1[:, 1:], s1[:, :-1], out=start[:, 1:])
        rows, cols = np.nonzero(start)
        run = np.cumsum(start, axis=1, dtype=np.int32) - 1  # run index of each step
        n_runs = int(run[:, -1].max()) + 1
        run_start = np.full((q, n_runs + 1), n, dtype=np.int32)
        run_start[rows, run[rows, cols]] = cols
        run_len = np.diff(run_start, axis=1)  # (Q, R); runs past a row's last are ignored
        run_sign = np.zeros((q, n_runs), dtype=np.float64)
        run_sign[rows, run[rows, cols]] = s1[rows, cols]
        v = np.zeros((q, n_runs))  # target value just before each run
        for r in range(n_runs - 1):
            v[:, r + 1] = np.clip(v[:, r] + slope * run_sign[:, r] * run_len[:, r], -1.0, 1.0)
        # value at step t = clip(v_run + slope·s·(steps into the run)); the per-run offset
        # v_run − slope·s·(run_start − 1) makes this one fused pass over (Q, T)
        offset = v - slope * run_sign * (run_start[:, :-1] - 1)
        ramp = np.take_along_axis(offset, run, axis=1)
        ramp += slope * s1 * np.arange(n, dtype=np.float64)
        np.clip(ramp, -1.0, 1.0, out=y[:, 1:])
    return y.astype(np.float32).reshape(*lead_shape, t_len)


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"WorkingMemory: {name} must be an int, but got {type(value).__name__}")
    if value < low:
        raise ValueError(f"WorkingMemory: {name} must be >= {low}, but got {name}={value}")
