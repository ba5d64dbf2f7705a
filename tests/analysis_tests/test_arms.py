"""The arms analysis (analysis.arms) on synthetic arms with a known paired shift and with none,
the questions each arm's config asks, the distribution-free CI against the binomial closed form,
and the lesion effects against constructed drops."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis.arms import (
    ArmDesign,
    arm_comparisons,
    arm_curve_bands,
    arm_lesions,
    arm_questions,
    arm_verdicts,
    median_ci,
    switch_epochs,
)
from study.contract.rise import STEP_COLUMN, onset_column

EPOCHS = np.arange(0, 501, 25, dtype=float)  # 21 evaluations
N_SEEDS = 8
SHIFT_Z = 3.0  # arm "shifted": final Q(|W|) z = control + 3 (+ tiny noise)
SHIFT_ONSET = 50.0  # ... and its structure onset 50 epochs (2 evaluations) later
SWITCH = 200.0  # arm "off": the penalty switched off at epoch 200
RISE_AFTER = 2.0  # ... after which its q_struct_z rises by 2 in every seed
DROP = {"control": 5.0, "shifted": 2.0, "same": 5.0, "off": 5.0}  # lesion drop of q_func_z
ARMS = {
    "control": {},
    "shifted": {"structure_penalty.weight": 0.01},
    "same": {"intervention.at": 100, "intervention.mi_weight": 0.1},
    "off": {"intervention.at": int(SWITCH), "intervention.mi_weight": 0.0},
}
DESIGN = ArmDesign("control", ARMS)


def _onsets(row: dict, metric: str, t: float) -> None:
    row[onset_column(metric)] = t
    row[onset_column(metric, "status")] = "onset"
    row[onset_column(metric, "lo")] = t
    row[onset_column(metric, "hi")] = t
    row[onset_column(metric, "decided_at")] = t + 75
    row[onset_column(metric, "detectable_from")] = t


def synthetic(rng: np.random.Generator | None = None):
    """Seeds and curves of four arms of one cell, 8 seeds each, paired by seed_value.

    The control's finals and onsets vary by seed; "shifted" adds SHIFT_Z to each seed's final
    Q(|W|) z and SHIFT_ONSET to its structure onset; "same" adds symmetric noise of median 0
    to every final (no shift); "off" equals the control up to SWITCH, then its q_struct_z rises
    by RISE_AFTER. λ = 0.1 throughout (params), as the arms' configs say.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    base_q = rng.normal(8.0, 2.0, N_SEEDS)
    base_f = rng.normal(15.0, 3.0, N_SEEDS)
    base_dw = rng.normal(4.0, 1.0, N_SEEDS)
    base_acc = rng.uniform(0.92, 0.97, N_SEEDS)
    t_func = 50.0 + 25.0 * rng.integers(0, 3, N_SEEDS)
    t_struct = t_func + 100.0
    same_noise = np.array([0.5, -0.5, 0.3, -0.3, 0.2, -0.2, 0.1, -0.1])
    seeds, curves = [], []
    for a, arm in enumerate(ARMS):
        trial = f"trial_{a}"
        for s in range(N_SEEDS):
            q_end, f_end, dw_end, acc = base_q[s], base_f[s], base_dw[s], base_acc[s]
            ts = t_struct[s]
            if arm == "shifted":
                q_end = q_end + SHIFT_Z + 0.01 * (s + 1)
                ts = ts + SHIFT_ONSET
            if arm == "same":
                q_end, f_end = q_end + same_noise[s], f_end + same_noise[::-1][s]
                acc = acc + same_noise[s] / 100
            curve_q = q_end / (1 + np.exp(-(EPOCHS - ts) / 10.0))
            if arm == "off":
                curve_q = curve_q + np.where(EPOCHS > SWITCH, RISE_AFTER, 0.0)
            curve_f = f_end / (1 + np.exp(-(EPOCHS - t_func[s]) / 10.0))
            intervened = np.zeros_like(EPOCHS)
            if arm == "off":
                intervened = (EPOCHS >= SWITCH).astype(float)
            if arm == "same":
                intervened = (EPOCHS >= 100).astype(float)
            lesion = np.full_like(EPOCHS, np.nan)
            lesion[-1] = curve_f[-1] - DROP[arm]
            curves.append(
                pd.DataFrame(
                    {
                        "trial_id": trial,
                        "seed": s,
                        "seed_value": 1000 + s,
                        "epoch": EPOCHS,
                        "accuracy": acc,
                        "q_func_z": curve_f,
                        "q_struct_z": curve_q,
                        "dw_block_z": dw_end,
                        "intervened": intervened,
                        "lesion_zero_between_accuracy": np.where(np.isnan(lesion), np.nan, 0.5),
                        "lesion_zero_between_q_func_z": lesion,
                    }
                )
            )
            row = {
                "trial_id": trial,
                "seed": s,
                "seed_value": 1000 + s,
                "arm": arm,
                "status": "finished",
                "mi.weight": 0.1,
                **{f"intervention.{k}": None for k in ("at", "mi_weight")},
                "final.accuracy": acc,
                "final.q_func_z": curve_f[-3:].mean(),
                "final.q_struct_z": curve_q[-3:].mean(),
                "final.dw_block_z": dw_end,
                STEP_COLUMN: 25.0,
            }
            for k, v in ARMS[arm].items():
                row[k] = v
            _onsets(row, "q_func_z", t_func[s])
            _onsets(row, "q_struct_z", ts)
            _onsets(row, "dw_block_z", ts)
            seeds.append(row)
    return pd.DataFrame(seeds), pd.concat(curves, ignore_index=True)


