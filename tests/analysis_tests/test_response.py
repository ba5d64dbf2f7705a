"""analysis.response: responses, λ → 0 limits, bins and contours on synthetic studies whose
answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.figures import to_png
from analysis.matrix import matrix_info
from analysis.response import (
    assign_bins,
    bin_key,
    binned_claims,
    contour_info,
    limit_info,
    log_scale,
    plot_contour,
    plot_response,
    response_info,
    study_design,
)


def _study(rng, lam, f, *, seeds=4, trial_sd=0.3, seed_sd=0.3, extra=None):
    """Per-seed rows: trial t at λ = lam[t] has q_func_z = f(λ) + trial effect + seed noise."""
    rows = []
    for t, x in enumerate(lam):
        off = rng.normal(0, trial_sd)
        for s in range(seeds):
            rows.append(
                {
                    "trial_id": f"t{t}",
                    "seed": s,
                    "mi.weight": float(x),
                    "final.q_func_z": f(x) + off + rng.normal(0, seed_sd),
                    **(extra(t, x, rng) if extra else {}),
                }
            )
    return pd.DataFrame(rows)


def test_study_design_grid_sparse_and_adaptive():
    grid = pd.DataFrame(
        [
            {"trial_id": i, "mi.weight": lam, "partition.groups": k}
            for i, (lam, k) in enumerate((lam, k) for lam in (0, 0.1, 0.3) for k in (2, 3))
        ]
    )
    d = study_design(grid, ["mi.weight", "partition.groups"])
    assert d.kind == "grid" and d.continuous == [] and d.fill == 1.0
    sparse = grid.iloc[[0, 3]].assign(**{"mi.weight": [0.0, 0.3], "partition.groups": [2, 3]})
    sparse = pd.concat(
        [
            sparse,
            pd.DataFrame(
                {"trial_id": [7, 8], "mi.weight": [0.01, 0.03], "partition.groups": [4, 5]}
            ),
        ]
    )
    d = study_design(sparse, ["mi.weight", "partition.groups"])
    assert d.kind == "adaptive" and d.continuous == ["mi.weight", "partition.groups"]
    assert "4 of the 16 combinations" in d.reason
    rng = np.random.default_rng(0)
    tpe = pd.DataFrame(
        {
            "trial_id": range(60),
            "mi.weight": 10 ** rng.uniform(-3, 0, 60),
            "partition.groups": rng.integers(2, 5, 60),
        }
    )
    d = study_design(tpe, ["mi.weight", "partition.groups", "not.there"])
    assert d.kind == "adaptive" and d.continuous == ["mi.weight"]
    assert d.levels == {"mi.weight": 60, "partition.groups": 3}


def test_log_scale_rule():
    assert log_scale([0.0, 1e-3, 0.01, 1.0])  # zeros allowed: shown apart
    assert not log_scale([0.1, 0.3, 1.0])  # a factor 10 stays linear
    assert not log_scale([-1e-3, 1e-3, 1.0])
    assert not log_scale([np.nan, 1.0])
    rng = np.random.default_rng(0)
    assert log_scale(10 ** rng.uniform(-3, 0, 60))  # a log-uniform sampler
    assert not log_scale(rng.uniform(0, 1, 60))  # a uniform one, though min/max > 20
    assert log_scale([0.0, 0.01, 0.03, 0.1, 0.3, 1.0])  # a log-spaced grid


def test_response_recovers_a_known_curve_and_keeps_controls_apart():
    rng = np.random.default_rng(1)

    def truth(x):
        return 3.0 + 2.0 * np.log10(x)

    lam = np.r_[np.zeros(4), 10 ** rng.uniform(-3, 0, 56)]
    seeds = _study(rng, lam, lambda x: truth(x) if x > 0 else -10.0)
    info = response_info(seeds, "mi.weight", "functional", n_boot=50)
    assert info.log and info.message == "" and info.column == "final.q_func_z"
    assert info.zero[3] == 4 and info.zero[0] == pytest.approx(-10.0, abs=0.6)
    inner = (info.grid > 2e-3) & (info.grid < 0.5)
    assert np.abs(info.fit[inner] - truth(info.grid[inner])).max() < 0.35
    assert info.n_seeds == 240 and len(info.points) == 60


def test_response_band_covers_the_truth_at_its_level():
    # pointwise coverage of the 95 % band, averaged over the grid and 12 synthetic studies
    def truth(x):
        return 3.0 + 2.0 * np.log10(x)

    rng = np.random.default_rng(11)
    cover = []
    for _ in range(12):
        info = response_info(
            _study(rng, 10 ** rng.uniform(-3, 0, 56), truth),
            "mi.weight",
            "functional",
            n_boot=100,
            rng=rng,
        )
        inner = (info.grid > 2e-3) & (info.grid < 0.5)
        t = truth(info.grid[inner])
        cover.append(((info.lo[inner] <= t) & (t <= info.hi[inner])).mean())
    assert 0.85 <= np.mean(cover) <= 1.0


def test_response_band_counts_trials_not_seeds():
    # copying every seed ten times changes no trial mean, so the band must not shrink
    rng = np.random.default_rng(2)
    seeds = _study(rng, 10 ** rng.uniform(-3, 0, 30), lambda x: np.log10(x), trial_sd=1.0)
    many = pd.concat([seeds.assign(seed=seeds["seed"] + 10 * k) for k in range(10)])
    a = response_info(seeds, "mi.weight", "functional", rng=np.random.default_rng(5))
    b = response_info(many, "mi.weight", "functional", rng=np.random.default_rng(5))
    np.testing.assert_allclose(a.hi - a.lo, b.hi - b.lo)


def test_response_without_enough_values_or_data():
    rng = np.random.default_rng(3)
    seeds = _study(rng, [0.1, 0.3, 1.0], lambda x: x)
    info = response_info(seeds, "mi.weight", "functional")
    assert len(info.grid) == 0 and "3 distinct value(s)" in info.message
    info = response_info(seeds, "mi.weight", "mi")  # no held-out MI columns
    assert info.message.endswith("no seed has a value.") and info.points.empty
    with pytest.raises(ValueError, match="key 'optim.lr' must be a column of seeds"):
        response_info(seeds, "optim.lr", "functional")


def test_onset_response_counts_only_emerged_seeds():
    rng = np.random.default_rng(4)
    seeds = _study(
        rng,
        10 ** rng.uniform(-3, 0, 20),
        lambda x: x,
        extra=lambda t, x, r: {"t_func": 100.0 - 50 * x if r.random() < 0.75 else np.nan},
    )
    info = response_info(seeds, "mi.weight", "t_func", n_boot=50)
    assert info.n_seeds == 80 and info.n_defined == int(seeds["t_func"].notna().sum())


def test_limit_recovers_the_intercept_without_a_control_cell():
    rng = np.random.default_rng(5)
    seeds = _study(rng, 10 ** rng.uniform(-3, 0, 40), lambda x: 2.0 + 3.0 * x)
    lim = limit_info(seeds, "functional")
    assert lim.lo < 2.0 < lim.hi and abs(lim.estimate - 2.0) < 0.3
    assert lim.n_trials == 12 and np.isnan(lim.observed) and lim.n_observed == 0
    assert "t-interval" in lim.method and lim.message == ""


def test_limit_interval_covers_at_its_level():
    # 150 synthetic studies of 12 trials (a window of 4): a 95 % interval covers ~95 %
    rng = np.random.default_rng(6)
    hits = []
    for _ in range(150):
        lim = limit_info(
            _study(rng, 10 ** rng.uniform(-3, 0, 12), lambda x: 2.0 + 3.0 * x), "functional"
        )
        hits.append(lim.lo <= 2.0 <= lim.hi)
    assert 0.88 <= np.mean(hits) <= 0.995


def test_limit_checks_against_an_observed_control_and_refuses_too_few_trials():
    rng = np.random.default_rng(7)
    seeds = _study(rng, np.r_[np.zeros(6), 10 ** rng.uniform(-3, -1, 20)], lambda x: 5.0 - 10 * x)
    lim = limit_info(seeds, "functional")
    assert lim.n_observed == 6 and abs(lim.observed - 5.0) < 0.5
    assert lim.lo < lim.observed < lim.hi
    few = limit_info(_study(rng, [0.0, 0.1, 0.3], lambda x: x), "functional")
    assert np.isnan(few.estimate) and "got 2 at 2" in few.message


def test_bins_are_declared():
    lam = np.r_[0.0, 0.0, 10 ** np.linspace(-3, 0, 9)]
    b = bin_key(lam, "mi.weight", n_bins=3)
    assert b.method == "log" and b.zero_apart
    np.testing.assert_allclose(b.edges, [1e-3, 1e-2, 1e-1, 1.0])
    assert b.labels == ["0", "[0.001, 0.01)", "[0.01, 0.1)", "[0.1, 1]"]
    assert "3 log-spaced bins" in b.statement and "λ = 0 is its own cell" in b.statement
    got = assign_bins(lam, b).tolist()
    assert got[:2] == ["0", "0"] and got[-1] == "[0.1, 1]" and got.count("[0.01, 0.1)") == 3
    q = bin_key(np.arange(1.0, 13.0), "optim.lr", method="quantile", n_bins=4)
    assert assign_bins(np.arange(1.0, 13.0), q).value_counts().tolist() == [3, 3, 3, 3]
    assert "equal-count" in q.statement and not q.zero_apart
    assert assign_bins([np.nan, 99.0], q).tolist() == [None, None]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "cubic"}, "method must be one of auto, log, linear, quantile"),
        ({"n_bins": 0}, "n_bins must be >= 1"),
    ],
)
def test_bin_key_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bin_key([0.1, 1.0], "mi.weight", **kwargs)


def test_binned_claims_judge_each_bin_against_the_limit():
    # functional z rises by 8 only above λ = 0.1; accuracy drops by 0.1 only above λ = 0.3
    rng = np.random.default_rng(8)
    lam = np.r_[np.zeros(3), 10 ** np.linspace(-3, 0, 48)]

    def acc(t, x, r):
        return {
            "final.accuracy": 0.95 - (0.1 if x > 0.3 else 0.0) + r.normal(0, 0.003),
            "final.q_struct_z": r.normal(0, 0.3),
        }

    seeds = _study(rng, lam, lambda x: 1.0 + (8.0 if x > 0.1 else 0.0), extra=acc)
    b = bin_key(seeds.drop_duplicates("trial_id")["mi.weight"], "mi.weight", n_bins=3)
    table = binned_claims(seeds, b).set_index(["mi.weight", "claim"])
    assert "0" not in table.index.get_level_values(0)  # the control has no claim
    assert table.loc[("[0.001, 0.01)", "functional"), "verdict"] == "inconclusive"
    assert table.loc[("[0.1, 1]", "functional"), "verdict"] == "holds"
    assert table.loc[("[0.001, 0.01)", "accuracy"), "verdict"] == "holds"
    assert table.loc[("[0.1, 1]", "accuracy"), "verdict"] == "breaks"
    assert table.loc[("[0.1, 1]", "structural"), "verdict"] == "inconclusive"
    assert table["level"].max() == pytest.approx(1 - 0.05 / 3)
    info = matrix_info(table.reset_index())  # its statistics are not taken for cell keys
    assert info.cells == ["λ=[0.001, 0.01)", "λ=[0.01, 0.1)", "λ=[0.1, 1]"]


def test_contour_interpolates_a_plane_exactly_inside_the_hull():
    rng = np.random.default_rng(9)
    n = 40
    x, y = 10 ** rng.uniform(-3, 0, n), rng.uniform(1e-3, 5e-3, n)
    seeds = pd.DataFrame(
        {
            "trial_id": np.arange(n),
            "mi.weight": x,
            "optim.lr": y,
            "final.q_func_z": np.log10(x) + 1000 * y,
        }
    )
    seeds = pd.concat(
        [
            seeds,
            pd.DataFrame(
                {"trial_id": [n], "mi.weight": [0.0], "optim.lr": [2e-3], "final.q_func_z": [0.0]}
            ),
        ]
    )
    c = contour_info(seeds, "mi.weight", "optim.lr", "functional")
    assert c.x_log and not c.y_log and c.n_left_out == 1 and c.message == ""
    gx, gy = np.meshgrid(c.gx, c.gy)
    ok = np.isfinite(c.gz)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(c.gz[ok], (np.log10(gx) + 1000 * gy)[ok], atol=1e-9)
    two = contour_info(seeds.iloc[:2], "mi.weight", "optim.lr", "functional")
    assert two.gz.size == 0 and "got 2" in two.message


def test_figures_render():
    rng = np.random.default_rng(10)
    seeds = _study(
        rng,
        np.r_[np.zeros(3), 10 ** rng.uniform(-3, 0, 20)],
        lambda x: x,
        extra=lambda t, x, r: {"optim.lr": r.uniform(1e-3, 5e-3)},
    )
    infos = [response_info(seeds, "mi.weight", m, n_boot=20) for m in ("functional", "mi")]
    fig = plot_response(infos, {"functional": limit_info(seeds, "functional")})
    assert to_png(fig)[:4] == b"\x89PNG"
    assert to_png(plot_response([]))[:4] == b"\x89PNG"
    c = contour_info(seeds, "mi.weight", "optim.lr", "functional")
    assert to_png(plot_contour(c))[:4] == b"\x89PNG"
