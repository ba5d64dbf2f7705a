"""Emergence epochs and lag statistics on synthetic curves with known answers."""

from __future__ import annotations

import math
import subprocess
import sys

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.emergence import (chance_modularity, group_sizes, lag_summary, lag_table, onset,
                                rank_correlations, seed_onsets)

EPOCHS = np.arange(0, 1001, 25, dtype=float)  # 41 evaluations, eval_every 25 (method.md §10.1)


@pytest.mark.parametrize("true_onset", [50.0, 200.0, 475.0, 800.0])
@pytest.mark.parametrize("noise", [0.0, 0.005, 0.02])
def test_onset_half_rise_of_noisy_sigmoid_is_known(noisy_sigmoid, true_onset, noise):
    rng = np.random.default_rng(int(true_onset) + int(1000 * noise))
    x = noisy_sigmoid(EPOCHS, true_onset, 0.3, base=-0.01, noise=noise, rng=rng)
    clean = noisy_sigmoid(EPOCHS, true_onset, 0.3, base=-0.01)
    o = onset(EPOCHS, x)
    assert o.emerged
    assert o.half_rise == true_onset
    # X_0 is one evaluation, X_end a mean of three: rise has sd ≈ 1.15·noise; allow 5 noise.
    assert o.rise == pytest.approx(clean[-3:].mean() - clean[0], abs=5 * noise + 1e-9)


@pytest.mark.parametrize("noise", [0.005, 0.02, 0.05])
def test_onset_noise_estimate_matches_generator(noisy_sigmoid, noise):
    rng = np.random.default_rng(11)
    x = noisy_sigmoid(EPOCHS, 300.0, 0.3, noise=noise, rng=rng)
    # MAD on 40 differences: a relative error of about 25% is the estimator's own spread.
    assert onset(EPOCHS, x).noise == pytest.approx(noise, rel=0.4)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("noise", [0.005, 0.05])
def test_onset_flat_noise_never_emerges(seed, noise):
    rng = np.random.default_rng(seed)
    x = -0.02 + rng.normal(0.0, noise, EPOCHS.size)
    o = onset(EPOCHS, x, chance=-0.02)
    assert not o.emerged
    assert math.isnan(o.half_rise) and math.isnan(o.threshold)


def test_onset_rise_below_noise_band_is_censored(noisy_sigmoid):
    rng = np.random.default_rng(3)
    # A real but small rise (0.03) buried in noise 0.05: 3σ = 0.15 is not reached.
    x = noisy_sigmoid(EPOCHS, 300.0, 0.03, noise=0.05, rng=rng)
    o = onset(EPOCHS, x)
    assert not o.emerged and math.isnan(o.half_rise)


def test_onset_falling_curve_never_emerges(noisy_sigmoid):
    x = 0.3 - noisy_sigmoid(EPOCHS, 300.0, 0.3)
    o = onset(EPOCHS, x)
    assert not o.emerged and o.rise < 0


@pytest.mark.parametrize("min_rise,emerged", [(0.005, True), (0.02, False)])
def test_onset_min_rise_decides_noise_free_curves(noisy_sigmoid, min_rise, emerged):
    x = noisy_sigmoid(EPOCHS, 300.0, 0.01)
    assert onset(EPOCHS, x, min_rise=min_rise).emerged is emerged


def test_onset_threshold_is_first_epoch_staying_above_chance_plus_margin():
    # Most successive differences are 0, so noise = 0 and margin = min_rise = 0.02. The curve
    # touches 0.03 at epoch 50, falls back to 0 at 75, and stays above 0.02 from epoch 100 on.
    t = np.arange(0, 501, 25, dtype=float)
    x = np.array([0, 0, 0.03, 0, 0.05, 0.1, 0.2, 0.3] + [0.3] * 13)
    o = onset(t, x, chance=0.0)
    assert o.noise == 0.0
    assert o.threshold == 100.0
    assert o.half_rise == 150.0  # first value >= 0 + 0.3 / 2


def test_onset_threshold_is_nan_without_chance(noisy_sigmoid):
    o = onset(EPOCHS, noisy_sigmoid(EPOCHS, 300.0, 0.3))
    assert o.emerged and math.isnan(o.threshold)


def test_onset_final_window_sets_x_end():
    t = np.arange(6, dtype=float) * 25
    x = np.array([0.0, 0.0, 0.0, 0.0, 0.4, 0.2])
    assert onset(t, x, final_window=1, min_rise=0).rise == pytest.approx(0.2)
    assert onset(t, x, final_window=2, min_rise=0).rise == pytest.approx(0.3)


def test_onset_ignores_nan_tail_of_a_diverged_curve(noisy_sigmoid):
    x = noisy_sigmoid(EPOCHS, 200.0, 0.3)
    x[EPOCHS >= 600] = np.nan
    x[EPOCHS == 300] = np.inf
    o = onset(EPOCHS, x, chance=0.0)
    assert o.emerged and o.half_rise == 200.0
    assert o.rise == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize("values", [np.full(41, np.nan), np.array([np.nan] * 39 + [0.1, 0.2])])
