"""A study's timing verdicts per cell and ordering, and their calibration, on synthetic studies
whose order is known by construction (curves -> seeds.parquet's onsets -> verdicts)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.timing import (
    NO_SEEDS,
    VERDICT_COLUMNS,
    bh_adjust,
    study_calibration,
    study_verdicts,
    study_verdicts_wide,
)
from study.contract.outcomes import seed_table
from study.contract.rise import seed_onset_columns

EPOCHS = np.arange(0.0, 1001.0, 25.0)  # 41 evaluations, every 25 epochs
BY = ["mi.weight", "partition.groups"]
N_SEEDS = 12
# lag of each structure measure behind function, in evaluations (> 0: function first), per
# treated cell; λ = 0 cells never rise
LAGS = {
    (0.1, 2): {"q_struct_z": 0.0, "dw_block_z": 0.0},  # identical courses, amplitudes 18 : 7
    (0.1, 3): {"q_struct_z": 0.0, "dw_block_z": 0.0},
    (0.3, 2): {"q_struct_z": 4.0, "dw_block_z": 4.0},  # structure follows in both measures
    (0.3, 3): {"q_struct_z": 4.0, "dw_block_z": -4.0},  # the change leads, the state follows
}
AMPLITUDE = {"q_func_z": 18.0, "q_struct_z": 7.0, "dw_block_z": 10.0}
NOISE = {"q_func_z": 1.0, "q_struct_z": 0.3, "dw_block_z": 1.0}


def _rise(t: np.ndarray, m: float, amp: float) -> np.ndarray:
    return amp / (1.0 + np.exp(-(t - m) / 50.0))  # logistic scale 2 evaluations


def synthetic_study(
    seed: int = 0, *, metrics: tuple[str, ...] = ("q_func_z", "q_struct_z", "dw_block_z")
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves, seeds) of a λ × K grid of N_SEEDS seeds per cell; seeds from seed_table."""
    rng = np.random.default_rng(seed)
    curves, seeds = [], []
    for i, (lam, k) in enumerate([(lam, k) for lam in (0.0, 0.1, 0.3) for k in (2, 3)]):
        rows = []
        for s in range(N_SEEDS):
            m = rng.uniform(300.0, 550.0)
            row = {"seed": s, "epoch": EPOCHS, "accuracy": 0.95}
            for metric in metrics:
                noise = NOISE[metric] * rng.standard_normal(EPOCHS.size)
                if lam == 0:
                    row[metric] = noise
                    continue
                lag = 0.0 if metric == "q_func_z" else LAGS[(lam, k)][metric]
                jitter = 0.0 if metric == "q_func_z" else 0.3 * rng.standard_normal()
                row[metric] = _rise(EPOCHS, m + 25.0 * (lag + jitter), AMPLITUDE[metric]) + noise
            rows.append(pd.DataFrame(row))
        c = pd.concat(rows, ignore_index=True)
        table = seed_table(c, task="working_memory")
        table.insert(0, "trial_id", f"trial_{i:05d}")
        table["mi.weight"], table["partition.groups"] = lam, k
        c.insert(0, "trial_id", f"trial_{i:05d}")
        curves.append(c)
        seeds.append(table)
    return pd.concat(curves, ignore_index=True), pd.concat(seeds, ignore_index=True)


@pytest.fixture(scope="module")
def study() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_study()


def _by_cell(table: pd.DataFrame) -> dict[tuple[float, int, str], dict]:
    return {
        (r["mi.weight"], r["partition.groups"], r["struct"]): r for r in table.to_dict("records")
    }