@pytest.fixture(scope="module")
def data():
    return synthetic()


def _row(table: pd.DataFrame, arm: str, column: str) -> dict:
    hit = table[(table["arm"] == arm) & (table["column"] == column)]
    assert len(hit) == 1, (arm, column, table[["arm", "column"]])
    return hit.iloc[0].to_dict()


def test_a_known_paired_shift_is_found_with_its_size(data):
    seeds, curves = data
    table = arm_comparisons(seeds, curves, DESIGN)
    r = _row(table, "shifted", "final.q_struct_z")
    assert r["n"] == N_SEEDS and r["n_up"] == N_SEEDS
    assert r["effect"] == pytest.approx(SHIFT_Z + 0.045, abs=0.006)  # median of +0.01..+0.08
    assert r["ci_lo"] == pytest.approx(SHIFT_Z + 0.01) and r["ci_hi"] == pytest.approx(
        SHIFT_Z + 0.08
    )
    assert r["p"] == pytest.approx(2 / 2**8)  # 8 of 8 up: the exact two-sided minimum
    assert r["verdict"] == "higher"
    onset = _row(table, "shifted", "q_struct_z")
    assert onset["kind"] == "onset" and onset["effect"] == SHIFT_ONSET
    assert onset["verdict"] == "later" and onset["n_up"] == N_SEEDS
    # the shifted arm's other quantities did not move: no difference at all, p = 1
    func = _row(table, "shifted", "final.q_func_z")
    assert func["effect"] == 0 and func["p"] == 1.0 and func["verdict"].startswith("inconclusive")


def test_no_shift_is_not_called_and_says_why(data):
    seeds, curves = data
    table = arm_comparisons(seeds, curves, DESIGN)
    r = _row(table, "same", "final.q_struct_z")
    assert r["effect"] == pytest.approx(0.0, abs=1e-9) and r["n_up"] == r["n_down"] == 4
    assert r["p"] > 0.5
    assert r["verdict"].startswith("inconclusive")
    assert "p <=" in r["power_note"] or "power" in r["power_note"]
    # the family: one arm's comparisons and questions, BH within it (never across arms)
    fam = table.groupby("arm")["family"].first()
    assert fam["same"] == len(table[table["arm"] == "same"])  # "same" asks no question
    assert set(table["arm"]) == {"shifted", "same", "off"}  # the control is the reference


