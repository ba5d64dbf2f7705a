"""The findings of a report (analysis.report.findings): the verdicts per cell, the claims, the
counts and the paragraph, on the fixture study and on synthetic studies with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_html import findings_text as _findings

from analysis.report import findings
from analysis.runs import load_study


def test_report_findings_give_a_verdict_per_cell_never_pooled(grid_report):
    # The fixture's λ > 0 seeds all have q_func_z rise 5-7 evaluations before q_struct_z.
    # A verdict is per cell of λ × K (the cells of a grid share seed values, so pooling K would
    # count a seed twice): λ = 0.1, K = 2: 4 seeds, all function first by their half-rise
    # onsets: exact sign-flip p = 2 / 2^4 = 0.125; K = 3: 3 seeds, p = 0.25. λ = 0.3 has no
    # seed to time: K = 2 failed the task (accuracy 0.80), K = 3 diverged. BH over the 2 timed
    # treated cells: 0.25, 0.25. Neither cell can reach α / 2 at all (its smallest possible p
    # is 0.125 or 0.25), so both read "inconclusive (power)", although every seed is
    # function-first: 3-4 seeds cannot show an order, and the findings say so.
    text = _findings(grid_report.path.read_text())
    v = grid_report.findings.verdicts.set_index(["mi.weight", "partition.groups"])
    assert v.loc[(0.1, 2), ["n", "n_func_first", "n_struct_first", "n_undecided"]].tolist() == [
        4,
        4,
        0,
        0,
    ]
    assert v.loc[(0.1, 2), "p_order"] == pytest.approx(2 / 2**4)
    assert v.loc[(0.1, 2), "p_order_bh"] == pytest.approx(0.25)
    assert v.loc[(0.1, 3), "p_order_bh"] == pytest.approx(0.25)
    # the known lags 125-175 epochs, median 150: 6 evaluations of 25 epochs
    assert v.loc[(0.1, 2), "median_lag_evals"] == pytest.approx(6.0, abs=0.5)
    assert v.loc[(0.1, 2), "power"] == 0.0
    assert v.loc[(0.1, 2), "why"].endswith(
        "4 seeds cannot reach p <= 0.025 (α/2): the smallest possible p is 0.125"
    )
    assert set(v.loc[0.1, "verdict"]) == {"inconclusive (power)"}
    assert set(v.loc[0.0, "verdict"]) == {"neither emerged"}  # the controls
    assert set(v.loc[0.3, "verdict"]) == {"no seeds to time"}
    assert v.loc[(0.0, 2), "n_undecided"] == 4 and v.loc[(0.0, 3), "n_undecided"] == 3
    assert "Grid: 6 cells of mi.weight × partition.groups." in text
    assert (
        "Timing, function vs Q(|W|): inconclusive (power) in 2 of 4 cells; no seeds to time in "
        "λ=0.3 · K=2 and λ=0.3 · K=3." in text
    )
    assert (
        "Timing, function vs Q(|W|) at λ = 0 (controls: any order there is a false one): "
        "neither emerged in 2 of 2 cells." in text
    )
    assert "function first in" not in text  # no cell claims an order
    assert "left out: 4 seeds that failed the task and 3 of trials cut short." in text
    assert "'inconclusive (power)': the cell's seeds could not show a lead of 2" in text
    assert "Controls: detectable (the z-score significance gate) in 0/7 (function)" in text
    # the calibration at this design: 3 seeds a cell (the median treated cell, rounded down),
    # BH over 2 cells: no false order, and no power at all for a lead of 2 evaluations
    assert "Calibration at this design (cells of 3 seeds, BH over 2" in text
    assert "no lead read as an order in 0.0%, a 2-evaluation lead found in 0%" in text
    cal = grid_report.findings.calibration.set_index("lead_evals")
    assert cal.loc[0.0, "false_ordering"] <= 0.05 and (cal["n_seeds"] == 3).all()
    assert cal.loc[2.0, "power"] == 0.0 and cal.loc[-2.0, "power"] == 0.0


def test_report_findings_state_failures_and_counts(grid_report):
    text = _findings(grid_report.path.read_text())
    assert grid_report.findings.accuracy_drop_at == 0.3
    assert "1 trial(s) failed and 1 diverged" in text
    assert "7 trials (5 finished, 1 diverged, 1 failed), 21 analysed seeds" in text


def test_report_tests_the_claims_per_cell_against_the_cells_controls(grid_report):
    claims = grid_report.findings.claims
    assert len(claims) and set(claims["claim"]) == {"accuracy", "functional", "structural", "mi"}
    assert (pd.to_numeric(claims["mi.weight"]) > 0).all()  # controls are the reference, no row
    assert "partition.groups" in claims  # per cell of K, never pooled over it
    assert (claims["n"] <= 4).all()  # at most the seeds of one trial are paired
    assert (grid_report.out_dir / "claims_by_cell.csv").exists()
    acc = claims[claims["claim"] == "accuracy"].set_index(["mi.weight", "partition.groups"])
    # λ = 0.3, K = 2: accuracy 0.80 against 0.95, no treated seed succeeds
    assert acc.loc[(0.3, 2), "verdict"] == "breaks" and acc.loc[(0.3, 2), "n_success"] == 0
    assert acc.loc[(0.3, 2), "worst_change"] < -0.1
    text = _findings(grid_report.path.read_text())
    assert "Claims: each cell against its own λ = 0 seeds, paired by seed" in text
    assert "Accuracy kept: " in text and "breaks in λ=0.3 · K=2" in text
    cal = grid_report.findings.claims_calibration
    assert cal is not None and (cal["rejected"] <= 0.07).all()


def test_findings_are_reproducible_with_same_generator(fixture_study, grid_report):
    study = load_study(fixture_study.name, fixture_study.tracking_uri)
    again = findings(study, rng=np.random.default_rng(0))
    assert again.text == grid_report.findings.text


def _synthetic_study(firsts_treated: list[str], with_z: bool = True, with_dw: bool = False):
    """A StudyData of λ = 0 controls (pure-noise z) and λ = 0.1 seeds with the given outcomes
    (`with_dw`: a ΔW z-score, dw_block_z, that steps up with q_func_z)."""
    from analysis.runs import StudyData

    epochs = np.arange(0, 501, 25, dtype=float)
    rng = np.random.default_rng(5)
    curves, seeds = [], []
    for trial, _lam, firsts in (("c", 0.0, ["neither"] * 6), ("t", 0.1, firsts_treated)):
        for s, f in enumerate(firsts):
            zf = rng.normal(0, 0.8, epochs.size)
            zs = rng.normal(0, 0.3, epochs.size)
            t_f = {"function": 100.0, "structure": 300.0}.get(f, np.nan)
            t_s = {"function": 300.0, "structure": 100.0}.get(f, np.nan)
            if np.isfinite(t_f):
                zf += 10.0 * (epochs >= t_f)
                zs += 10.0 * (epochs >= t_s)
            row = {
                "trial_id": trial,
                "run_id": trial,
                "seed": s,
                "epoch": epochs,
                "q_func": 0.0,
                "q_struct": 0.0,
                "accuracy": 0.95,
            }
            if with_z:
                row |= {"q_func_z": zf, "q_struct_z": zs}
            if with_dw:
                row["dw_block_z"] = rng.normal(0, 0.3, epochs.size) + (
                    10.0 * (epochs >= t_f) if np.isfinite(t_f) else 0.0
                )
            curves.append(pd.DataFrame(row))
    curves = pd.concat(curves, ignore_index=True)
    from study.contract.outcomes import seed_table

    for trial, lam in (("c", 0.0), ("t", 0.1)):
        tab = seed_table(
            curves[curves["trial_id"] == trial].drop(columns=["trial_id", "run_id"]),
            task="working_memory",
        )
        seeds.append(
            tab.assign(
                trial_id=trial,
                run_id=trial,
                status="finished",
                running=False,
                **{"mi.weight": lam, "train.eval_every": 25},
            )
        )
    trials = pd.DataFrame(
        {
            "trial_id": ["c", "t"],
            "run_id": ["c", "t"],
            "status": ["finished"] * 2,
            "mi.weight": [0.0, 0.1],
        }
    )
    return StudyData(
        name="synthetic",
        tracking_uri="",
        experiment_id="0",
        study_run_id=None,
        status="finished",
        tags={},
        task="working_memory",
        swept=["mi.weight"],
        trials=trials,
        seeds=pd.concat(seeds, ignore_index=True),
        curves=curves,
        dropped=pd.DataFrame(),
    )


TIMING = "Timing, function vs Q(|W|)"


def test_findings_say_inconclusive_when_the_data_are():
    # 3 seeds function first by 8 evaluations, 3 structure first by 8: no order (p = 0.44),
    # and no co-emergence either (TOST within ±2 evaluations fails on lags of ±8). With a lag
    # spread of ~8 evaluations, 6 seeds detect only a lead of ~20 evaluations at 80 % power,
    # far above the 2 a cell should see: the documented label is "inconclusive (power)"
    f = findings(_synthetic_study(["function", "structure"] * 3), rng=np.random.default_rng(0))
    v = f.verdicts.set_index("mi.weight")
    assert len(v) == 2  # one row per λ: controls never pooled with treated seeds
    assert v.loc[0.1, ["n_func_first", "n_struct_first"]].tolist() == [3, 3]
    assert v.loc[0.1, "p_order_bh"] > 0.05 and v.loc[0.1, "p_tost_bh"] > 0.05
    assert v.loc[0.1, "detectable_lead_evals"] > 2.0
    assert v.loc[0.1, "verdict"] == "inconclusive (power)"
    assert v.loc[0.0, "verdict"] == "neither emerged"
    assert f"{TIMING}: inconclusive (power) in 1 of 1 cell." in f.lines
    assert f.calibration is not None and set(f.calibration["n_seeds"]) == {6}


def test_findings_state_a_clear_order_and_not_inconclusive():
    # 6 of 6 seeds function first: exact sign-flip p = 2 / 2^6 = 0.031 <= 0.05 (one cell)
    f = findings(_synthetic_study(["function"] * 6), rng=np.random.default_rng(0))
    v = f.verdicts.set_index("mi.weight")
    assert v.loc[0.1, "verdict"] == "function first"
    assert v.loc[0.1, "p_order_bh"] == pytest.approx(2 / 2**6)
    assert f"{TIMING}: function first in 1 of 1 cell." in f.lines
    assert not [line for line in f.lines if "inconclusive" in line]


def test_findings_give_both_orderings_where_delta_w_is_measured():
    # q_struct_z steps up 8 evaluations after q_func_z, dw_block_z with it: function first
    # against Q(|W|), co-emergent against ΔW (6 lags of 0 within ±2 evaluations: the exact
    # TOST p of 6 seeds is 1/2^6 = 0.016)
    f = findings(_synthetic_study(["function"] * 6, with_dw=True), rng=np.random.default_rng(0))
    v = f.verdicts.set_index("mi.weight")
    assert v.loc[0.1, "verdict.q_struct_z"] == "function first"
    assert v.loc[0.1, "verdict.dw_block_z"] == "co-emergent"
    assert v.loc[0.1, "median_lag_evals.dw_block_z"] == pytest.approx(0.0, abs=0.5)
    assert f"{TIMING}: function first in 1 of 1 cell." in f.lines
    assert "Timing, function vs ΔW: co-emergent in 1 of 1 cell." in f.lines
    assert [t for t, _ in f.matrix.timing_rows] == [TIMING, "Timing, function vs ΔW"]
    assert set(f.calibration["ordering"]) == {"function vs Q(|W|)", "function vs ΔW"}
    # the report's timing table: one row per cell and ordering
    from analysis.report.sections import timing_by_ordering

    long = timing_by_ordering(f.verdicts, ["mi.weight"]).set_index(["mi.weight", "ordering"])
    assert long.loc[(0.1, "function vs ΔW"), ["verdict", "n", "n_undecided"]].tolist() == [
        "co-emergent",
        6,
        0,
    ]
    assert long.loc[(0.1, "function vs Q(|W|)"), "n_func_first"] == 6
    assert long.loc[(0.0, "function vs ΔW"), "verdict"] == "neither emerged"


def test_findings_without_z_scores_say_not_measured():
    f = findings(_synthetic_study(["function"] * 6, with_z=False), rng=np.random.default_rng(0))
    assert not f.measured and f.lines[-1].startswith("Timing: not measured")
    assert "function first" not in f.text


def test_the_calibration_line_says_when_an_ordering_is_not_calibrated():
    from analysis.report.findings import _calibration_line

    def rows(ordering, none):
        return [
            {
                "ordering": ordering,
                "n_seeds": 16,
                "family": 1,
                "n_cells": 40,
                "lead_evals": lead,
                "false_ordering": none if lead == 0 else 0.0,
                "power": 1.0 if lead else float("nan"),
            }
            for lead in (0.0, 2.0, -2.0)
        ]

    # 9 of 40 no-lead cells ordered (22.5 %): above α = 0.05 + 2.5 SE (0.136); 2 of 40 is not
    cal = pd.DataFrame(rows("function vs Q(|W|)", 0.225) + rows("function vs ΔW", 0.05))
    line = _calibration_line(cal)
    assert "no lead read as an order in 22.5%" in line
    assert "Not calibrated at this design: function vs Q(|W|) read an order" in line
    assert "function vs ΔW read" not in line and "not evidence either way" in line
    fine = _calibration_line(pd.DataFrame(rows("function vs ΔW", 0.05)))
    assert "Not calibrated" not in fine