def test_verdicts_per_cell_and_ordering_match_the_construction(study):
    _, seeds = study
    v = study_verdicts(seeds, BY)
    assert list(v.columns) == [*BY, *VERDICT_COLUMNS]
    assert len(v) == 12  # 6 cells × 2 orderings
    got = _by_cell(v)
    expected = {
        (0.0, 2): ("neither emerged", "neither emerged"),
        (0.0, 3): ("neither emerged", "neither emerged"),
        (0.1, 2): ("co-emergent", "co-emergent"),
        (0.1, 3): ("co-emergent", "co-emergent"),
        (0.3, 2): ("function first", "function first"),
        (0.3, 3): ("function first", "structure first"),  # Q(|W|) follows, ΔW leads
    }
    for (lam, k), (state, change) in expected.items():
        assert got[(lam, k, "q_struct_z")]["verdict"] == state, (lam, k)
        assert got[(lam, k, "dw_block_z")]["verdict"] == change, (lam, k)
        for struct in ("q_struct_z", "dw_block_z"):
            r = got[(lam, k, struct)]
            assert r["n"] == N_SEEDS and r["control"] == (lam == 0.0)
            assert r["family"] == (1 if lam == 0.0 else 4)
            assert isinstance(r["why"], str) and r["why"]
    assert got[(0.3, 2, "q_struct_z")]["ordering"] == "function vs Q(|W|)"
    assert got[(0.3, 2, "dw_block_z")]["ordering"] == "function vs ΔW"
    # the known lead of 4 evaluations is measured, and a cell of 12 could see 2
    r = got[(0.3, 2, "q_struct_z")]
    assert r["median_lag_evals"] == pytest.approx(4.0, abs=0.5)
    assert r["detectable_lead_evals"] < 2.0 and r["power"] > 0.8
    assert r["ci_low"] > 0.7 and r["n_func_first"] == N_SEEDS
    assert got[(0.3, 3, "dw_block_z")]["median_lag_evals"] == pytest.approx(-4.0, abs=0.5)
    assert got[(0.0, 2, "q_struct_z")]["why"].startswith("control (λ = 0)")


def test_amplitude_does_not_order_identical_courses_where_the_threshold_did(study):
    _, seeds = study
    v = _by_cell(study_verdicts(seeds, BY))
    for k in (2, 3):
        assert v[(0.1, k, "q_struct_z")]["verdict"] == "co-emergent"
        # the old threshold onsets (z >= 3) read the larger curve (18 against 7) as first
        old = seeds[(seeds["mi.weight"] == 0.1) & (seeds["partition.groups"] == k)]["first"]
        assert (old == "function").sum() >= 10


def test_bh_adjusts_within_the_treated_cells_of_one_ordering(study):
    _, seeds = study
    v = study_verdicts(seeds, BY)
    for _, part in v.groupby("struct"):
        treated = part[~part["control"]]
        assert np.allclose(treated["p_order_bh"], bh_adjust(treated["p_order"].to_numpy()))
        assert np.allclose(treated["p_tost_bh"], bh_adjust(treated["p_tost"].to_numpy()))
        controls = part[part["control"]]
        assert np.allclose(controls["p_order_bh"], controls["p_order"])


def test_onsets_come_from_the_curves_when_the_seeds_table_predates_them(study):
    curves, seeds = study
    old = seeds.drop(columns=list(seed_onset_columns()))
    with pytest.raises(ValueError, match="no timing onsets"):
        study_verdicts(old, BY)
    again = study_verdicts(old, BY, curves=curves)
    ref = study_verdicts(seeds, BY)
    cols = ["verdict", "n", "p_order", "p_tost", "median_lag_evals"]
    pd.testing.assert_frame_equal(again[cols], ref[cols])


def test_failed_networks_are_left_out_and_an_empty_cell_leaves_the_family(study):
    _, seeds = study
    s = seeds.copy()
    cell = (s["mi.weight"] == 0.3) & (s["partition.groups"] == 2)
    s.loc[cell & (s["seed"] < 5), "success"] = False
    s.loc[(s["mi.weight"] == 0.1) & (s["partition.groups"] == 3), "success"] = False
    got = _by_cell(study_verdicts(s, BY))
    r = got[(0.3, 2, "q_struct_z")]
    assert r["n"] == N_SEEDS - 5 and r["n_failed"] == 5
    empty = got[(0.1, 3, "q_struct_z")]
    assert empty["verdict"] == NO_SEEDS and empty["n"] == 0 and "12 failed" in empty["why"]
    assert r["family"] == 3  # the empty cell does not dilute the family