def test_power_wording_when_n_cannot_reach_the_level(data):
    seeds, curves = data
    few = seeds[seeds["seed"] < 4]  # 4 pairs: the smallest two-sided p is 2/16 = 0.125
    table = arm_comparisons(few, curves, DESIGN)
    r = _row(table, "shifted", "final.q_struct_z")
    assert r["p"] == pytest.approx(0.125) and r["verdict"] == "inconclusive (power)"
    assert "cannot reach" in r["power_note"] and "0.125" in r["power_note"]


def test_questions_after_the_switch_and_levels(data):
    seeds, curves = data
    v = arm_verdicts(seeds, curves, DESIGN)
    off = v[v["arm"] == "off"].set_index("question")
    keeps = off.loc["structure (Q(|W|)) keeps forming after the penalty is switched off"]
    # from the switch (epoch 200, its own value) to the final: the plateau's rest plus 2
    assert keeps["n"] == N_SEEDS and keeps["n_switched"] == N_SEEDS
    assert keeps["switch_median"] == SWITCH
    assert keeps["median"] > RISE_AFTER and keeps["verdict"] == "yes"
    dw = off.loc["structure (ΔW) keeps forming after the penalty is switched off"]
    assert dw["median"] == 0.0 and dw["verdict"].startswith("inconclusive")  # flat, no change
    shifted = v[v["arm"] == "shifted"].set_index("question")
    imposed = shifted.loc["structure is imposed (final Q(|W|) clear)"]
    assert imposed["verdict"] == "yes" and imposed["median"] > 3
    assert shifted.loc["imposed structure brings function with it", "verdict"] == "yes"
    assert "Wilcoxon" in keeps["why"] and "8 seeds" in keeps["why"]


def test_what_each_arm_asks_comes_from_its_config():
    ask = lambda cfg: [q.text for q in arm_questions({"mi.weight": 0.1, **cfg})]  # noqa: E731
    assert ask({}) == []
    off = ask({"intervention.at": "func_onset", "intervention.mi_weight": 0.0})
    assert off[0] == "structure (Q(|W|)) keeps forming after the penalty is switched off"
    assert ask({"intervention.at": 0, "intervention.freeze": ["w_rec"]}) == [
        "function emerges with W_rec frozen"
    ]
    assert ask({"intervention.at": "func_onset", "intervention.freeze": ["w_rec"]}) == [
        "function keeps forming with W_rec frozen"
    ]
    swap = arm_questions(
        {"mi.weight": 0.1, "intervention.at": 500, "intervention.swap_partition": True}
    )
    assert [q.metric for q in swap] == [
        "q_func_z",
        "q_struct_z",
        "q_func_z_orig",
        "q_struct_z_orig",
    ]
    assert [q.baseline for q in swap] == ["next", "next", "switch", "switch"]
    assert ask({"mi.weight": 0.0, "structure_penalty.weight": 0.003})[-1] == (
        "imposed structure brings function with it"
    )
    assert ask({"mi.weight": 0.0}) == [
        "function becomes modular without the penalty",
        "structure (Q(|W|)) becomes modular without the penalty",
    ]
    late = arm_questions({"mi.weight": 0.0, "intervention.at": 100, "intervention.mi_weight": 0.1})
    assert late[0].text == "function forms after the penalty is switched on"


@pytest.mark.parametrize(("n", "k"), [(8, 1), (9, 2), (20, 6), (50, 18)])
def test_the_median_ci_has_the_binomial_coverage(n, k):
    from scipy.stats import binom

    d = np.arange(1.0, n + 1)
    lo, hi, cov = median_ci(d)
    assert (lo, hi) == (float(k), float(n + 1 - k))
    assert cov == pytest.approx(1 - 2 * binom.cdf(k - 1, n, 0.5))
    assert cov >= 0.95 and 1 - 2 * binom.cdf(k, n, 0.5) < 0.95  # the largest such k
    assert math.isnan(median_ci([])[0])


