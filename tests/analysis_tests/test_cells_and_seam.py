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
from study.contract.rise import seed_onsets

# dense early, then every 2 epochs: the regular step is 2 epochs (study.contract.rise)
EPOCHS = np.concatenate([np.arange(0.0, 10.0), np.arange(10.0, 61.0, 2.0)])
EARLY, LATE = 16.0, 36.0  # midpoints of the rises: 10 evaluations apart
WIDTH = 2.0  # logistic scale in epochs (one evaluation)


def _rise(mid: float, rng: np.random.Generator, amplitude: float = 10.0) -> np.ndarray:
    """A z-score curve: a logistic rise at `mid` (NaN: flat) plus N(0, 0.3²) noise."""
    course = 0.0 if np.isnan(mid) else amplitude / (1.0 + np.exp(-(EPOCHS - mid) / WIDTH))
    return course + rng.normal(0.0, 0.3, EPOCHS.size)


def _study(trials: list[dict], *, swept, curves: bool = True) -> StudyData:
    """Per trial (keys and per-seed outcomes), the per-seed table and curves a StudyData holds.

    Each seed's q_func_z and q_struct_z rise at known midpoints ("first": function rises at
    EARLY and structure at LATE, "structure" the other way, "neither" stays flat;
    "struct_never": structure stays flat), and its seeds-table row carries the timing onsets
    study.contract.rise.seed_onsets computes from them (as seeds.parquet does)."""
    rng = np.random.default_rng(11)
    seeds, curve_rows = [], []
    for i, t in enumerate(trials):
        tid = f"t{i:02d}"
        f, st = t.get("first", "function"), t.get("success", True)
        tf = {"function": EARLY, "structure": LATE, "neither": math.nan}[f]
        ts = {"function": LATE, "structure": EARLY, "neither": math.nan}[f]
        if t.get("struct_never"):
            ts = math.nan
        frames = []
        for s in range(t.get("n_seeds", 2)):
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
                    "t_func_censor": 60.0,
                    "t_struct_censor": 60.0,
                    "first": "function" if np.isfinite(tf) and not np.isfinite(ts) else f,
                    "train.eval_every": 1,
                    "final.accuracy": 0.95 if st else 0.5,
                    **{k: t[k] for k in swept},
                }
            )
            frames.append(
                pd.DataFrame(
                    {
                        "trial_id": tid,
                        "run_id": tid,
                        "seed": s,
                        "epoch": EPOCHS,
                        "q_func_z": _rise(tf, rng),
                        "q_struct_z": _rise(ts, rng),
                        "mi_heldout": 0.1 + t.get("mi.weight", 0),
                        "mi_heldout_null": 0.1,
                    }
                )
            )
        if curves:
            curve_rows += frames
    seeds = pd.DataFrame(seeds)
    if curves:
        curve_tab = pd.concat(curve_rows, ignore_index=True)
        onsets = pd.concat(
            [seed_onsets(c).assign(trial_id=tid) for tid, c in curve_tab.groupby("trial_id")],
            ignore_index=True,
        )
        seeds = seeds.merge(onsets, on=["trial_id", "seed"], how="left")
    else:
        curve_tab = pd.DataFrame()
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
        curves=curve_tab,
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
    assert "amplitude-invariant" in v.attrs["method"]
    v = v.set_index("mi.weight")
    assert v["verdict"].to_dict() == {
        0.0: "neither emerged",
        # 8 of 8 seeds lead by 10 evaluations: exact sign-flip p = 2/2^8 = 0.0078, BH over
        # the 2 treated cells with seeds: 2 · 0.0078 = 0.016 <= 0.05
        0.1: "function first",
        0.3: "structure never emerged",  # never "function first", though all 8 rise first
    }
    assert v["n"].tolist() == [8, 8, 8]
    assert v.loc[0.1, ["n_func_first", "n_struct_first", "n_undecided"]].tolist() == [8, 0, 0]
    assert v.loc[0.1, "median_lag_evals"] == pytest.approx((LATE - EARLY) / 2.0, abs=0.5)
    assert v.loc[0.0, "why"].startswith("control (λ = 0), any order is false: no confirmed")
    assert v.loc[0.1, "why"] == (
        "function first in 8, structure first in 0, undecided 0 of 8 seeds; "
        "signed-rank U = 36, p = 0.0078 (BH 0.016)"
    )
    assert v.loc[0.3, "why"] == (
        "no confirmed rise: function in 0, structure in 8 of 8 seeds (unresolved or not detected)"
    )
    # the ordering this row judges, and the same per ordering the study measured
    assert v.loc[0.1, "ordering"] == "function vs Q(|W|)"
    assert v.loc[0.1, "verdict.q_struct_z"] == "function first"
    assert "verdict.dw_block_z" not in v  # ΔW not measured in this study


