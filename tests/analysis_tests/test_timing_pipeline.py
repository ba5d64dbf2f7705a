"""Cell verdicts and the bring-your-own-curves pipeline on tables with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.timing.pipeline import timing_from_curves
from analysis.timing.simulate import CurveParams, simulate_curves
from analysis.timing.verdicts import cell_statistics, label_cells
from study.contract.rise import TimingOnset

EPOCHS = np.arange(0.0, 1001.0, 25.0)
FUNC = CurveParams(18.0, 2.0, 1.0, 0.0)
STRUCT = CurveParams(7.0, 2.0, 0.3, 0.95)


def _point(epoch: float) -> TimingOnset:
    return TimingOnset(
        epoch, epoch, epoch, "onset", math.nan, math.nan, math.nan, True, epoch, 25.0, 10.0, 0.0
    )


def _never() -> TimingOnset:
    return TimingOnset(
        math.nan,
        0.0,
        math.inf,
        "not detected",
        math.nan,
        math.nan,
        math.nan,
        False,
        math.nan,
        math.nan,
        math.nan,
        math.nan,
    )


# ---- verdicts ----------------------------------------------------------------------------------


def test_one_leading_cell_among_null_cells_cannot_be_called_at_eight_seeds():
    """BH over 12 cells: the lone cell's exact p = 2/256 exceeds α/12, so it reads
    "inconclusive (power)" and says why; the same cell judged alone reads function first."""
    rng = np.random.default_rng(0)
    lead = [
        cell_statistics(
            [_point(100.0)] * 8, [_point(100.0 + 100.0 + 5 * i) for i in range(8)], step=25.0
        )
    ]
    null = [
        cell_statistics(
            [_point(100.0)] * 8, [_point(100.0 + d) for d in rng.normal(0.0, 40.0, 8)], step=25.0
        )
        for _ in range(11)
    ]
    cells = label_cells(lead + null, step=25.0)
    assert cells[0]["p_order"] == pytest.approx(2 / 256)
    assert cells[0]["verdict"] == "inconclusive (power)"
    assert "cannot reach" in cells[0]["power_note"] and cells[0]["family"] == 12
    alone = label_cells(lead, step=25.0)[0]
    assert alone["verdict"] == "function first"
    assert alone["ci_function_first"][0] > 0.6 and alone["p_function_first"] == 1.0


def test_structure_that_mostly_never_emerged_is_its_own_label():
    func = [_point(100.0)] * 8
    struct = [_point(300.0)] * 3 + [_never()] * 5
    c = label_cells([cell_statistics(func, struct, step=25.0)], step=25.0)[0]
    assert c["verdict"] == "structure never emerged"
    assert c["n_struct_not_detected"] == 5 and c["n_func_first"] == 3
    both = label_cells([cell_statistics([_never()] * 8, [_never()] * 8, step=25.0)], step=25.0)[0]
    assert both["verdict"] == "neither emerged"


def test_close_lags_read_co_emergent():
    rng = np.random.default_rng(1)
    func = [_point(200.0)] * 10
    struct = [_point(200.0 + d) for d in rng.normal(0.0, 5.0, 10)]  # within a fifth of a step
    c = label_cells([cell_statistics(func, struct, step=25.0)], step=25.0)[0]
    assert c["verdict"] == "co-emergent" and c["p_tost"] <= 0.05


# ---- the pipeline on a curves table ------------------------------------------------------------


def _table(
    leads: dict[str, float], n: int = 8, seed: int = 0, schedule=EPOCHS, struct_sign: float = 1.0
) -> pd.DataFrame:
    """Cells named by `leads` (regular evaluations, > 0: function first), n seeds each."""
    rng = np.random.default_rng(seed)
    frames = []
    for cell, lead in leads.items():
        m = rng.uniform(250.0, 500.0, n)
        xf = simulate_curves(rng, schedule, FUNC, m)
        xs = (
            simulate_curves(rng, schedule, STRUCT, m + lead * 25.0)
            if math.isfinite(lead)
            else rng.normal(0.0, 0.3, (n, schedule.size))
        )
        for s in range(n):
            frames.append(
                pd.DataFrame(
                    {
                        "seed": s,
                        "epoch": schedule,
                        "q_func_z": xf[s],
                        "dw_z": struct_sign * xs[s],
                        "q_struct_z": xs[s],
                        "cell": cell,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def test_pipeline_reads_known_orders_and_is_json():
    table = _table({"a": 4.0, "b": -4.0, "c": 0.0})
    table["success"] = ~((table["cell"] == "a") & (table["seed"] == 7))
    recs = timing_from_curves(table, by=["cell"], n_sim=12)
    by = {r["cell"]: r for r in recs}
    assert [r["cell"] for r in recs] == ["a", "b", "c"]
    assert by["a"]["verdict"] == "function first" and by["a"]["n_seeds"] == 7
    assert by["a"]["excluded"] == [{"seed": [7], "reason": "failed the task (success false)"}]
    assert by["b"]["verdict"] == "structure first"
    assert by["c"]["verdict"] == "co-emergent"
    assert by["a"]["median_lag_evals"] == pytest.approx(4.0, abs=0.5)
    assert by["a"]["family"] == 3 and by["a"]["p_order_bh"] >= by["a"]["p_order"]
    cal = by["b"]["calibration"]
    assert cal["n_seeds"] == 8 and cal["family"] == 3
    assert [s["lead_evals"] for s in cal["scenarios"]] == [0, 1, -1, 2, -2, 4, -4]
    model = by["a"]["curve_models"]["func"]
    assert model["amplitude"] == pytest.approx(18.0, rel=0.1) and "measured" in model["source"]
    seed0 = by["c"]["seeds"][0]
    assert seed0["func"]["status"] == "onset" and len(seed0["lag"]) == 2
    json.dumps(recs, allow_nan=False)  # strict JSON: no NaN, no inf


def test_pipeline_never_calls_function_first_where_structure_never_rose():
    table = _table({"flat": math.inf, "ok": 3.0}, seed=2)
    recs = timing_from_curves(table, by=["cell"], n_sim=0)
    by = {r["cell"]: r for r in recs}
    assert by["flat"]["verdict"] == "structure never emerged"
    assert by["flat"]["n_struct_not_detected"] == 8
    assert by["flat"]["calibration"] is None
    assert by["ok"]["verdict"] == "function first"


def test_pipeline_takes_a_falling_structure_statistic_and_an_irregular_schedule():
    dense = np.concatenate([np.arange(0.0, 50.0), np.arange(50.0, 1001.0, 25.0)])
    table = _table({"x": -3.0}, seed=3, schedule=dense, struct_sign=-1.0)
    rec = timing_from_curves(table, struct="dw_z", struct_direction=-1, n_sim=0)[0]
    assert rec["verdict"] == "structure first" and rec["step"] == 25.0
    assert rec["median_lag_evals"] == pytest.approx(-3.0, abs=0.5)
    wrong_way = timing_from_curves(table, struct="dw_z", n_sim=0)[0]
    assert wrong_way["verdict"] == "structure never emerged"


def test_pipeline_with_few_seeds_says_it_lacks_power():
    rec = timing_from_curves(_table({"x": 4.0}, n=4, seed=4), n_sim=0)[0]
    assert rec["verdict"] == "inconclusive (power)"
    assert rec["detectable_lead_evals"] is None  # inf in JSON form
    assert "cannot reach" in rec["power_note"]


def test_pipeline_names_missing_columns_and_repeated_epochs():
    with pytest.raises(ValueError, match=r"\['q_struct_z'\] are missing"):
        timing_from_curves(pd.DataFrame({"seed": [0], "epoch": [0.0], "q_func_z": [0.0]}))
    two_cells = _table({"a": 0.0, "b": 0.0}, n=2)
    with pytest.raises(ValueError, match="repeats an epoch"):
        timing_from_curves(two_cells, n_sim=0)  # the cell column left out of by


def test_pipeline_lists_seeds_too_short_to_judge():
    table = _table({"a": 4.0}, n=8, seed=5)
    table = table[(table["seed"] != 3) | (table["epoch"] < 50.0)]  # seed 3: 2 evaluations
    rec = timing_from_curves(table, n_sim=0)[0]
    assert rec["n_seeds"] == 7
    assert rec["excluded"] == [{"seed": [3], "reason": "2 evaluations (3 needed)"}]
