"""Timing onsets (half of each curve's own fitted rise, confirmed online) against known answers."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.contract.logistic import make_grid
from study.contract.names import TIMING_FUNCTION, TIMING_STRUCTURE
from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z, onset, seed_table
from study.contract.rise import (
    DETECT_RUN,
    DETECT_Z,
    STEP_COLUMN,
    confirm_online,
    detections,
    lag_column,
    onset_column,
    regular_step,
    seed_onset_columns,
    seed_onsets,
    timing_onset,
    timing_onsets,
)

REPO = Path(__file__).resolve().parents[3]

REGULAR = np.arange(0.0, 1001.0, 25.0)  # 41 evaluations, every 25 epochs
DENSE = np.concatenate([np.arange(0.0, 50.0), np.arange(50.0, 1001.0, 25.0)])  # 50 + 39


def _logistic(t: np.ndarray, m: float, w: float, a: float = 10.0, b: float = 0.0) -> np.ndarray:
    return b + a / (1.0 + np.exp(-(t - m) / w))


def _noisy(
    rng: np.random.Generator,
    t: np.ndarray,
    amp: float,
    width_evals: float,
    sd: float,
    rho: float,
    mids: np.ndarray,
) -> np.ndarray:
    """Curves amp·σ((t − m)/(width·25)) + noise, one per midpoint m, shape (len(mids), T): the
    noise stationary with marginal sd `sd` and lag-1 autocorrelation `rho` (per evaluation of
    the regular 25-epoch schedule)."""
    e = rng.standard_normal((mids.size, t.size))
    for i in range(1, t.size):
        e[:, i] = rho * e[:, i - 1] + math.sqrt(1.0 - rho**2) * e[:, i]
    course = amp / (1.0 + np.exp(-(t[None, :] - mids[:, None]) / (width_evals * 25.0)))
    return course + sd * e


# ---- the estimate ------------------------------------------------------------------------------


def _half_from_start(t1: float, m: float, w: float) -> float:
    """Closed form: where σ((t − m)/w) is half-way from σ((t1 − m)/w) to 1."""
    s1 = 1.0 / (1.0 + math.exp(-(t1 - m) / w))
    u = 0.5 * (1.0 + s1)
    return m + w * math.log(u / (1.0 - u))


@pytest.mark.parametrize("m", [212.5, 400.0, 637.0])
@pytest.mark.parametrize("w", [20.0, 50.0])
def test_noise_free_rise_gives_its_midpoint(m, w):
    o = timing_onset(REGULAR, _logistic(REGULAR, m, w))
    assert o.status == "onset"
    # half-way from the level at the first evaluation to the plateau: the midpoint when the
    # baseline is seen (within 0.06 evaluations here), 1.4 epochs later for m = 212.5, w = 50
    assert o.epoch == pytest.approx(_half_from_start(0.0, m, w), abs=0.02 * 25)
    assert abs(_half_from_start(0.0, m, w) - m) <= 1.5
    assert o.width == pytest.approx(w, rel=0.05)
    assert o.amplitude == pytest.approx(10.0, rel=0.02)


def test_other_fraction_is_that_fraction_of_the_rise():
    m, w = 400.0, 40.0
    o = timing_onset(REGULAR, _logistic(REGULAR, m, w), fraction=0.25)
    assert o.epoch == pytest.approx(m + w * math.log(0.25 / 0.75), abs=0.5)
    with pytest.raises(ValueError, match="fraction"):
        timing_onset(REGULAR, _logistic(REGULAR, m, w), fraction=0.95)


@pytest.mark.parametrize("offset", [-1.0, 0.0, 1.5])
def test_onset_does_not_depend_on_amplitude_or_offset_but_threshold_onset_does(offset):
    # (the curve must still become detectable, z >= 3: that gate is the significance rule)
    m, w = 450.0, 50.0
    timing, threshold = [], []
    for amplitude in (6.0, 10.0, 40.0):
        x = _logistic(REGULAR, m, w, a=amplitude, b=offset)
        timing.append(timing_onset(REGULAR, x).epoch)
        threshold.append(onset(REGULAR, x).epoch)
    assert np.allclose(timing, m, atol=0.5)
    # the same time course crosses z = 3 four or more evaluations earlier when 40 than when 6
    assert threshold[0] - threshold[2] >= 100.0


def test_rise_in_the_dense_part_of_an_irregular_schedule():
    m, w = 17.3, 3.0  # epochs: every epoch there
    o = timing_onset(DENSE, _logistic(DENSE, m, w, a=15.0))
    assert o.status == "onset" and o.epoch == pytest.approx(m, abs=0.1)
    assert regular_step(DENSE) == 25.0 and regular_step(REGULAR) == 25.0


def test_noisy_onsets_are_unbiased_and_amplitude_free():
    rng = np.random.default_rng(11)
    m = rng.uniform(300.0, 700.0, 150)
    err = {}
    for amp in (5.0, 20.0):
        x = _noisy(rng, REGULAR, amp, 2.0, 1.0, 0.0, m)
        ons = timing_onsets(REGULAR, x)
        e = np.array([o.epoch for o in ons]) - m
        # resolved: all at amplitude 20; at 5 (SNR 5, noise sd 1) about half, the rest
        # "unresolved" (evidence 16 σ̂² before a rise counts as resolved)
        assert sum(o.status == "onset" for o in ons) >= (60 if amp == 5.0 else 145)
        err[amp] = e[np.isfinite(e)] / 25.0
    # mean error within 0.2 evaluations of 0 at both amplitudes (threshold onsets: > 2)
    for amp, e in err.items():
        assert abs(np.mean(e)) < 0.2, (amp, np.mean(e))
    assert np.std(err[20.0]) < np.std(err[5.0]) < 1.5


def test_falling_statistic_with_direction_minus_one():
    m, w = 300.0, 40.0
    up = timing_onset(REGULAR, _logistic(REGULAR, m, w))
    down = timing_onset(REGULAR, -_logistic(REGULAR, m, w), direction=-1)
    assert down.status == "onset" and down.epoch == pytest.approx(up.epoch, abs=1e-6)
    assert down.amplitude == pytest.approx(-up.amplitude)
    # read as a rise, a falling curve is never detected
    assert timing_onset(REGULAR, -_logistic(REGULAR, m, w)).status == "not detected"


def test_missing_evaluations_are_skipped():
    x = _logistic(REGULAR, 500.0, 40.0)
    x[[5, 19, 21, 30]] = np.nan
    o = timing_onset(REGULAR, x)
    assert o.status == "onset" and o.epoch == pytest.approx(500.0, abs=1.0)


# ---- censoring ---------------------------------------------------------------------------------


def test_rise_under_way_at_the_first_evaluation_is_timed_from_its_first_level():
    # a rise that starts with training: its logistic midpoint is 5 epochs in (the fitted
    # baseline lies before the run), its onset is half-way from the level at epoch 0 (0.46 of
    # the logistic's rise) to the plateau: 34.7 epochs, a point onset
    x = _logistic(REGULAR, 5.0, 30.0)
    o = timing_onset(REGULAR, x)
    assert o.status == "onset" and o.emerged
    assert o.epoch == pytest.approx(_half_from_start(0.0, 5.0, 30.0), abs=1.0)
    assert 33.0 <= o.epoch <= 36.0
    o = timing_onset(DENSE[3:], _logistic(DENSE[3:], 4.0, 3.0))
    assert o.status == "onset" and o.epoch == pytest.approx(
        _half_from_start(3.0, 4.0, 3.0), abs=0.25
    )


def test_rise_half_done_before_the_second_evaluation_is_left_censored():
    # half-way from the first level to the plateau at epoch 9, before the second evaluation
    # (25): no evaluation resolves it, so only a bound
    o = timing_onset(REGULAR, _logistic(REGULAR, 8.0, 4.0))
    assert o.status == "left-censored" and o.emerged
    assert math.isnan(o.epoch) and o.lo == 0.0 and o.hi == 25.0


def test_a_curve_detectable_at_its_first_evaluation_with_run_one():
    # detection complete at evaluation 0 (run = 1): the fit still waits for 5 evaluations
    x = _logistic(REGULAR, -10.0, 30.0)  # already above the threshold at epoch 0
    for k in (3, 4):
        assert not confirm_online(REGULAR[:k], x[None, :k], run=1).any()
    o = timing_onset(REGULAR, x, run=1)
    assert o.emerged and o.detectable_from == 0.0
    assert o.epoch == pytest.approx(_half_from_start(0.0, -10.0, 30.0), abs=1.0)


def test_flat_curve_is_not_detected_and_right_censored():
    rng = np.random.default_rng(2)
    o = timing_onset(REGULAR, rng.normal(0.0, 1.0, REGULAR.size))
    assert o.status == "not detected" and not o.emerged
    # never detectable: nothing bounds its half-rise (a rise below the threshold can have
    # passed its middle already)
    assert o.lo == 0.0 and o.hi == math.inf and math.isnan(o.detectable_from)


def test_rise_at_the_end_is_unresolved_with_a_lower_bound_below_its_onset():
    m, w = 980.0, 40.0  # the run ends at 1000, a third of the way up
    o = timing_onset(REGULAR, _logistic(REGULAR, m, w, a=20.0))
    assert o.status == "unresolved" and not o.emerged and o.hi == math.inf
    assert np.isfinite(o.detectable_from)
    assert REGULAR[0] <= o.lo <= m


# ---- online: the past only ---------------------------------------------------------------------


def test_truncating_after_the_decision_never_moves_the_onset():
    rng = np.random.default_rng(5)
    m = rng.uniform(200.0, 500.0, 40)
    x = np.concatenate(
        [
            _noisy(rng, REGULAR, 12.0, 2.0, 1.0, 0.0, m[:20]),
            _noisy(rng, REGULAR, 7.0, 3.0, 0.3, 0.95, m[20:]),
        ]
    )
    full = timing_onsets(REGULAR, x)
    decided = [o for o in full if o.emerged and o.complete]
    assert len(decided) >= 30
    for s, o in enumerate(full):
        if not (o.emerged and o.complete):
            continue
        k = int(np.searchsorted(REGULAR, o.decided_at))
        for cut in (k + 1, k + 3, REGULAR.size):
            if cut > REGULAR.size:
                continue
            short = timing_onset(REGULAR[:cut], x[s, :cut])
            assert short == o, (s, cut)


def test_confirm_online_agrees_with_the_offline_onset_at_every_evaluation():
    rng = np.random.default_rng(9)
    m = rng.uniform(200.0, 500.0, 6)
    x = _noisy(rng, REGULAR, 10.0, 2.0, 1.0, 0.0, m)
    full = timing_onsets(REGULAR, x)
    first_decided = np.full(6, -1)
    for k in range(1, REGULAR.size + 1):
        now = confirm_online(REGULAR[:k], x[:, :k])
        assert now.shape == (6,)
        for s in np.flatnonzero(now & (first_decided < 0)):
            first_decided[s] = k - 1
    for s, o in enumerate(full):
        if o.emerged and o.complete:
            # decided exactly when the offline onset's window has been observed
            assert REGULAR[first_decided[s]] == o.decided_at
        else:
            assert first_decided[s] == -1
    assert (first_decided >= 0).sum() >= 5


def test_confirm_online_needs_three_evaluations():
    assert not confirm_online([0.0, 1.0], [[5.0, 5.0]]).any()


# ---- the detection rule, batched ---------------------------------------------------------------


def test_batched_detection_is_the_contract_onset_rule():
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(1.0, 3.0, 30))
    y = rng.normal(2.5, 1.5, (300, 30))
    y[rng.random(y.shape) < 0.1] = np.nan
    y[:30, 20:] = np.nan
    idx, censor = detections(t, y, 3.0, 3)
    for s in range(300):
        o = onset(t, y[s], threshold=3.0, run=3)
        assert o.index == idx[s]
        assert o.censor == censor[s] or (math.isnan(o.censor) and math.isnan(censor[s]))


# ---- argument checks ---------------------------------------------------------------------------


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="strictly increasing"):
        timing_onsets([0.0, 2.0, 1.0], [[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"shape \(T,\)"):
        timing_onsets(REGULAR, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="direction"):
        timing_onsets(REGULAR, np.zeros(REGULAR.size), direction=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        make_grid(np.array([0.0, 0.0, 1.0]))


# ---- the per-seed columns of seeds.parquet -----------------------------------------------------


def _trial(rng: np.random.Generator, mids: np.ndarray, lag_evals: float) -> pd.DataFrame:
    """One trial's curves: q_func_z rises (amplitude 18) at each seed's midpoint, q_struct_z
    (amplitude 7) lag_evals evaluations later; no dw_block_z curve."""
    rows = []
    for s, m in enumerate(mids):
        rows.append(
            pd.DataFrame(
                {
                    "seed": s,
                    "seed_value": 100 + s,
                    "epoch": REGULAR,
                    "accuracy": 0.95,
                    "q_func_z": _logistic(REGULAR, m, 50.0, a=18.0)
                    + 0.5 * rng.standard_normal(REGULAR.size),
                    "q_struct_z": _logistic(REGULAR, m + 25.0 * lag_evals, 50.0, a=7.0)
                    + 0.2 * rng.standard_normal(REGULAR.size),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_seed_table_carries_every_seeds_timing_onsets():
    rng = np.random.default_rng(3)
    mids = np.array([300.0, 350.0, 420.0, 500.0])
    table = seed_table(_trial(rng, mids, 3.0), task="working_memory")
    assert set(seed_onset_columns()) <= set(table.columns)
    assert list(table["seed"]) == [0, 1, 2, 3]
    assert (table[STEP_COLUMN] == 25.0).all()
    f, s = onset_column("q_func_z"), onset_column("q_struct_z")
    assert (table[onset_column("q_func_z", "status")] == "onset").all()
    assert (table[onset_column("q_struct_z", "status")] == "onset").all()
    assert np.allclose(table[f], mids, atol=10.0)
    assert np.allclose(table[s], mids + 75.0, atol=10.0)
    assert (table[onset_column("q_func_z", "lo")] == table[f]).all()
    assert (table[onset_column("q_func_z", "hi")] == table[f]).all()
    # lag bounds of the ordering: equal for point onsets, 3 evaluations
    assert np.allclose(table[lag_column("q_struct_z", "lo")], 75.0, atol=15.0)
    assert (table[lag_column("q_struct_z", "lo")] == table[lag_column("q_struct_z", "hi")]).all()
    # detectable (z >= 3 for 3 evaluations) before it is decided; the amplitude-free onset
    # lies after the larger curve's detection
    det = table[onset_column("q_func_z", "detectable_from")]
    dec = table[onset_column("q_func_z", "decided_at")]
    assert (det < table[f]).all() and (dec > table[f]).all()
    # the measure this run did not record: NaN columns, no status
    assert table[onset_column("dw_block_z", "status")].isna().all()
    assert table[onset_column("dw_block_z")].isna().all()
    assert table[lag_column("dw_block_z", "hi")].isna().all()


def test_seed_onsets_censor_a_flat_seed_and_match_the_onset_function():
    rng = np.random.default_rng(4)
    c = _trial(rng, np.array([400.0, 400.0]), 0.0)
    flat = c["seed"] == 1
    c.loc[flat, "q_struct_z"] = 0.3 * rng.standard_normal(int(flat.sum()))
    out = seed_onsets(c, threshold=3.0, run=3)
    assert out.loc[1, onset_column("q_struct_z", "status")] == "not detected"
    assert out.loc[1, onset_column("q_struct_z", "lo")] == 0.0
    assert out.loc[1, onset_column("q_struct_z", "hi")] == math.inf
    assert math.isnan(out.loc[1, onset_column("q_struct_z", "decided_at")])
    # lag of a seed whose structure never rose: bounded below only
    assert out.loc[1, lag_column("q_struct_z", "hi")] == math.inf
    x = c[c["seed"] == 0]["q_func_z"].to_numpy()
    assert timing_onset(REGULAR, x).epoch == out.loc[0, onset_column("q_func_z")]


def test_seed_onsets_follow_the_declared_structure_measures():
    rng = np.random.default_rng(5)
    c = _trial(rng, np.array([400.0]), 2.0)
    c["falling"] = -c["q_struct_z"]
    out = seed_onsets(c, structures=[("falling", -1, "a fall")])
    assert list(out.columns) == ["seed", *seed_onset_columns(structures=[("falling", -1)])]
    assert out.loc[0, onset_column("falling", "status")] == "onset"
    assert out.loc[0, lag_column("falling", "lo")] == pytest.approx(50.0, abs=15.0)
    with pytest.raises(ValueError, match="field must be one of"):
        onset_column("q_func_z", "epoch")


def test_the_structure_measures_are_declared_once():
    assert TIMING_FUNCTION == "q_func_z"
    assert [s[0] for s in TIMING_STRUCTURE] == ["q_struct_z", "dw_block_z"]
    assert all(d in (1, -1) for _, d, _ in TIMING_STRUCTURE)
    for s, _, _ in TIMING_STRUCTURE:
        assert lag_column(s, "lo") in seed_onset_columns()


def test_detection_defaults_are_the_emergence_defaults():
    assert (DETECT_Z, DETECT_RUN) == (DEFAULT_Z, DEFAULT_RUN)


def test_the_onset_core_imports_numpy_only():
    code = (
        "import sys, study.contract.rise, study.contract.power, study.contract.outcomes; "
        "print(sorted(m for m in ('torch', 'pandas', 'scipy', 'analysis', 'study.spec') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == "[]"


def test_the_onset_columns_are_documented_in_run_data():
    text = (REPO / "docs" / "run-data.md").read_text()
    assert f"`{STEP_COLUMN}`" in text
    for field in ("status", "lo", "hi", "decided_at", "detectable_from"):
        assert f"`onset.<m>.{field}`" in text, field
    assert "`lag.<s>.lo`, `lag.<s>.hi`" in text
    assert "TIMING_STRUCTURE" in text
