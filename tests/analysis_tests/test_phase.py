"""Phase-diagram info objects on small synthetic per-seed tables with known aggregates."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.figures import (
    plot_curve_bands,
    plot_onsets,
    plot_pareto,
    plot_phase,
    plot_scatter,
    to_png,
)
from analysis.phase import axis_labels, curve_bands_info, pareto_info, phase_info, scatter_info


def _seeds(lams, ks, n_seeds, rng):
    """A grid of seeds whose per-cell outcomes are simple functions of (λ, K, seed)."""
    rows = []
    for lam in lams:
        for k in ks:
            for s in range(n_seeds):
                emerged = lam > 0
                t_func = 100.0 + 25 * s if emerged else math.nan
                rows.append(
                    {
                        "trial_id": f"t{lam}-{k}",
                        "seed": s,
                        "mi.weight": lam,
                        "partition.groups": k,
                        "final.q_func": 0.3 * (lam > 0) + 0.01 * s,
                        "final.q_struct": 0.05 * k * lam * 10,
                        "final.accuracy": 0.95 - lam,
                        "success": 0.95 - lam > 0.9,
                        "differentiated": (0.95 - lam > 0.9) and 0.05 * k * lam * 10 > 0.1,
                        "t_func": t_func,
                        "t_struct": t_func + 100 * k if emerged else math.nan,
                        "lag": 100.0 * k if emerged else math.nan,
                        "noise": rng.normal(),
                    }
                )
    return pd.DataFrame(rows)


def test_phase_info_grid_cells_have_known_aggregates():
    seeds = _seeds([0.0, 0.03, 0.3], [2, 3], 4, np.random.default_rng(0))
    info = phase_info(seeds, "mi.weight", "partition.groups")
    assert info.x.labels == ["0", "0.03", "0.3"] and info.y.labels == ["2", "3"]
    assert not info.x.binned
    np.testing.assert_array_equal(info.n_seeds, np.full((2, 3), 4))
    # Cell (K=3, λ=0.03): lag 300 for every seed; medians of q_func over 0.30..0.33.
    j, i = 1, 1
    assert info.values["lag"][j, i] == 300.0
    assert info.values["final.q_func"][j, i] == pytest.approx(np.median([0.3, 0.31, 0.32, 0.33]))
    assert info.values["t_func"][j, i] == pytest.approx(137.5)
    assert info.values["success_rate"][j, i] == 1.0
    assert info.values["differentiated_rate"].tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    # λ = 0: nothing emerged, so the onset cells are NaN with 0 defined seeds of 4.
    assert np.isnan(info.values["t_func"][:, 0]).all()
    assert info.n_defined["lag"][:, 0].tolist() == [0, 0]
    assert info.values["success_rate"][:, 2].tolist() == [0.0, 0.0]
    assert len(info.cells) == 6 and info.sparse_cells == 0


def test_phase_info_single_key_gives_one_row():
    seeds = _seeds([0.0, 0.1], [2], 3, np.random.default_rng(0))
    info = phase_info(seeds, "mi.weight")
    assert info.n_seeds.shape == (1, 2) and info.y.labels == ["all"]


def test_phase_info_bins_sampled_log_spaced_values():
    rng = np.random.default_rng(1)
    lam = 10 ** rng.uniform(-3, 0, 40)  # 40 distinct values over three decades
    seeds = pd.DataFrame(
        {
            "trial_id": range(40),
            "mi.weight": lam,
            "final.q_func": np.log10(lam),
            "lag": np.nan,
            "t_func": np.nan,
        }
    )
    info = phase_info(seeds, "mi.weight", n_bins=3)
    assert info.x.binned
    edges = np.asarray(info.x.edges)
    np.testing.assert_allclose(np.diff(np.log10(edges)), np.diff(np.log10(edges))[0])
    expected = np.clip(np.searchsorted(edges[1:-1], lam, side="right"), 0, 2)
    np.testing.assert_array_equal(info.n_seeds[0], np.bincount(expected, minlength=3))
    for b in range(3):
        assert info.values["final.q_func"][0, b] == pytest.approx(
            np.median(np.log10(lam[expected == b]))
        )


def test_phase_info_categorical_hyperparameter():
    seeds = pd.DataFrame(
        {
            "trial_id": range(6),
            "mi.estimator": ["dv", "mine", "infonce"] * 2,
            "final.q_func": [1.0, 2.0, 3.0, 3.0, 4.0, 5.0],
            "lag": np.nan,
        }
    )
    with pytest.warns(UserWarning, match=r"fewer than 3 seeds"):
        info = phase_info(seeds, "mi.estimator")
    assert info.x.labels == ["dv", "infonce", "mine"]
    assert info.values["final.q_func"][0].tolist() == [2.0, 4.0, 3.0]
    assert info.sparse_cells == 3


def test_phase_info_warns_on_cells_with_few_seeds():
    seeds = _seeds([0.0, 0.1], [2], 2, np.random.default_rng(0))
    match = r"2 cell\(s\) of mi.weight x partition.groups have fewer"
    with pytest.warns(UserWarning, match=match):
        phase_info(seeds, "mi.weight", "partition.groups")


def test_phase_info_no_warning_with_enough_seeds():
    seeds = _seeds([0.0, 0.1], [2], 3, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        phase_info(seeds, "mi.weight", "partition.groups")


def test_phase_info_empty_seeds_log_a_warning(caplog):
    seeds = _seeds([0.1], [2], 3, np.random.default_rng(0)).iloc[0:0]
    with caplog.at_level(logging.WARNING, logger="analysis.phase"):
        info = phase_info(seeds, "mi.weight", "partition.groups")
    assert "no seeds" in caplog.text
    assert info.n_seeds.size == 0 and len(info.cells) == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"x": "nope"}, r"phase_info\(\): 'nope' must be a column of seeds"),
        ({"x": "mi.weight", "y": "lambda"}, r"'lambda' must be a column"),
        ({"x": "mi.weight", "n_bins": 0}, r"max_levels and n_bins must be >= 1, but got"),
    ],
)
def test_phase_info_rejects_bad_arguments(kwargs, match):
    seeds = _seeds([0.1], [2], 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        phase_info(seeds, **kwargs)


def test_axis_labels_follow_phase_info_levels():
    seeds = _seeds([0.0, 0.3], [2], 3, np.random.default_rng(0))
    labels = axis_labels(seeds, "mi.weight")
    assert labels.tolist() == ["0"] * 3 + ["0.3"] * 3


def test_curve_bands_info_median_and_quartiles_per_level():
    epochs = [0, 25]
    rows = []
    for lam, trial in ((0.0, "a"), (0.1, "b")):
        for s, q in enumerate([0.0, 1.0, 2.0, 3.0, 4.0]):
            for e in epochs:
                rows.append(
                    {
                        "trial_id": trial,
                        "seed": s,
                        "epoch": e,
                        "q_func": q + lam * e,
                        "q_struct": np.nan if s == 0 else q,
                    }
                )
    curves = pd.DataFrame(rows)
    seeds = pd.DataFrame({"trial_id": ["a", "b"], "mi.weight": [0.0, 0.1]})
    bands = curve_bands_info(curves, seeds).set_index(["level", "metric", "epoch"])
    assert bands.loc[("0.1", "q_func", 25.0), "median"] == pytest.approx(2.0 + 2.5)
    assert bands.loc[("0", "q_func", 0.0), "q25"] == pytest.approx(1.0)
    assert bands.loc[("0", "q_func", 0.0), "q75"] == pytest.approx(3.0)
    assert bands.loc[("0", "q_struct", 0.0), "n"] == 4  # the NaN seed is left out
    assert bands.loc[("0", "q_struct", 0.0), "median"] == pytest.approx(2.5)


def test_pareto_info_marks_non_dominated_trials():
    seeds = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b", "c", "d", "e"],
            "final.accuracy": [0.9, 0.9, 0.95, 0.8, 0.95, np.nan],
            "final.q_func": [0.3, 0.3, 0.1, 0.35, 0.05, 0.5],
            "mi.weight": [0.1, 0.1, 0.0, 0.3, 0.0, 1.0],
        }
    )
    p = pareto_info(seeds).set_index("trial_id")
    assert p["on_front"].to_dict() == {"a": True, "b": True, "c": True, "d": False}
    assert "e" not in p.index  # no finite accuracy


def test_scatter_info_keeps_finite_seeds_with_their_level():
    seeds = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b"],
            "seed": [0, 1, 0],
            "final.q_func": [0.3, np.nan, 0.1],
            "final.q_struct": [0.1, 0.2, 0.0],
            "mi.weight": [0.1, 0.1, 0.0],
            "differentiated": [True, False, False],
        }
    )
    s = scatter_info(seeds)
    assert s[["trial_id", "seed"]].values.tolist() == [["a", 0], ["b", 0]]
    assert s["level"].tolist() == [0.1, 0.0]


def test_figures_render_to_png():
    seeds = _seeds([0.0, 0.1, 0.3], [2, 3], 3, np.random.default_rng(0))
    curves = pd.DataFrame(
        [
            {"trial_id": t, "seed": s, "epoch": e, "q_func": 0.1, "q_struct": 0.0}
            for t in seeds["trial_id"].unique()
            for s in range(3)
            for e in (0, 25)
        ]
    )
    figs = [
        plot_phase(phase_info(seeds, "mi.weight", "partition.groups")),
        plot_curve_bands(curve_bands_info(curves, seeds)),
        plot_onsets(seeds),
        plot_pareto(pareto_info(seeds)),
        plot_scatter(scatter_info(seeds)),
    ]
    for fig in figs:
        assert to_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_phase_info_shows_null_referenced_quantities_only_when_measured():
    seeds = _seeds([0.0, 0.1], [2], 4, np.random.default_rng(0))
    seeds = seeds.assign(
        **{
            "final.q_func_z": [0.0] * 4 + [5.0, 6.0, 7.0, 8.0],
            "func_emerged": [False] * 4 + [True, True, False, True],
            "struct_emerged": False,
            "onsets_measured": True,
        }
    )
    info = phase_info(seeds, "mi.weight")
    assert info.values["final.q_func_z"][0].tolist() == [0.0, 6.5]
    assert info.values["func_emerged_rate"][0].tolist() == [0.0, 0.75]
    assert "final.nmi_func" not in info.values  # not measured: no panel
    unmeasured = seeds.assign(onsets_measured=False)
    assert "func_emerged_rate" not in phase_info(unmeasured, "mi.weight").values
    assert to_png(plot_phase(info))[:8] == b"\x89PNG\r\n\x1a\n"
