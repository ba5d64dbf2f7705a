"""analysis.claims against synthetic seed tables with a known answer."""

import numpy as np
import pandas as pd
import pytest

from analysis.claims import calibrate_paired, claims_table, tost_paired, wilcoxon_p


def _seeds(rng, cells):
    """A per-seed table: for each (K, λ, shift) the q_func_z of 8 seeds = base + shift."""
    rows = []
    base = {k: rng.normal(0, 1, 8) for k in {c[0] for c in cells}}
    for k, lam, shift, acc in cells:
        for i in range(8):
            rows.append(
                {
                    "partition.groups": k,
                    "mi.weight": lam,
                    "seed_value": 1001 + i,
                    "final.q_func_z": base[k][i] + shift(i),
                    "final.q_struct_z": base[k][i] + 0.0,
                    "final.accuracy": acc(i),
                    "final.mi_heldout": 1.0 - (lam > 0),
                    "final.mi_heldout_null": 0.0,
                }
            )
    df = pd.DataFrame(rows)
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # order must not matter


def test_paired_effect_found_where_it_is_and_not_where_it_is_not():
    rng = np.random.default_rng(3)
    none = lambda i: 0.0  # noqa: E731
    s = _seeds(
        rng,
        [
            (2, 0.0, none, lambda i: 0.95),
            (2, 0.1, lambda i: 10.0 + 0.1 * i, lambda i: 0.95),
            (3, 0.0, none, lambda i: 0.95),
            (3, 0.1, lambda i: (-1) ** i * 0.3, lambda i: 0.5),
        ],
    )
    t = claims_table(s, ["mi.weight", "partition.groups"]).set_index(["partition.groups", "claim"])
    f2 = t.loc[(2, "functional")]
    assert f2.n == 8 and f2.effect == pytest.approx(10.35)  # median of 10.0 .. 10.7
    assert f2.p == pytest.approx(2 / 256) and f2.verdict == "holds"
    assert t.loc[(3, "functional")].verdict == "inconclusive"
    assert t.loc[(2, "structural")].verdict == "inconclusive"  # all differences exactly 0
    assert t.loc[(2, "accuracy")].verdict == "holds" and t.loc[(2, "accuracy")].n_success == 8
    assert t.loc[(3, "accuracy")].verdict == "breaks" and t.loc[(3, "accuracy")].n_success == 0
    assert t.loc[(2, "mi")].verdict == "holds" and t.loc[(2, "mi")].effect == -1.0
    # BH across the two treated cells of one claim
    assert t.loc[(2, "functional")].p_bh >= t.loc[(2, "functional")].p


def test_weak_when_significant_but_not_clear_against_the_null():
    rng = np.random.default_rng(4)
    s = _seeds(
        rng,
        [
            (2, 0.0, lambda i: -5.0, lambda i: 0.95),
            (2, 0.3, lambda i: -4.0 + 0.01 * i, lambda i: 0.95),
        ],
    )
    row = claims_table(s, ["mi.weight", "partition.groups"]).query("claim == 'functional'")
    assert row.verdict.item() == "weak"


def test_no_control_no_claims():
    s = pd.DataFrame({"mi.weight": [0.1, 0.3], "seed_value": [1, 1], "final.q_func_z": [1, 2]})
    assert claims_table(s, ["mi.weight"]).empty


def test_wilcoxon_all_zero_differences_carry_no_evidence():
    assert wilcoxon_p(np.zeros(8)) == 1.0
    assert wilcoxon_p(np.arange(1, 9.0)) == pytest.approx(2 / 256)


def test_paired_test_is_calibrated_on_no_effect_data():
    cal = calibrate_paired(8, reps=1000, rng=np.random.default_rng(0))
    assert set(cal.world) == {"normal", "cauchy", "ties"}
    assert (cal.rejected <= 0.05 + 0.02).all()  # exact test: at most α (+ Monte Carlo slack)


def test_default_calibration_is_reproducible():
    a, b = calibrate_paired(6, reps=50), calibrate_paired(6, reps=50)
    pd.testing.assert_frame_equal(a, b)
    assert (a["n"] == 6).all() and (a["reps"] == 50).all()


def _accuracy_cell(diffs, control=0.95):
    """One cell: 8 λ = 0 seeds at `control` accuracy and λ = 0.3 seeds at control + diffs."""
    rows = []
    for i, d in enumerate(diffs):
        for lam, acc in ((0.0, control), (0.3, control + d)):
            rows.append({"mi.weight": lam, "seed_value": 100 + i, "final.accuracy": acc})
    return pd.DataFrame(rows)