def test_an_ordering_the_study_did_not_measure_is_left_out():
    _, seeds = synthetic_study(1, metrics=("q_func_z", "q_struct_z"))
    assert seeds["onset.dw_block_z.status"].isna().all()
    assert seeds["onset.dw_block_z"].isna().all()
    v = study_verdicts(seeds, BY)
    assert set(v["struct"]) == {"q_struct_z"} and len(v) == 6


def test_no_seeds_gives_an_empty_table_with_the_columns():
    v = study_verdicts(pd.DataFrame(columns=["seed", *BY]), BY)
    assert len(v) == 0 and list(v.columns) == [*BY, *VERDICT_COLUMNS]


def test_calibration_at_the_study_design(study):
    curves, seeds = study
    cal = study_calibration(curves, seeds, BY, n_sim=12, suite=False, seed=3)
    assert set(cal["struct"]) == {"q_struct_z", "dw_block_z"}
    assert len(cal) == 2 * 7  # no lead and leads ±1, ±2, ±4, per ordering
    assert (cal["n_seeds"] == N_SEEDS).all() and (cal["family"] == 4).all()
    assert (cal["n_cells"] == 12).all()
    rows = {(r["struct"], r["scenario"]): r for r in cal.to_dict("records")}
    for struct in ("q_struct_z", "dw_block_z"):
        assert rows[(struct, "study: no lead")]["false_ordering"] <= 0.25
        assert math.isnan(rows[(struct, "study: no lead")]["power"])
        assert rows[(struct, "study: function leads 4")]["power"] >= 0.9
        assert rows[(struct, "study: structure leads 4")]["power"] >= 0.9
    # the models are measured from the treated seeds' curves (amplitudes 18 and 7)
    model = rows[("q_struct_z", "study: no lead")]
    assert "measured on 48 seeds" in model["func_model"]
    assert model["func_model"].startswith("amplitude 18")
    assert model["struct_model"].startswith("amplitude 7")


@pytest.mark.slow  # 22 scenarios of 4 cells of 12 seeds: ~10 s
def test_calibration_runs_the_shipped_suite_around_the_measured_models(study):
    curves, seeds = study
    cal = study_calibration(
        curves, seeds, BY, structures=[("q_struct_z", 1, "Q(|W|)")], n_sim=4, seed=1
    )
    names = list(cal["scenario"])
    assert names[:7] == [
        "study: no lead",
        "study: function leads 1",
        "study: structure leads 1",
        "study: function leads 2",
        "study: structure leads 2",
        "study: function leads 4",
        "study: structure leads 4",
    ]
    assert {"amplitude 1:4", "amplitude 4:1", "noise white:AR", "width 2:8"} <= set(names)
    assert len(names) == 7 + 15


def test_the_wide_table_gives_one_verdict_per_cell_for_the_matrix(study):
    from analysis.matrix import matrix_info

    _, seeds = study
    long = study_verdicts(seeds, BY)
    wide = study_verdicts_wide(seeds, BY)
    assert len(wide) == 6 and not wide.duplicated(BY).any()
    assert list(wide.columns[:6]) == [*BY, "ordering", "verdict", "n", "why"]
    assert set(wide["ordering"]) == {"function vs Q(|W|)"}
    assert "half-rise onsets" in wide.attrs["method"]
    for r in wide.to_dict("records"):
        cell = long[
            (long["mi.weight"] == r["mi.weight"])
            & (long["partition.groups"] == r["partition.groups"])
        ]
        by_struct = cell.set_index("struct")
        assert r["verdict"] == by_struct.loc["q_struct_z", "verdict"]
        assert r["verdict.q_struct_z"] == r["verdict"]
        assert r["verdict.dw_block_z"] == by_struct.loc["dw_block_z", "verdict"]
        assert r["why.dw_block_z"] == by_struct.loc["dw_block_z", "why"]
    info = matrix_info(pd.DataFrame(), wide, keys=BY)
    assert len(info.cells) == 6 and "function first" in info.timing
