"""Tests for study/tasks/working_memory.py against closed forms of the pulse/target process.

One bit's latent state is a two-state Markov chain (docs/method.md §2.3): − → + with an on onset
(probability p), + → − with an off onset and no on onset (p·(1 − p)), so its flip rate, stationary
law and ramp statistics have closed forms; sample statistics are compared with them using the
empirical standard error over independent sequences.
"""

import numpy as np
import pytest

from study.core.tasks.working_memory import WorkingMemory, ramp_targets

# (p_onset, pulse_len, slope): the reference, and a faster process with a steeper ramp
SETTINGS = [(1 / 500, 40, 0.1), (1 / 200, 10, 0.25)]


def _sample(p, pulse_len, slope, *, batch=400, seed=0, **kw):
    task = WorkingMemory(p_onset=p, pulse_len=pulse_len, slope=slope, **kw)
    inputs, targets = task.sample([np.random.default_rng(seed)], batch)
    return task, inputs[0], targets[0]  # (B, T_total, 2n), (B, segment, n)


def _p_plus(p, times):
    """P(s_t = +1) of the latent chain with s_0 = +1 w.p. p: π₊ + (p − π₊)(1 − λ)^t."""
    lam = p * (2 - p)  # total switching probability per step
    pi_plus = 1 / (2 - p)
    return pi_plus + (p - pi_plus) * (1 - lam) ** np.asarray(times, dtype=float)


def _flip_rate(p, times):
    """Expected latent flips per step at step t: P(−)·p + P(+)·p(1 − p)."""
    plus = _p_plus(p, np.asarray(times) - 1)
    return (1 - plus) * p + plus * p * (1 - p)


def _within(values, expected, *, n_se=5.0, bias=0.0):
    """Mean of per-sequence values lies within n_se standard errors (plus a bias bound)."""
    values = np.asarray(values, dtype=float).ravel()
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - expected) <= n_se * se + bias, (values.mean(), expected, se, bias)


def _ramp_values(slope):
    """Values strictly inside (−1, 1) that a full −1 → +1 flip passes through."""
    k = np.arange(1, int(np.ceil(2 / slope - 1e-9)))
    return -1 + slope * k


# ----------------------------------------------------------------------------------------------
# statistics of sample() against closed forms


@pytest.mark.parametrize("p, pulse_len, slope", SETTINGS)
def test_sample_duty_cycle_matches_closed_form(p, pulse_len, slope):
    _, inputs, _ = _sample(p, pulse_len, slope)
    t = np.arange(inputs.shape[1])
    # a line is high at t iff an onset fell in the last min(t + 1, L) steps
    expected = np.mean(1 - (1 - p) ** np.minimum(t + 1, pulse_len))
    assert expected == pytest.approx(1 - (1 - p) ** pulse_len, rel=0.02)
    per_line = inputs.mean(axis=1)  # (B, 2n)
    _within(per_line, expected)


@pytest.mark.parametrize("p, pulse_len, slope", SETTINGS)
def test_sample_target_sign_flips_match_latent_flip_rate(p, pulse_len, slope):
    task, _, targets = _sample(p, pulse_len, slope)
    positive = targets > 0  # (B, segment, n)
    flips = (positive[:, 1:] != positive[:, :-1]).sum(axis=1)  # per (sequence, bit)
    start = task.transient + task.target_lead  # y index of target 0
    steps = np.arange(start + 1, start + task.seq_len)
    expected = _flip_rate(p, steps).sum()
    # stationary: segment · 2p(1 − p)/(2 − p) flips (≈ 4 per 2000 steps at the reference)
    assert expected == pytest.approx(task.seq_len * 2 * p * (1 - p) / (2 - p), rel=0.02)
    # a flip undone within 1/slope steps (probability ≈ p/slope) never crosses zero, and takes
    # its undoing flip with it: between 0 and a 2p/slope fraction of the flips is not seen
    _within(flips, expected * (1 - p / slope), bias=expected * p / slope)


@pytest.mark.parametrize("p, pulse_len, slope", SETTINGS)
def test_sample_positive_fraction_matches_stationary_law(p, pulse_len, slope):
    task, _, targets = _sample(p, pulse_len, slope)
    start = task.transient + task.target_lead
    expected = _p_plus(p, np.arange(start, start + task.seq_len)).mean()  # ≈ 1/(2 − p) ≈ 0.5
    assert expected == pytest.approx(0.5, abs=0.01)
    # y lags s by ~1/slope steps symmetrically; one step per flip sits at y = 0 (not > 0)
    _within((targets > 0).mean(axis=1), expected, bias=2 * p)