def test_lesion_drops_per_arm_and_against_control(data):
    seeds, curves = data
    les = arm_lesions(seeds, curves, DESIGN)
    z = les[les["measure"] == "q_func_z"].set_index("arm")
    assert z.loc["control", "median_drop"] == pytest.approx(DROP["control"])
    assert z.loc["shifted", "median_drop"] == pytest.approx(DROP["shifted"])
    assert z.loc["shifted", "drop_vs_control"] == pytest.approx(DROP["shifted"] - DROP["control"])
    assert z.loc["shifted", "n_vs"] == N_SEEDS and z.loc["same", "drop_vs_control"] == 0
    assert z.loc["control", "epoch"] == EPOCHS[-1]
    assert math.isnan(z.loc["control", "drop_vs_control"])


def test_switch_epochs_and_bands(data):
    seeds, curves = data
    sw = switch_epochs(curves).set_index(["trial_id", "seed"])["switch"]
    assert sw.loc[("trial_3", 0)] == SWITCH and math.isnan(sw.loc[("trial_0", 0)])
    bands = arm_curve_bands(curves, seeds)
    b = bands[(bands["arm"] == "off") & (bands["metric"] == "q_struct_z")]
    assert len(b) == EPOCHS.size and (b["n"] == N_SEEDS).all()
    assert (b["q25"] <= b["median"]).all() and (b["median"] <= b["q75"]).all()


def test_cells_are_never_pooled(data):
    seeds, curves = data
    two = pd.concat(
        [seeds.assign(**{"partition.groups": 2}), seeds.assign(**{"partition.groups": 3})],
        ignore_index=True,
    )
    two["trial_id"] = two["trial_id"] + "_k" + two["partition.groups"].astype(str)
    c2 = pd.concat(
        [curves.assign(trial_id=curves["trial_id"] + f"_k{k}") for k in (2, 3)], ignore_index=True
    )
    table = arm_comparisons(two, c2, DESIGN, ["partition.groups"])
    r = table[(table["arm"] == "shifted") & (table["column"] == "final.q_struct_z")]
    assert list(r["partition.groups"]) == [2, 3] and (r["n"] == N_SEEDS).all()
    # one family per arm over both cells: its 2 x 7 comparisons and 2 x 2 questions
    n_questions = len(
        arm_verdicts(two, c2, DESIGN, ["partition.groups"]).query("arm == 'shifted'")
    )
    assert n_questions == 4 and (r["family"] == 14 + n_questions).all()


def test_the_arms_section_of_a_synthetic_study(data, tmp_path):
    """analyse_arms on a StudyData of the synthetic arms (the control named by the study.arms
    tag), and the report's Arms section it feeds: tables, CSVs and one figure."""
    from analysis.arms import analyse_arms
    from analysis.report.page import Page
    from analysis.report.sections import _arms
    from analysis.runs import StudyData
    from study.contract.tags import TAG_ARMS

    seeds, curves = data
    study = StudyData(
        name="synthetic-arms",
        tracking_uri="",
        experiment_id="0",
        study_run_id=None,
        status="finished",
        tags={TAG_ARMS: json.dumps({"control": "control", "arms": ARMS})},
        task="working_memory",
        swept=["arm"],
        trials=pd.DataFrame({"trial_id": seeds["trial_id"].unique()}),
        seeds=seeds,
        curves=curves,
        dropped=pd.DataFrame(),
    )
    got = analyse_arms(study)
    assert got.design.control == "control" and got.by == []
    assert list(dict.fromkeys(got.verdicts["arm"])) == ["shifted", "off"]  # the spec's order
    page = Page(tmp_path)
    _arms(page, SimpleNamespace(arms=got))
    names = {f.name for f in page.files}
    assert {"arm_verdicts.csv", "arm_comparisons.csv", "arm_lesions.csv"} <= names
    assert {"arms_curves.png", "arm_curve_bands.csv"} <= names
    html = "".join(page.body)
    assert "imposed structure brings function with it" in html and "Arms" in html
    assert _arms(Page(tmp_path), SimpleNamespace(arms=None)) is None  # no arms: no section