def test_onset_too_few_finite_values_is_censored(values):
    o = onset(EPOCHS, values)
    assert not o.emerged and math.isnan(o.half_rise) and math.isnan(o.noise)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"epochs": [0, 25, 50], "values": [0.0, 0.1]}, r"onset\(\): epochs and values must have"),
     ({"epochs": [0, 50, 25], "values": [0, 0, 0]}, r"strictly increasing, but got \[0.0, 50.0"),
     ({"epochs": [0, 25, 50], "values": [0, 0, 0], "final_window": 0},
      r"final_window must be >= 1"),
     ({"epochs": [0, 25, 50], "values": [0, 0, 0], "noise_k": -1}, r"noise_k and min_rise"),
     ({"epochs": [0, 25, 50], "values": [0, 0, 0], "chance": float("nan")}, r"chance must be"),
     ({"epochs": [[0, 25]], "values": [[0, 0]]}, r"same shape \(T,\)")],
)
def test_onset_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        onset(**kwargs)


def test_onset_rejects_non_int_final_window():
    with pytest.raises(TypeError, match=r"final_window must be an int, but got 2.5"):
        onset([0, 25, 50], [0, 0, 0], final_window=2.5)


def test_emergence_import_stays_light():
    # The training code imports onset(); it must not pull pandas, MLflow or matplotlib.
    code = ("import sys, analysis.emergence; "
            "print(sorted(m for m in ('pandas', 'mlflow', 'matplotlib', 'scipy', 'ray') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("n,k,expected", [(10, 3, [4, 3, 3]), (40, 2, [20, 20]), (7, 7, [1] * 7),
                                          (11, 4, [3, 3, 3, 2])])
def test_group_sizes_larger_groups_first(n, k, expected):
    assert group_sizes(n, k) == expected


@pytest.mark.parametrize("n,k,sizes,match", [(10, 11, None, r"1 <= n_groups <= n_hidden"),
                                             (10, 2, [3, 6], r"summing to n_hidden=10"),
                                             (10, 2, [10, 0], r"positive ints")])
def test_group_sizes_rejects_impossible_partitions(n, k, sizes, match):
    with pytest.raises(ValueError, match=match):
        group_sizes(n, k, sizes)


@pytest.mark.parametrize("n,k,sizes", [(40, 2, None), (24, 3, None), (10, 3, None),
                                       (20, 2, [6, 14]), (30, 4, [3, 7, 10, 10])])