@pytest.mark.parametrize("p, pulse_len, slope", SETTINGS)
def test_sample_ramp_fraction_and_zero_output_mse(p, pulse_len, slope):
    task, _, targets = _sample(p, pulse_len, slope)
    start = task.transient + task.target_lead
    rate = _flip_rate(p, np.arange(start + 1, start + 1 + task.seq_len)).mean()
    ramp = _ramp_values(slope)  # a flip passes 2/slope − 1 steps strictly inside (−1, 1)
    # NOTE: the ramp covers the full amplitude 2, hence 2/slope − 1 steps (19 at slope 0.1, so
    # ≈ 3.8 % at the reference, as measured in docs/feasibility.md §1), not 1/slope − 1
    frac_expected = rate * ramp.size
    mse_expected = 1 - rate * np.sum(1 - ramp**2)  # E[y²] (≈ 0.973 at the reference)
    # a second flip within 2/slope steps (probability ≈ 2p/slope) cuts both ramps short: between
    # 0 and a 4p/slope fraction of the ramp steps is lost
    bias = 2 * p / slope
    _within(
        (np.abs(targets) < 1).mean(axis=1), frac_expected * (1 - bias), bias=frac_expected * bias
    )
    zero_output_mse = ((targets - 0.0) ** 2).mean(axis=1)
    _within(1 - zero_output_mse, (1 - mse_expected) * (1 - bias), bias=(1 - mse_expected) * bias)


def test_sample_bits_are_independent():
    _, _, targets = _sample(1 / 100, 40, 0.1, batch=300, n_bits=3)
    signs = np.where(targets > 0, 1.0, -1.0)  # (B, T, 3)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        # per-sequence time average of the product; E = E[s_i]E[s_j] ≈ (2π₊ − 1)² ≈ 0
        products = (signs[..., i] * signs[..., j]).mean(axis=1)
        _within(products, 0.0, bias=0.01)


def test_sample_on_wins_ties():
    # with p → 1 nearly every step has both an on and an off onset: the state is +1 throughout
    _, _, targets = _sample(0.999, 3, 0.1, batch=20, transient=0, segment=200, target_lead=0)
    assert (targets[:, 0] == 0.0).all()  # y_0 = 0
    # off-wins would ramp down to −1 instead; a step without an on onset has probability 0.001
    up = np.abs(targets[:, 1:10] - 0.1 * np.arange(1, 10)[None, :, None]) < 1e-5
    assert up.mean() > 0.97
    assert (targets[:, 10:] == 1.0).mean() > 0.97


# ----------------------------------------------------------------------------------------------
# alignment of targets with inputs


@pytest.mark.parametrize("lead", [0, 1])
def test_sample_target_ramps_up_at_on_pulse(lead):
    slope = 0.1
    task, inputs, targets = _sample(
        1 / 100, 40, slope, batch=50, target_lead=lead, transient=100, segment=600
    )
    on = inputs[:, :, 0::2]  # (B, T_total, n)
    rising = (on[:, 1:] > 0.5) & (on[:, :-1] < 0.5)  # an on onset at y index tau = idx + 1
    b, idx, bit = np.nonzero(rising)
    tau = idx + 1
    # target index of y_tau is tau − transient − lead; it must be y_{tau−1} + slope (clipped),
    # because on wins ties (docs/method.md §2.3)
    k = tau - task.transient - lead
    ok = (k >= 1) & (k < task.seq_len)
    assert ok.sum() > 50
    b, k, bit = b[ok], k[ok], bit[ok]
    np.testing.assert_allclose(
        targets[b, k, bit], np.minimum(targets[b, k - 1, bit] + slope, 1.0), atol=1e-4
    )


def test_sample_target_lead_is_one_step_shift():
    kw = dict(transient=50, segment=300, p_onset=1 / 50)
    a_in, a_tg = WorkingMemory(target_lead=0, **kw).sample([np.random.default_rng(3)], 8)
    b_in, b_tg = WorkingMemory(target_lead=1, **kw).sample([np.random.default_rng(3)], 8)
    np.testing.assert_array_equal(a_in, b_in)
    np.testing.assert_array_equal(b_tg[:, :, :-1], a_tg[:, :, 1:])
    assert not np.array_equal(a_tg, b_tg)


@pytest.mark.parametrize("n_bits", [1, 2, 3])
def test_sample_off_cue_starts_every_pair_with_off_pulse(n_bits):
    kw = dict(n_bits=n_bits, pulse_len=40, transient=0, segment=200, target_lead=0)
    inputs, targets = WorkingMemory(off_cue=True, **kw).sample([np.random.default_rng(0)], 200)
    assert (inputs[:, :, :40, 1::2] == 1.0).all()  # every off line high for a full pulse
    assert inputs[:, :, 0, 0::2].mean() < 0.02  # on lines untouched (≈ p at t = 0)
    plain, _ = WorkingMemory(off_cue=False, **kw).sample([np.random.default_rng(0)], 200)
    assert plain[:, :, 0, 1::2].mean() < 0.02
    # the cued state is −1: the target ramps down from y_0 = 0 unless an on onset came first
    assert (np.abs(targets[:, :, 1] + 0.1) < 1e-6).mean() > 0.95


