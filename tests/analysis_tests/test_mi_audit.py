"""Tests of analysis/mi_audit.py: the per-λ table reads each seed's last evaluated value and
the excess over the null exactly (synthetic curves with known values), the figure has one panel
per λ with each measurement's excess and null drawn, and studies without the new metrics
(the fixture study predates them) still give a table and panels."""

import numpy as np
import pandas as pd
import pytest

from analysis.mi_audit import mi_audit
from analysis.runs import StudyData, load_study

EPOCHS = np.arange(0, 201, 25, dtype=float)


def _study(curves: pd.DataFrame, lam_of: dict[str, float]) -> StudyData:
    trials = pd.DataFrame(
        {
            "trial_id": pd.Series(list(lam_of), dtype=object),
            "mi.weight": pd.Series(list(lam_of.values()), dtype=float),
        }
    )
    seeds = curves[["trial_id", "seed"]].drop_duplicates().merge(trials, on="trial_id")
    return StudyData(
        name="s",
        tracking_uri="sqlite://",
        experiment_id="0",
        study_run_id=None,
        status="finished",
        tags={},
        task="working_memory",
        swept=["mi.weight"],
        trials=trials,
        seeds=seeds,
        curves=curves,
        dropped=pd.DataFrame(),
    )


def _curves():
    """Two trials (λ 0 and 0.1), 3 seeds each. Seed i of trial λ ends with
    mi_heldout = h + 0.1 i over a null of 0.05, mi_gauss = g + 0.1 i over a null of 0.3; the
    held-out estimate exists only every 4th evaluation and at the last."""
    rows = []
    for trial, _lam, h, g in (("t0", 0.0, 2.0, 4.0), ("t1", 0.1, 0.02, 0.35)):
        for seed in range(3):
            for i, e in enumerate(EPOCHS):
                due = i % 4 == 0 or i == len(EPOCHS) - 1
                early = 10.0 if i < len(EPOCHS) - 1 else 0.0  # only the last value counts
                rows.append(
                    {
                        "trial_id": trial,
                        "run_id": trial,
                        "seed": seed,
                        "epoch": e,
                        "mi": 0.01 * seed,
                        "mi_heldout": h + 0.1 * seed + early if due else np.nan,
                        "mi_heldout_null": 0.05 if due else np.nan,
                        "mi_gauss": g + 0.1 * seed + early,
                        "mi_gauss_null": 0.3,
                    }
                )
    return pd.DataFrame(rows)


def test_mi_audit_table_reads_last_values_and_excess_over_null():
    fig, table = mi_audit(_study(_curves(), {"t0": 0.0, "t1": 0.1}))
    assert table["lambda"].tolist() == [0.0, 0.1]
    assert table["n_seeds"].tolist() == [3, 3]
    t = table.set_index("lambda")
    # mean over seeds of h + 0.1·i is h + 0.1; sd of (0, 0.1, 0.2) is 0.1
    assert t.loc[0.0, "mi_heldout mean"] == pytest.approx(2.1)
    assert t.loc[0.0, "mi_heldout_excess mean"] == pytest.approx(2.05)
    assert t.loc[0.1, "mi_heldout_excess mean"] == pytest.approx(0.07)
    assert t.loc[0.1, "mi_gauss_excess mean"] == pytest.approx(0.15)
    assert t.loc[0.1, "mi_gauss_excess sd"] == pytest.approx(0.1)
    assert t.loc[0.1, "mi_gauss_null mean"] == pytest.approx(0.3)
    assert t.loc[0.1, "mi_heldout_excess > 0"] == "2/3"  # seed 0: 0.02 − 0.05 < 0
    assert t.loc[0.0, "mi mean"] == pytest.approx(0.01)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["λ = 0", "λ = 0.1"]
    labels = {line.get_label() for line in axes[0].get_lines()}
    assert {
        "held-out critic − null",
        "held-out critic null",
        "Gaussian plug-in − null",
        "Gaussian plug-in null",
        "training critic (mi): critic objective",
    } <= labels


def test_mi_audit_excess_is_negative_when_the_null_is_above():
    c = _curves()
    c.loc[c["trial_id"] == "t1", "mi_gauss_null"] = 1.0  # floor above the value
    _, table = mi_audit(_study(c, {"t0": 0.0, "t1": 0.1}))
    t = table.set_index("lambda")
    assert t.loc[0.1, "mi_gauss_excess mean"] == pytest.approx(0.45 - 1.0)
    assert t.loc[0.1, "mi_gauss_excess > 0"] == "0/3"


def test_mi_audit_of_a_study_without_the_new_metrics(fixture_study):
    data = load_study(fixture_study.name, fixture_study.tracking_uri)
    fig, table = mi_audit(data)
    assert sorted(table["lambda"]) == [0.0, 0.1, 0.3]
    assert table["mi_heldout mean"].isna().all()
    assert np.isfinite(table["mi_gauss mean"]).all()  # the fixture has mi_gauss, no null
    assert table["mi_gauss_excess mean"].isna().all()
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3


def test_mi_audit_of_no_curves():
    empty = pd.DataFrame(
        {"trial_id": pd.Series([], dtype=object), "run_id": [], "seed": [], "epoch": []}
    )
    fig, table = mi_audit(_study(empty, {}))
    assert len(table) == 0 and len(fig.axes) == 1
