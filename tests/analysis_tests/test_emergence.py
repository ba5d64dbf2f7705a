"""Onsets and timing statistics on synthetic curves and small cases with known answers."""

from __future__ import annotations

import math
import subprocess
import sys

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.emergence import (
    Noise,
    bh_adjust,
    calibrate,
    censored_regression,
    km_table,
    measure_noise,
    sign_test,
    timing_seeds,
    tost_lag,
    verdict,
    verdict_table,
)
from study.contract.outcomes import (
    Onset,
    chance_modularity,
    group_sizes,
    half_rise,
    onset,
    seed_table,
    which_first,
)

EPOCHS = np.arange(0, 1001, 25, dtype=float)  # 41 evaluations, eval_every 25


def _rise(onset_epoch: float, amplitude: float = 10.0, width: float = 6.0) -> np.ndarray:
    """A logistic z-score rise whose first evaluation >= 3 (of 10) is exactly `onset_epoch`."""
    return amplitude / (1.0 + np.exp(-(EPOCHS - (onset_epoch - 12.5)) / width))


# ---- the onset rule ---------------------------------------------------------------------------


def test_onset_is_first_evaluation_of_a_qualifying_stretch():
    # 3 at epochs 50 and 75 (a stretch of 2), below at 100, then >= 3 from 125 on.
    z = np.array([0, 1, 3, 3.5, 2, 3, 4, 5, 6, 6, 6], float)
    t = np.arange(z.size) * 25.0
    o = onset(t, z, threshold=3.0, run=3)
    assert o == Onset(125.0, True, 200.0, 5)
    assert onset(t, z, threshold=3.0, run=2).epoch == 50.0
    assert onset(t, z, threshold=3.0, run=1).epoch == 50.0


def test_onset_censored_at_last_start_with_run_evaluations_and_nan_tail():
    t = np.arange(10) * 25.0
    z = np.zeros(10)
    o = onset(t, z, threshold=3.0, run=3)
    assert not o.emerged and math.isnan(o.epoch) and o.censor == 175.0 and o.duration == 175.0
    z[7:] = np.nan  # a diverged tail: the last observed evaluation is index 6
    assert onset(t, z, threshold=3.0, run=3).censor == 100.0
    z[3:6] = 5.0  # NaN never counts as reaching the threshold
    assert onset(t, z, threshold=3.0, run=3).epoch == 75.0
    z[4] = np.nan
    assert not onset(t, z, threshold=3.0, run=3).emerged


@pytest.mark.parametrize("true_onset", [100.0, 250.0, 475.0, 800.0])
@pytest.mark.parametrize("lag", [0.0, 75.0, 150.0])
def test_known_lag_recovered_within_one_evaluation(true_onset, lag):
    rng = np.random.default_rng(int(true_onset + lag))
    zf = _rise(true_onset) + rng.normal(0.0, 1.0, EPOCHS.size)  # noisy, like q_func_z
    zs = _rise(true_onset + lag) + rng.normal(0.0, 0.2, EPOCHS.size)  # smooth, like q_struct_z
    if true_onset + lag > EPOCHS[-3]:
        pytest.skip("onset after the last confirmable evaluation")
    of, os_ = onset(EPOCHS, zf), onset(EPOCHS, zs)
    assert abs(of.epoch - true_onset) <= 25.0
    assert abs(os_.epoch - (true_onset + lag)) <= 25.0
    assert abs((os_.epoch - of.epoch) - lag) <= 25.0
    expected = "tie" if lag == 0 else "function"
    assert which_first(of, os_, 25.0) == expected


@pytest.mark.parametrize("seed", range(10))
def test_onsets_invariant_to_truncating_after_them(seed):
    rng = np.random.default_rng(seed)
    z = _rise(rng.uniform(100, 500)) + rng.normal(0.0, 1.5, EPOCHS.size)
    full = onset(EPOCHS, z, threshold=3.0, run=3)
    assert full.emerged
    for end in range(full.index + 3, EPOCHS.size + 1):  # keep the onset's own stretch
        cut = onset(EPOCHS[:end], z[:end], threshold=3.0, run=3)
        assert (cut.epoch, cut.index) == (full.epoch, full.index)