def test_sample_shapes_and_dtypes():
    task = WorkingMemory(n_bits=3, transient=30, segment=70)
    rngs = [np.random.default_rng(i) for i in range(4)]
    inputs, targets = task.sample(rngs, 5)
    assert inputs.shape == (4, 5, 100, 6) and inputs.dtype == np.float32
    assert targets.shape == (4, 5, 70, 3) and targets.dtype == np.float32
    assert set(np.unique(inputs)) <= {0.0, 1.0}
    assert np.abs(targets).max() <= 1.0
    assert task.n_inputs == 6 and task.n_outputs == 3
    np.testing.assert_array_equal(task.input_channels, [0, 0, 1, 1, 2, 2])


def test_sample_is_deterministic_per_generator():
    task = WorkingMemory(transient=20, segment=100, p_onset=0.02)
    a = task.sample([np.random.default_rng(7), np.random.default_rng(8)], 3)
    b = task.sample([np.random.default_rng(7), np.random.default_rng(8)], 3)
    single = task.sample([np.random.default_rng(8)], 3)
    for x, y, z in zip(a, b, single):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x[1], z[0])  # member i depends only on rngs[i]
    other = task.sample([np.random.default_rng(9)], 3)
    assert not np.array_equal(other[0][0], a[0][0])
    shared = np.random.default_rng(1)
    twice = task.sample([shared, shared], 3)  # a repeated generator advances between members
    assert not np.array_equal(twice[0][0], twice[0][1])


# ----------------------------------------------------------------------------------------------
# ramp_targets against a step-by-step transcription


def _ramp_loop(events, slope):
    """y_t = clip(y_{t−1} + slope·s_t, −1, 1), y_0 = 0, s_t = last non-zero event (float64)."""
    flat = events.reshape(-1, events.shape[-1])
    out = np.zeros(flat.shape)
    for q, row in enumerate(flat):
        s, y = row[0], 0.0
        for t in range(1, row.size):
            if row[t] != 0:
                s = row[t]
            y = min(1.0, max(-1.0, y + slope * s))
            out[q, t] = y
    return out.reshape(events.shape)


def _random_events(rng, shape, density):
    events = np.where(
        rng.random(shape) < density, rng.choice(np.array([-1, 1], np.int8), size=shape), 0
    ).astype(np.int8)
    events[..., 0] = rng.choice(np.array([-1, 1], np.int8), size=shape[:-1])
    return events


@pytest.mark.parametrize(
    "shape, density", [((7, 60), 0.1), ((2, 3, 300), 0.02), ((3, 3001), 0.004), ((1, 2), 0.5)]
)
@pytest.mark.parametrize("slope", [0.1, 0.3, 1.0, 2.5])
def test_ramp_targets_equals_recurrence(shape, density, slope):
    rng = np.random.default_rng([shape[-1], len(shape), int(slope * 10)])
    events = _random_events(rng, shape, density)
    got = ramp_targets(events, slope)
    want = _ramp_loop(events, slope)
    assert got.shape == events.shape and got.dtype == np.float32
    plateau = np.abs(want) == 1.0
    np.testing.assert_array_equal(got[plateau], want[plateau])  # ±1 plateaus are exact
    # float32 run offsets grow with t: ~3e-5 after 3000 steps (docstring says ~1e-6)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_ramp_targets_single_run_is_clipped_line():
    events = np.zeros((1, 40), np.int8)
    events[0, 0] = 1
    y = ramp_targets(events, 0.1)[0]
    np.testing.assert_allclose(y, np.minimum(0.1 * np.arange(40), 1.0), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# argument errors


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"n_bits": 0}, ValueError, r"n_bits must be at least 1, but got n_bits=0"),
        ({"n_bits": 2.0}, TypeError, r"n_bits must be an int, but got float"),
        ({"n_bits": True}, TypeError, r"n_bits must be an int, but got bool"),
        ({"pulse_len": 0}, ValueError, r"pulse_len must be at least 1"),
        ({"transient": -1}, ValueError, r"transient must be at least 0"),
        ({"segment": 0}, ValueError, r"segment must be at least 1"),
        ({"p_onset": 0.0}, ValueError, r"p_onset must be in \(0, 1\), but got p_onset=0.0"),
        ({"p_onset": 1.0}, ValueError, r"p_onset must be in \(0, 1\)"),
        ({"slope": 0.0}, ValueError, r"slope must be positive, but got slope=0.0"),
        ({"target_lead": 2}, ValueError, r"target_lead must be 0 or 1, but got 2"),
        (
            {"washout": 10, "segment": 10},
            ValueError,
            r"washout must be shorter than segment, but got washout=10, segment=10",
        ),
    ],
)
def test_working_memory_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        WorkingMemory(**kwargs)


@pytest.mark.parametrize("batch, exc", [(0, ValueError), (2.5, TypeError)])
def test_sample_rejects_bad_batch(batch, exc):
    with pytest.raises(exc, match="WorkingMemory: batch must be"):
        WorkingMemory(transient=1, segment=5).sample([np.random.default_rng(0)], batch)
