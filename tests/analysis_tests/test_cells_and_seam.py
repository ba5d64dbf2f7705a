"""analysis.cells (grid cells or bins of λ), analysis.verdicts (the timing-verdict seam) and the
MI audit per bin, on synthetic studies with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.cells import log_axis, study_cells
from analysis.mi_audit import mi_audit_table
from analysis.runs import StudyData
from analysis.verdicts import (
    NO_SEEDS,
    TIMING_COLUMNS,
    first_evaluation,
    timing_excluded,
    timing_verdicts,
)

EPOCHS = np.array([0.0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32])  # irregular, dense early


def _study(trials: list[dict], *, swept, curves: bool = True) -> StudyData:
    """Per trial (keys and per-seed outcomes), the per-seed table a StudyData holds."""
    seeds, curve_rows = [], []
    for i, t in enumerate(trials):
        tid = f"t{i:02d}"
        for s in range(t.get("n_seeds", 2)):
            f, st = t.get("first", "function"), t.get("success", True)
            tf = {"function": 2.0, "structure": 12.0, "neither": math.nan}[f]
            ts = {"function": 12.0, "structure": 2.0, "neither": math.nan}[f]
            if t.get("struct_never"):
                ts = math.nan
            seeds.append(
                {
                    "trial_id": tid,
                    "run_id": tid,
                    "seed": s,
                    "seed_value": 100 + s,
                    "status": t.get("status", "finished"),
                    "running": False,
                    "success": st,
                    "onsets_measured": True,
                    "t_func": tf,
                    "t_struct": ts,
                    "lag": ts - tf,
                    "func_emerged": np.isfinite(tf),
                    "struct_emerged": np.isfinite(ts),
                    "t_func_censor": 24.0,
                    "t_struct_censor": 24.0,
                    "first": "function" if np.isfinite(tf) and not np.isfinite(ts) else f,
                    "train.eval_every": 1,
                    "final.accuracy": 0.95 if st else 0.5,
                    **{k: t[k] for k in swept},
                }
            )
            if curves:
                for e in EPOCHS:
                    curve_rows.append(
                        {
                            "trial_id": tid,
                            "run_id": tid,
                            "seed": s,
                            "epoch": e,
                            "mi_heldout": 0.1 + t.get("mi.weight", 0),
                            "mi_heldout_null": 0.1,
                        }
                    )
    seeds = pd.DataFrame(seeds)
    trial_tab = seeds.drop_duplicates("trial_id")[["trial_id", "run_id", "status", *swept]]
    return StudyData(
        name="synthetic",
        tracking_uri="sqlite://",
        experiment_id="0",
        study_run_id=None,
        status="finished",
        tags={},
        task="working_memory",
        swept=list(swept),
        trials=trial_tab.reset_index(drop=True),
        seeds=seeds,
        curves=pd.DataFrame(curve_rows),
        dropped=pd.DataFrame(),
    )


def test_log_axis_only_for_positive_keys_spanning_decades():
    assert log_axis([0.0, 0.001, 0.01, 0.5])  # zeros allowed, shown apart
    assert not log_axis([0.1, 0.2, 0.3, 1.0])  # a factor 10 only
    assert not log_axis([-1.0, 0.001, 10.0])
    assert not log_axis(["a", "b"])


def test_a_full_grid_is_judged_per_cell():
    trials = [{"mi.weight": lam, "partition.groups": k} for lam in (0.0, 0.1) for k in (2, 3)]
    cut = study_cells(_study(trials, swept=["mi.weight", "partition.groups"]))
    assert cut.design.kind == "grid" and cut.binning is None and cut.pooled == []
    assert cut.keys == ["mi.weight", "partition.groups"]
    assert cut.cell_seeds is cut.seeds


def test_an_adaptive_search_is_cut_into_log_bins_of_lambda_by_the_few_valued_keys():
    rng = np.random.default_rng(0)
    lams = 10 ** rng.uniform(-3, 0, 24)  # 24 distinct λ: continuous
    trials = [
        {"mi.weight": lam, "partition.groups": 2 + i % 2, "optim.lr": 10 ** rng.uniform(-3, -2)}
        for i, lam in enumerate(lams)
    ] + [{"mi.weight": 0.0, "partition.groups": 2, "optim.lr": 0.003}]
    data = _study(trials, swept=["mi.weight", "partition.groups", "optim.lr"])
    cut = study_cells(data, n_bins=3)
    assert cut.design.kind == "adaptive"
    assert cut.keys == ["mi.weight", "partition.groups"] and cut.pooled == ["optim.lr"]
    b = cut.binning
    assert b.method == "log" and b.zero_apart and b.labels[0] == "0" and len(b.labels) == 4
    assert np.allclose(b.edges, np.geomspace(lams.min(), lams.max(), 4))
    lam = cut.cell_seeds["mi.weight"]
    assert set(lam) <= set(b.labels) and (lam[data.seeds["mi.weight"] == 0] == "0").all()
    # every seed's label is the bin its λ falls in
    edges = np.asarray(b.edges)
    for raw, label in zip(data.seeds["mi.weight"], lam):
        if raw > 0:
            i = min(np.searchsorted(edges, raw, side="right") - 1, 2)
            assert label == b.labels[1 + i]
    assert "log-spaced" in cut.statement and "pooled within a cell: optim.lr" in cut.statement


def test_the_seam_gives_the_cell_keys_then_verdict_n_why():
    trials = [{"mi.weight": lam, "n_seeds": 8} for lam in (0.0, 0.1, 0.3)]
    trials[0]["first"] = "neither"
    trials[2]["struct_never"] = True  # function emerged, structure never did
    data = _study(trials, swept=["mi.weight"])
    v = timing_verdicts(data)
    assert list(v.columns[:4]) == ["mi.weight", *TIMING_COLUMNS]
    v = v.set_index("mi.weight")
    assert v["verdict"].to_dict() == {
        0.0: "neither emerged",
        0.1: "function first",  # 8 of 8, sign test p = 2/256, BH over 2 cells
        0.3: "structure never emerged",  # never "function first", though all 8 lead
    }
    assert v["n"].tolist() == [8, 8, 8]
    assert v.loc[0.0, "why"].startswith("control (λ = 0): onsets: function in 0")
    assert v.loc[0.1, "why"].endswith("sign test p (BH) = 0.0078")
    assert v.loc[0.3, "why"] == "onsets: function in 8, structure in 0 of 8 seeds"


def test_the_seam_leaves_failed_networks_out_and_says_so():
    trials = [
        {"mi.weight": 0.0, "first": "neither"},
        {"mi.weight": 0.1, "success": False},
        {"mi.weight": 0.2, "n_seeds": 3},
        {"mi.weight": 0.3, "status": "diverged"},
    ]
    data = _study(trials, swept=["mi.weight"])
    v = timing_verdicts(data).set_index("mi.weight")
    assert v.loc[0.1, "verdict"] == v.loc[0.3, "verdict"] == NO_SEEDS
    assert v.loc[0.1, "why"] == "left out: 2 failed the task"
    assert v.loc[0.3, "why"] == "left out: 2 trial diverged"
    assert v.loc[0.2, "n"] == 3 and v.loc[0.1, "n"] == 0
    ex = timing_excluded(data)
    assert ex["reason"].value_counts().to_dict() == {"failed the task": 2, "trial diverged": 2}
    assert {"trial_id", "seed", "mi.weight", "final.accuracy", "reason"} <= set(ex.columns)


def test_the_seam_without_z_score_curves_is_empty():
    data = _study([{"mi.weight": 0.1}], swept=["mi.weight"])
    data.seeds["onsets_measured"] = False
    v = timing_verdicts(data)
    assert v.empty and list(v.columns) == ["mi.weight", *TIMING_COLUMNS]


def test_first_evaluation_is_the_first_after_training_began():
    # the schedule evaluates the untrained network at epoch 0, then epochs 1, 2, 3, ...
    data = _study([{"mi.weight": 0.1}, {"mi.weight": 0.2}], swept=["mi.weight"])
    assert first_evaluation(data) == 1.0
    late = data.curves.loc[data.curves["epoch"] >= 2]
    data2 = StudyData(**{**data.__dict__, "curves": late})
    assert first_evaluation(data2) == 2.0
    empty = StudyData(**{**data.__dict__, "curves": data.curves.iloc[0:0]})
    assert math.isnan(first_evaluation(empty))


def test_mi_audit_per_bin_of_lambda():
    rng = np.random.default_rng(1)
    trials = [{"mi.weight": lam} for lam in 10 ** rng.uniform(-3, 0, 12)] + [{"mi.weight": 0.0}]
    data = _study(trials, swept=["mi.weight"])
    cut = study_cells(data, n_bins=2)
    groups = cut.cell_seeds.drop_duplicates("trial_id").set_index("trial_id")["mi.weight"]
    table = mi_audit_table(data, groups=groups)
    assert table["lambda"].tolist() == cut.binning.labels  # "0" first, then the bins in order
    assert table["n_seeds"].sum() == 2 * 13
    # the excess is the trial's λ, averaged over the bin's seeds
    lam = data.seeds.drop_duplicates("trial_id").set_index("trial_id")["mi.weight"]
    for label, row in table.set_index("lambda").iterrows():
        members = groups[groups == label].index
        assert row["mi_heldout_excess mean"] == pytest.approx(lam[members].mean())


def test_the_timing_package_fits_the_seam(noisy_sigmoid):
    # analysis.timing's pipeline behind the same seam: 8 seeds whose q_func_z rises 4
    # evaluations before q_struct_z, with unequal amplitudes (the package is amplitude-
    # invariant), and 8 controls that never rise
    from analysis.verdicts import _half_rise_verdicts

    rng = np.random.default_rng(3)
    t = np.arange(0, 41, dtype=float)
    rows, seeds = [], []
    for lam in (0.0, 0.1):
        for s in range(8):
            tid = f"l{lam}"
            f = noisy_sigmoid(t, 24.5, 20.0 * (lam > 0), noise=0.3, rng=rng, width=1.0)
            g = noisy_sigmoid(t, 28.5, 6.0 * (lam > 0), noise=0.3, rng=rng, width=1.0)
            rows.append(
                pd.DataFrame(
                    {"trial_id": tid, "seed": s, "epoch": t, "q_func_z": f, "q_struct_z": g}
                )
            )
            seeds.append({"trial_id": tid, "seed": s, "mi.weight": lam, "success": True})
    data = _study([{"mi.weight": 0.1}], swept=["mi.weight"])
    data = StudyData(**{**data.__dict__, "curves": pd.concat(rows, ignore_index=True)})
    v = _half_rise_verdicts(data, pd.DataFrame(seeds), ["mi.weight"], n_sim=0)
    assert {"mi.weight", *TIMING_COLUMNS} <= set(v.columns)
    v = v.set_index("mi.weight")
    assert v.loc[0.1, "verdict"] == "function first" and v.loc[0.1, "n"] == 8
    assert v.loc[0.0, "verdict"] == "neither emerged"
    assert v.loc[0.1, "why"].startswith("function first 8, structure first 0")
    assert "amplitude-invariant" in v.attrs["method"]