def test_chance_modularity_matches_networkx_on_complete_graph(n, k, sizes):
    blocks = group_sizes(n, k, sizes)
    bounds = np.cumsum([0, *blocks])
    communities = [set(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
    expected = nx.community.modularity(nx.complete_graph(n), communities)
    assert chance_modularity(n, k, sizes) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n", [4, 40, 100])
def test_chance_modularity_two_halves_closed_form(n):
    # ground-truth.md: −1/(2(N−1)) for a balanced two-group partition.
    assert chance_modularity(n, 2) == pytest.approx(-1 / (2 * (n - 1)))


def test_lag_summary_known_values():
    lags = np.array([125.0, 150.0, 175.0, 150.0, np.nan, 100.0, np.nan])
    s = lag_summary(lags, rng=np.random.default_rng(0))
    assert (s.n, s.n_censored, s.n_positive) == (5, 2, 5)
    assert s.median == 150.0 and s.frac_positive == 1.0
    assert 100.0 <= s.ci_low <= s.median <= s.ci_high <= 175.0
    # With ties scipy uses the normal approximation; compare with its direct call on the lags.
    assert s.p_value == pytest.approx(stats.wilcoxon(lags[np.isfinite(lags)]).pvalue)


@pytest.mark.parametrize("n", [5, 8, 12])
def test_lag_summary_wilcoxon_exact_p_for_all_positive_distinct_lags(n):
    # Exact null distribution: all n signs positive has probability 2^-n, two-sided 2·2^-n.
    lags = 25.0 * np.arange(1, n + 1)
    s = lag_summary(lags, rng=np.random.default_rng(1))
    assert s.p_value == pytest.approx(2.0 ** (1 - n))
    assert s.statistic == 0.0


def test_lag_summary_bootstrap_ci_covers_population_median():
    rng = np.random.default_rng(5)
    lags = rng.normal(100.0, 30.0, 60)
    s = lag_summary(lags, rng=np.random.default_rng(6), n_boot=1000)
    assert s.ci_low < 100.0 < s.ci_high
    assert s.ci_high - s.ci_low < 40.0


def test_lag_summary_is_reproducible_with_same_generator():
    lags = np.array([10.0, -25.0, 50.0, 75.0, 0.0, 100.0])
    a = lag_summary(lags, rng=np.random.default_rng(42))
    b = lag_summary(lags, rng=np.random.default_rng(42))
    assert a == b


@pytest.mark.parametrize(
    "lags,expected",
    [([np.nan, np.nan], (0, 2, math.nan, math.nan)),  # all censored
     ([0.0, 0.0, 0.0], (3, 0, 0.0, 1.0)),  # no evidence either way
     ([50.0], (1, 0, 50.0, 1.0))],  # one seed: no CI, and one sign is no evidence (p = 1)
)
def test_lag_summary_edge_cases(lags, expected):
    s = lag_summary(np.array(lags), rng=np.random.default_rng(0))
    n, n_censored, median, p = expected
    assert (s.n, s.n_censored) == (n, n_censored)
    assert s.median == pytest.approx(median, nan_ok=True)
    assert s.p_value == pytest.approx(p, nan_ok=True)
    if n < 2:
        assert math.isnan(s.ci_low)


def test_lag_summary_rejects_global_random_state():
    with pytest.raises(TypeError, match=r"rng must be a numpy Generator, but got int"):
        lag_summary([1.0, 2.0], rng=0)


def test_lag_table_groups_and_counts_censored_seeds():
    seeds = pd.DataFrame({
        "cell": ["a", "a", "a", "b", "b", "b"],
        "lag": [100.0, 150.0, np.nan, np.nan, -50.0, np.nan],
        "func_emerged": [True, True, True, False, True, False],
        "struct_emerged": [True, True, False, False, True, True],
    })
    t = lag_table(seeds, ["cell"], rng=np.random.default_rng(0)).set_index("cell")
    assert t.loc["a", "n_seeds"] == 3 and t.loc["a", "n"] == 2
    assert t.loc["a", "median"] == 125.0 and t.loc["a", "n_func_only"] == 1
    assert t.loc["b", "n_positive"] == 0 and t.loc["b", "median"] == -50.0
    assert t.loc["b", "n_func_only"] == 0


def test_rank_correlations_known_monotone_relation():
    rng = np.random.default_rng(2)
    lam = np.repeat([0.0, 0.03, 0.1, 0.3], 5)
    seeds = pd.DataFrame({
        "mi.weight": lam,
        "t_func": 100 + 1000 * lam,  # strictly increasing in λ apart from ties inside a level
        "lag": rng.permutation(np.arange(20.0)),
        "final.q_func": np.full(20, 0.3),  # constant: undefined
    })
    r = rank_correlations(seeds, ["mi.weight"], ["t_func", "lag", "final.q_func", "missing"])
    r = r.set_index("target")
    assert r.loc["t_func", "rho"] == pytest.approx(1.0)
    expected = stats.spearmanr(lam, seeds["lag"])
    assert r.loc["lag", "rho"] == pytest.approx(expected.statistic)
    assert r.loc["lag", "p_value"] == pytest.approx(expected.pvalue)
    assert math.isnan(r.loc["final.q_func", "rho"]) and r.loc["missing", "n"] == 0


def test_rank_correlations_leave_out_censored_seeds():
    seeds = pd.DataFrame({"mi.weight": [0.0, 0.1, 0.2, 0.3, 0.4],
                          "t_func": [np.nan, 300.0, 200.0, 100.0, np.nan]})
    r = rank_correlations(seeds, ["mi.weight"], ["t_func"]).iloc[0]
    assert r["n"] == 3 and r["rho"] == pytest.approx(-1.0)


def test_seed_onsets_recovers_known_lags(noisy_sigmoid):
    rng = np.random.default_rng(9)
    rows, known = [], {}
    for trial, (t_f, lag) in {"a": (100.0, 150.0), "b": (300.0, -50.0), "c": (None, None)}.items():
        for seed in range(2):
            if t_f is None:
                qf = rng.normal(0, 0.005, EPOCHS.size)
                qs = rng.normal(0, 0.005, EPOCHS.size)
            else:
                qf = noisy_sigmoid(EPOCHS, t_f, 0.3, noise=0.005, rng=rng)
                qs = noisy_sigmoid(EPOCHS, t_f + lag, 0.1, noise=0.005, rng=rng)
            known[(trial, seed)] = math.nan if lag is None else lag
            rows.append(pd.DataFrame({"trial_id": trial, "seed": seed, "epoch": EPOCHS,
                                      "q_func": qf, "q_struct": qs}))
    curves = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=1)  # any row order
    out = seed_onsets(curves, {"a": -0.01, "b": -0.01, "c": -0.01}).set_index(["trial_id", "seed"])
    for key, lag in known.items():
        assert out.loc[key, "lag"] == pytest.approx(lag, nan_ok=True)
    assert not out.loc[("c", 0), "func_emerged"] and out.loc[("a", 1), "struct_emerged"]


def test_seed_onsets_requires_contract_columns():
    match = r"seed_onsets\(\): curves must have columns .* \['q_struct'\]"
    with pytest.raises(ValueError, match=match):
        seed_onsets(pd.DataFrame(columns=["trial_id", "seed", "epoch", "q_func"]))