def test_the_seam_judges_a_reversed_order_and_a_split_honestly():
    # structure leads in all 8 seeds of one cell; a 4-4 split in another: no order, and with
    # lags of ±10 evaluations neither co-emergence (TOST within ±2) nor a lead of 2
    # evaluations can be shown at n = 8, so the split reads "inconclusive (power)"
    trials = [
        {"mi.weight": 0.1, "n_seeds": 8, "first": "structure"},
        {"mi.weight": 0.2, "n_seeds": 4, "first": "function"},
        {"mi.weight": 0.2, "n_seeds": 4, "first": "structure"},
    ]
    v = timing_verdicts(_study(trials, swept=["mi.weight"])).set_index("mi.weight")
    assert v.loc[0.1, "verdict"] == "structure first"
    assert v.loc[0.1, "median_lag_evals"] == pytest.approx(-10.0, abs=0.5)
    assert v.loc[0.2, ["n", "n_func_first", "n_struct_first"]].tolist() == [8, 4, 4]
    assert v.loc[0.2, "verdict"] == "inconclusive (power)"
    assert v.loc[0.2, "p_order_bh"] > 0.05 and v.loc[0.2, "p_tost_bh"] > 0.05
    assert v.loc[0.2, "detectable_lead_evals"] > 2.0  # why "(power)": a lead of 2 is unseen
    assert v.loc[0.2, "why"].endswith(v.loc[0.2, "power_note"])


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
    assert v.loc[0.1, "n_failed"] == 2 and v.loc[0.3, "n_failed"] == 0  # counted per cell
    assert v.loc[0.2, "n"] == 3 and v.loc[0.1, "n"] == 0
    # 3 seeds, all function first: the smallest two-sided p of 3 signs is 2/2^3 = 0.25, so no
    # order can be called at any α <= 0.25; the cell says so instead of "inconclusive"
    assert v.loc[0.2, "verdict"] == "inconclusive (power)"
    assert "3 seeds cannot reach p <= 0.05" in v.loc[0.2, "why"]
    assert v["n_func_first"].dtype.kind == "i"  # a row added for a cell keeps the counts whole
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


def test_the_seam_computes_onsets_from_curves_and_is_amplitude_invariant(noisy_sigmoid):
    # a seeds table without onset columns (it predates them): the seam computes them from the
    # curves. 8 seeds whose q_func_z rises 4 evaluations before q_struct_z, with amplitudes
    # 20 vs 6 (and 6 vs 20: the order must not follow the larger curve), and 8 controls
    t = np.arange(0, 41, dtype=float)
    rng = np.random.default_rng(3)
    rows, seeds = [], []
    for lam, (a_f, a_s) in ((0.0, (0.0, 0.0)), (0.1, (20.0, 6.0)), (0.2, (6.0, 20.0))):
        tid = f"l{lam}"
        for s in range(8):
            f = noisy_sigmoid(t, 24.5, a_f, noise=0.3, rng=rng, width=1.0)
            g = noisy_sigmoid(t, 28.5, a_s, noise=0.3, rng=rng, width=1.0)
            rows.append(
                pd.DataFrame(
                    {"trial_id": tid, "seed": s, "epoch": t, "q_func_z": f, "q_struct_z": g}
                )
            )
            seeds.append(
                {
                    "trial_id": tid,
                    "run_id": tid,
                    "seed": s,
                    "mi.weight": lam,
                    "status": "finished",
                    "success": True,
                    "onsets_measured": True,
                }
            )
    base = _study([{"mi.weight": 0.1}], swept=["mi.weight"])
    data = StudyData(**{**base.__dict__, "seeds": pd.DataFrame(seeds), "curves": pd.concat(rows)})
    v = timing_verdicts(data).set_index("mi.weight")
    assert v["verdict"].to_dict() == {
        0.0: "neither emerged",
        0.1: "function first",
        0.2: "function first",
    }
    assert v.loc[0.1, "why"].startswith("function first in 8, structure first in 0")
    assert v.loc[0.1, "median_lag_evals"] == pytest.approx(4.0, abs=0.5)
    assert v.loc[0.2, "median_lag_evals"] == pytest.approx(4.0, abs=0.5)