def test_half_rise_moves_with_run_length_but_onset_does_not():
    # A curve that keeps rising to the end (q_struct integrates its drive): its half-rise is later
    # the longer the run, its onset is the same.
    t = np.arange(0, 2001, 25, dtype=float)
    z = np.clip((t - 200.0) / 50.0, 0.0, None)  # starts rising at 200, never saturates
    halves, onsets = [], []
    for end in (400.0, 1000.0, 2000.0):
        keep = t <= end
        halves.append(half_rise(t[keep], z[keep]))
        onsets.append(onset(t[keep], z[keep]).epoch)
    assert halves[0] < halves[1] < halves[2]
    assert onsets == [350.0, 350.0, 350.0]  # first z >= 3: (350 − 200) / 50 = 3


@pytest.mark.parametrize("rho", [0.0, 0.9, 0.99])
def test_pure_drift_does_not_emerge(rho):
    # A slow drift to z = 2.5 over the whole run, smooth or noisy: the old rule called a drift of
    # this kind "emerged" (successive-difference noise band ~0); the z-score rule never does.
    rng = np.random.default_rng(1)
    drift = np.linspace(0.0, 2.5, EPOCHS.size)
    n = 0
    for _ in range(200):
        e = rng.normal(0.0, 0.15, EPOCHS.size)
        noise = np.empty_like(e)
        noise[0] = e[0]
        for i in range(1, e.size):
            noise[i] = rho * noise[i - 1] + math.sqrt(1 - rho**2) * e[i]
        n += onset(EPOCHS, drift + noise).emerged
    assert n / 200 <= 0.05


def test_onset_rejects_bad_input():
    with pytest.raises(ValueError, match=r"run must be an int >= 1, but got run=0"):
        onset([0, 25], [0, 0], run=0)
    with pytest.raises(ValueError, match=r"strictly increasing"):
        onset([0, 0], [0, 0])
    with pytest.raises(ValueError, match=r"same shape"):
        onset([0, 25, 50], [0, 0])