def _accuracy_row(diffs, **kw):
    t = claims_table(_accuracy_cell(diffs, **kw), ["mi.weight"])
    return t[t["claim"] == "accuracy"].iloc[0]


def test_tost_matches_statsmodels_paired_tost():
    from statsmodels.stats.weightstats import ttost_paired

    rng = np.random.default_rng(11)
    for loc, sd in ((0.0, 0.01), (-0.01, 0.02), (0.015, 0.005), (-0.03, 0.01)):
        c = rng.uniform(0.9, 1.0, 8)
        t = c + rng.normal(loc, sd, 8)
        ref = ttost_paired(t, c, -0.02, 0.02)[0]
        assert tost_paired(t - c, 0.02)["p"] == pytest.approx(ref, rel=1e-9)


def test_accuracy_holds_only_with_equivalence_and_reports_the_worst_seed():
    # The cell: mean paired change -0.021, two seeds lose 0.084 and 0.097. No drop is
    # significant, but equivalence within ±0.02 is not shown either: inconclusive, never holds.
    diffs = [0.012, 0.0, -0.003, 0.004, -0.084, -0.097, 0.0, 0.0]
    r = _accuracy_row(diffs)
    assert r["mean_change"] == pytest.approx(np.mean(diffs))
    assert r["worst_change"] == pytest.approx(-0.097)
    assert r["ci_lo"] < -0.02 < r["ci_hi"]  # the 90 % interval leaves the margin
    assert r["p_bh"] > 0.05 and r["verdict"] == "inconclusive"
    assert r["test"].startswith("TOST") and r["margin"] == 0.02
    # small changes on both sides: equivalent within ±0.02, all succeed -> holds
    near = _accuracy_row([0.004, -0.003, 0.002, -0.001, 0.003, -0.004, 0.001, 0.0])
    assert near["p"] < 0.05 and near["verdict"] == "holds"
    assert near["worst_change"] == pytest.approx(-0.004)
    # every seed drops by about 0.08: the drop beyond the margin is significant -> breaks
    drop = _accuracy_row([-0.08 + 0.002 * i for i in range(8)], control=0.99)
    assert drop["p_drop_bh"] < 0.05 and drop["verdict"] == "breaks"


def test_claims_table_has_no_sentinels():
    s = _accuracy_cell([0.0] * 8).assign(**{"final.q_func_z": 1.0})
    t = claims_table(s, ["mi.weight"]).set_index("claim")
    assert t.loc["accuracy", "n_success"] == 8
    assert pd.isna(t.loc["functional", "n_success"])  # not applicable: missing, never -1
    assert (t["n_success"].dropna() >= 0).all()


def test_gru_block_claims_read_each_block_with_the_structural_rule():
    """Only the update gate's block is made modular: it holds, the others do not."""
    from analysis.claims import GRU_BLOCK_CLAIMS

    rows = []
    for lam in (0.0, 0.01):
        for i in range(8):
            row = {"mi.weight": lam, "seed_value": 625 + i, "final.r2": 0.97}
            for c in GRU_BLOCK_CLAIMS:
                row[c.column] = 0.1 * i  # the same in both arms: no effect
            row["final.q_update_z"] = 0.1 * i + (5.0 + 0.1 * i if lam else 0.0)
            row["final.q_reset_z"] = 0.1 * i + (1.0 + 0.1 * i if lam else 0.0)  # below z = 3
            row["final.dw_block_z"] = 0.1 * i - (4.0 + 0.1 * i if lam else 0.0)  # the wrong way
            rows.append(row)
    t = claims_table(
        pd.DataFrame(rows), ["mi.weight"], task_metric="r2", claims=GRU_BLOCK_CLAIMS
    ).set_index("claim")
    assert list(t.index) == [c.name for c in GRU_BLOCK_CLAIMS]  # no accuracy, no MI rows
    assert t.loc["structural_update"].verdict == "holds"
    assert t.loc["structural_update"].p_bh == pytest.approx(2 / 256)
    assert t.loc["structural_reset"].verdict == "weak"
    assert t.loc["change"].verdict == "breaks"
    assert t.loc["structural_gru_sum"].verdict == "inconclusive"  # every difference 0
    # missing columns are not measured, not failures
    no_reset = pd.DataFrame(rows).drop(columns=["final.dw_block_reset_z"])
    t2 = claims_table(no_reset, ["mi.weight"], task_metric="r2", claims=GRU_BLOCK_CLAIMS)
    t2 = t2.set_index("claim")
    assert t2.loc["change_reset"].verdict == "not measured"