def test_outcomes_and_emergence_imports_stay_light():
    # study.service.summary and study.spec import study.contract.outcomes: no pandas, MLflow,
    # SciPy.
    code = (
        "import sys, study.contract.outcomes, analysis.emergence; "
        "print(sorted(m for m in ('pandas', 'mlflow', 'matplotlib', 'scipy', 'ray', "
        "'lifelines', 'statsmodels') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- which first, per seed table --------------------------------------------------------------


def _o(epoch: float | None, censor: float = 900.0) -> Onset:
    return Onset(math.nan, False, censor, -1) if epoch is None else Onset(epoch, True, censor, 0)


@pytest.mark.parametrize(
    "f,s,expected",
    [
        (100, 150, "function"),
        (150, 100, "structure"),
        (100, 125, "tie"),
        (100, 100, "tie"),
        (100, None, "function"),
        (None, 100, "structure"),
        (None, None, "neither"),
    ],
)
def test_which_first_counts_one_sided_emergence_for_that_side(f, s, expected):
    assert which_first(_o(f), _o(s), 25.0) == expected


def test_seed_table_without_z_scores_says_not_measured():
    curves = pd.DataFrame(
        {
            "seed": [0, 0, 0],
            "epoch": [0, 25, 50],
            "q_func": [0.0, 0.1, 0.2],
            "q_struct": [0, 0, 0.1],
            "accuracy": [0.5, 0.8, 0.95],
        }
    )
    s = seed_table(curves, task="working_memory")
    assert not s["onsets_measured"].any() and s["first"].tolist() == ["neither"]
    # the last 3 evaluations from the second half of the run: epoch 0 (untrained) is not final
    assert s["final.accuracy"].iloc[0] == pytest.approx((0.8 + 0.95) / 2)
    assert not s["success"].iloc[0]  # final 0.875, not > 0.9
    assert math.isnan(s["t_func"].iloc[0]) and not s["func_emerged"].iloc[0]


# ---- tests against hand-computed cases --------------------------------------------------------


@pytest.mark.parametrize(
    "k,n,p", [(7, 0, 2 / 2**7), (6, 1, 16 / 128), (3, 3, 1.0), (0, 5, 2 / 32), (0, 0, 1.0)]
)
def test_sign_test_exact_binomial_by_hand(k, n, p):
    # two-sided: 2 · P(X >= max(k, n)) under Binomial(k + n, ½), capped at 1
    assert sign_test(k, n) == pytest.approx(p)


def test_tost_by_hand():
    # 8 seeds, every lag within ±1 evaluation of 0, margin 2 evaluations (50 epochs):
    # both one-sided tests have 8 of 8 successes, p = 1/256 each.
    lags = np.array([0, 25, -25, 0, 0, 25, 0, -25], float)
    p, n1, n2 = tost_lag(lags, lags, 50.0)
    assert p == pytest.approx(1 / 256) and n1 == n2 == 8
    # one seed far late (+200): test 2 has 7 of 8, P(X >= 7) = 9/256
    lags[0] = 200.0
    assert tost_lag(lags, lags, 50.0)[0] == pytest.approx(9 / 256)
    # censored: q_func emerged, q_struct not by 300 epochs after it: lag > 300 ≥ margin, a failure
    # for test 2; a struct-only seed with unknown bound stays out of test 2.
    lo = np.array([0, 0, 300, -np.inf])
    hi = np.array([0, 0, np.inf, 10.0])
    p, n1, n2 = tost_lag(lo, hi, 50.0)
    assert (n1, n2) == (3, 4)  # test 1: seeds 0, 1, 2 decide; seed 3's bound says nothing
    assert p == pytest.approx(
        max(
            stats.binomtest(3, 3, 0.5, alternative="greater").pvalue,
            stats.binomtest(3, 4, 0.5, alternative="greater").pvalue,
        )
    )


def test_bh_by_hand():
    # p sorted 0.01, 0.02, 0.03, 0.5 (m = 4): p·m/rank = 0.04, 0.04, 0.04, 0.5, then the running
    # minimum from the top keeps them; NaN stays NaN and out of m.
    got = bh_adjust([0.03, np.nan, 0.01, 0.5, 0.02])
    np.testing.assert_allclose(got, [0.04, np.nan, 0.04, 0.5, 0.04])


@pytest.mark.parametrize(
    "args,expected",
    [
        ((7, 0, 0.01, 1.0), "function first"),
        ((0, 7, 0.01, 1.0), "structure first"),
        ((1, 1, 1.0, 0.01), "co-emergent"),
        ((4, 0, 0.12, 0.3), "inconclusive"),
    ],
)
def test_verdict_reading(args, expected):
    assert verdict(*args) == expected


def _seeds(firsts, lam, lags=None):
    rows = []
    for i, f in enumerate(firsts):
        tf = 100.0
        lag = (
            lags[i]
            if lags is not None
            else {"function": 100.0, "structure": -75.0, "tie": 0.0}.get(f, math.nan)
        )
        ef = f in ("function", "structure", "tie")
        rows.append(
            {
                "mi.weight": lam,
                "first": f,
                "t_func": tf if ef else math.nan,
                "t_struct": tf + lag if ef else math.nan,
                "lag": lag,
                "func_emerged": ef,
                "struct_emerged": ef,
                "t_func_censor": 950.0,
                "t_struct_censor": 950.0,
                "train.eval_every": 25,
                "status": "finished",
                "onsets_measured": True,
            }
        )
    return pd.DataFrame(rows)


def test_verdict_table_per_lambda_never_pools_and_adjusts_across_rows():
    seeds = pd.concat(
        [
            _seeds(["neither"] * 8, 0.0),
            _seeds(["function"] * 8, 0.1),
            _seeds(["tie"] * 8, 0.3, lags=[0, 25, -25, 0, 0, 25, 0, -25]),
        ]
    )
    v = verdict_table(seeds, ["mi.weight"]).set_index("mi.weight")
    assert v["verdict"].to_dict() == {
        0.0: "neither emerged",
        0.1: "function first",
        0.3: "co-emergent",
    }
    assert v.loc[0.1, "p_sign"] == pytest.approx(2 / 256)
    # BH over the treated rows' sign-test p's (2/256, 1) → 2 · 2/256; the control keeps its p
    assert v.loc[0.1, "p_sign_bh"] == pytest.approx(4 / 256)
    assert v.loc[0.0, "p_sign_bh"] == v.loc[0.0, "p_sign"] == 1.0
    assert v.loc[0.3, "p_tost"] == pytest.approx(1 / 256)
    assert v.loc[0.0, "n_neither"] == 8
    # KM medians keep the censored seeds: the controls never emerge (inf), λ = 0.1 all at 100
    assert math.isinf(v.loc[0.0, "t_func_km"]) and v.loc[0.1, "t_func_km"] == 100.0
    assert v.loc[0.1, "t_struct_km"] == 200.0


def test_timing_seeds_exclude_trials_cut_short():
    s = _seeds(["function"] * 4, 0.1)
    s.loc[1, "status"] = "diverged"
    s.loc[2, "status"] = "stopped"
    kept, excluded = timing_seeds(s)
    assert len(kept) == 2 and sorted(excluded["reason"]) == ["trial diverged", "trial stopped"]


def test_timing_seeds_leave_out_networks_that_failed_the_task():
    s = _seeds(["function"] * 4, 0.1).assign(success=[True, False, True, True])
    s.loc[3, "status"] = "diverged"  # the trial's status is the first reason
    kept, excluded = timing_seeds(s)
    assert kept.index.tolist() == [0, 2]
    assert excluded.set_index(excluded.index)["reason"].to_dict() == {
        1: "failed the task",
        3: "trial diverged",
    }
    assert len(timing_seeds(s, require_success=False)[0]) == 3


def test_verdict_table_says_structure_never_emerged_instead_of_function_first():
    # 8 seeds, all function-first by censored evidence: q_func_z emerged in every seed,
    # q_struct_z in only 2. The sign test alone reads "function first" (p = 2/256); the cell
    # says what the data show: structure mostly never emerged.
    s = _seeds(["function"] * 8, 0.1)
    s["struct_emerged"] = [True, True] + [False] * 6
    s.loc[2:, ["t_struct", "lag"]] = math.nan
    v = verdict_table(s, ["mi.weight"]).iloc[0]
    assert v["p_sign"] == pytest.approx(2 / 256)
    assert (v["n_func_emerged"], v["n_struct_emerged"]) == (8, 2)
    assert v["verdict"] == "structure never emerged"
    s["func_emerged"] = s["struct_emerged"]
    assert verdict_table(s, ["mi.weight"]).iloc[0]["verdict"] == "neither emerged"


# ---- Kaplan–Meier, regression ------------------------------------------------------------------


def test_km_matches_the_product_limit_closed_form():
    # onsets 100, 200 (events), a seed censored at 150, one at 300, one onset at 300:
    # S(100) = 4/5, S(200) = 4/5 · 2/3 (3 at risk after the censoring at 150), S(300) = 8/15 · 1/2
    seeds = pd.DataFrame(
        {
            "func_emerged": [True, True, False, False, True],
            "t_func": [100.0, 200.0, math.nan, math.nan, 300.0],
            "t_func_censor": [900.0, 900.0, 150.0, 300.0, 900.0],
            "struct_emerged": [False] * 5,
            "t_struct": [math.nan] * 5,
            "t_struct_censor": [900.0] * 5,
        }
    )
    km = km_table(seeds)
    f = km[km["metric"] == "func"].set_index("epoch")["emerged"]
    assert f[100.0] == pytest.approx(1 - 4 / 5)
    assert f[150.0] == pytest.approx(1 - 4 / 5)
    assert f[200.0] == pytest.approx(1 - 8 / 15)
    assert f[300.0] == pytest.approx(1 - 4 / 15)
    s = km[km["metric"] == "struct"]
    assert (s["emerged"] == 0).all() and math.isinf(s["median"].iloc[0])


def test_censored_regression_finds_a_known_dependence_and_keeps_censored_seeds():
    # Onset epochs grow with λ (Weibull noise), the largest λ mostly censored: the AFT
    # coefficient of λ is positive and significant, with every seed (censored too) in n.
    rng = np.random.default_rng(0)
    rows = []
    for lam in (0.1, 0.2, 0.4, 0.8):
        for _ in range(10):
            t = 100.0 * math.exp(2.0 * lam) * rng.weibull(4.0)
            censored = t > 400.0
            rows.append(
                {
                    "mi.weight": lam,
                    "func_emerged": not censored,
                    "t_func": math.nan if censored else t,
                    "t_func_censor": 400.0,
                    "struct_emerged": True,
                    "t_struct": 50.0 + rng.uniform(0, 10),
                    "t_struct_censor": 400.0,
                    "first": "structure",
                    "train.eval_every": 25,
                }
            )
    reg = censored_regression(pd.DataFrame(rows), ["mi.weight"])
    r = reg[reg["target"] == "t_func"].iloc[0]
    assert r["n"] == 40 and r["n_events"] < 40
    assert r["coef"] == pytest.approx(2.0, abs=0.6) and r["converged"]  # log time per unit λ
    assert "p_value" not in reg  # pooled seeds are not independent: no p-value
    logit = reg[reg["target"] == "function_first"].iloc[0]
    assert "one side only" in logit["note"] and not logit["converged"]


def test_censored_regression_says_when_a_fit_did_not_converge():
    # function first exactly when λ > 0.25: perfect separation, the logistic MLE is infinite
    rows = [
        {
            "mi.weight": lam,
            "func_emerged": True,
            "t_func": 100.0,
            "t_func_censor": 400.0,
            "struct_emerged": True,
            "t_struct": 150.0 if lam > 0.25 else 50.0,
            "t_struct_censor": 400.0,
            "first": "function" if lam > 0.25 else "structure",
            "train.eval_every": 25,
        }
        for lam in (0.1, 0.2, 0.3, 0.4)
        for _ in range(5)
    ]
    logit = censored_regression(pd.DataFrame(rows), ["mi.weight"]).query(
        "target == 'function_first'"
    )
    assert len(logit) == 1 and not logit["converged"].item()
    assert math.isnan(logit["coef"].item()) and "did not converge" in logit["note"].item()


# ---- calibration -------------------------------------------------------------------------------


def test_calibration_unequal_noise_identical_time_course_false_function_first_below_alpha():
    # Noisy q_func_z (sd 1, white) against smooth q_struct_z (sd 0.3, rho 0.95), same onsets.
    cal = calibrate(
        Noise(1.0, 0.0, 8),
        Noise(0.3, 0.95, 8),
        epochs=EPOCHS,
        n_cells=150,
        rng=np.random.default_rng(0),
    )
    assert cal.false_function_first <= cal.alpha
    assert cal.false_emergence_func <= 0.05 and cal.false_emergence_struct <= 0.05


def test_calibration_can_fail_a_first_crossing_rule():
    # Control: a first crossing (run = 1) at z = 2 on the same noise is biased towards function
    # first, which is what the defaults avoid.
    cal = calibrate(
        Noise(1.0, 0.0, 8),
        Noise(0.3, 0.95, 8),
        epochs=EPOCHS,
        n_cells=150,
        z=2.0,
        run=1,
        rng=np.random.default_rng(0),
    )
    assert cal.seed_function_first > 3 * cal.seed_structure_first
    assert cal.false_emergence_func > 0.05


def test_measure_noise_recovers_ar1_parameters():
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(20):
        x = np.empty(200)
        x[0] = rng.normal()
        for i in range(1, 200):
            x[i] = 0.8 * x[i - 1] + math.sqrt(1 - 0.64) * rng.normal()
        rows.append(pd.DataFrame({"seed": seed, "epoch": np.arange(200), "q_func_z": 2.0 * x}))
    n = measure_noise(pd.concat(rows), "q_func_z")
    assert n.sd == pytest.approx(2.0, rel=0.15) and n.rho == pytest.approx(0.8, abs=0.06)
    assert n.n_seeds == 20


# ---- chance level (moved to the outcomes module) -----------------------------------------------


@pytest.mark.parametrize(
    "n,k,expected", [(10, 3, [4, 3, 3]), (40, 2, [20, 20]), (7, 7, [1] * 7), (11, 4, [3, 3, 3, 2])]
)
def test_group_sizes_larger_groups_first(n, k, expected):
    assert group_sizes(n, k) == expected


@pytest.mark.parametrize("n,k,sizes", [(12, 2, None), (10, 3, None), (9, 3, [2, 3, 4])])
def test_chance_modularity_matches_networkx_on_complete_graph(n, k, sizes):
    g = nx.complete_graph(n)
    sz = group_sizes(n, k, sizes)
    bounds = np.cumsum([0, *sz])
    parts = [set(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
    assert chance_modularity(n, k, sizes) == pytest.approx(nx.community.modularity(g, parts))
