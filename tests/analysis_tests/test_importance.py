"""analysis.importance: Optuna's evaluators on synthetic studies whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.figures import to_png
from analysis.importance import (
    EVALUATORS,
    importance_info,
    parallel_info,
    plot_importance,
    plot_parallel,
)

PARAMS = ["mi.weight", "partition.groups", "optim.lr", "network.cell"]


def _study(rng, n_trials=40, seeds=3):
    """q_func_z depends only on λ (A); K, lr and the cell type are noise."""
    rows = []
    for t in range(n_trials):
        lam, k = 10 ** rng.uniform(-3, 0), int(rng.integers(2, 5))
        lr, cell = rng.uniform(1e-3, 5e-3), str(rng.choice(["gru", "rnn"]))
        for s in range(seeds):
            rows.append(
                {
                    "trial_id": f"t{t}",
                    "seed": s,
                    "mi.weight": lam,
                    "partition.groups": k,
                    "optim.lr": lr,
                    "network.cell": cell,
                    "final.q_func_z": 3 * np.log10(lam) + rng.normal(0, 0.3),
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("evaluator", list(EVALUATORS))
def test_the_only_key_that_matters_dominates(evaluator):
    info = importance_info(
        _study(np.random.default_rng(0)), PARAMS, "functional", evaluator=evaluator, n_repeats=4
    )
    tab = info.table.set_index("param")
    assert info.evaluator_name == EVALUATORS[evaluator] and info.n_trials == 40
    assert info.column == "final.q_func_z" and info.dropped == []
    assert tab.index[0] == "mi.weight" and tab.loc["mi.weight", "importance"] > 0.8
    others = tab.drop(index="mi.weight")
    assert (others["q95"] < tab.loc["mi.weight", "q05"]).all()
    assert tab["importance"].sum() == pytest.approx(1.0)
    assert (tab["n_repeats"] == 4).all() and (tab["sd"] >= 0).all()


@pytest.mark.parametrize("n_trials", [0, 1])
def test_empty_or_one_trial_gives_a_message(n_trials):
    seeds = _study(np.random.default_rng(1), n_trials=max(n_trials, 1)).iloc[: 3 * n_trials]
    info = importance_info(seeds, PARAMS, "functional")
    assert info.table.empty and info.n_trials == n_trials
    assert info.message == (
        f"No importance for final.q_func_z: {n_trials} trial"
        f"{'' if n_trials == 1 else 's'} with a finite final.q_func_z, "
        "importance needs at least 4."
    )
    assert to_png(plot_importance([info]))[:4] == b"\x89PNG"


def test_constant_keys_are_dropped_and_missing_objective_is_said():
    seeds = _study(np.random.default_rng(2)).assign(**{"partition.groups": 3})
    info = importance_info(seeds, PARAMS, "functional", evaluator="ped_anova", n_repeats=1)
    assert info.dropped == ["partition.groups"]
    assert "partition.groups" not in set(info.table["param"])
    assert info.table["sd"].isna().all()  # one repeat: no spread
    none = importance_info(seeds, PARAMS, "t_func")
    assert none.table.empty and "0 trials with a finite t_func" in none.message
    flat = importance_info(seeds.assign(**{p: 1.0 for p in PARAMS}), PARAMS, "functional")
    assert flat.message.endswith("no swept key takes two values among the trials.")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"evaluator": "shap"}, "evaluator must be one of fanova, ped_anova, but got 'shap'"),
        ({"direction": "up"}, "direction must be 'maximize' or 'minimize', but got 'up'"),
        ({"n_repeats": 0}, "n_repeats must be >= 1, but got 0"),
    ],
)
def test_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        importance_info(pd.DataFrame(), PARAMS, "functional", **kwargs)


def test_optuna_logging_is_left_as_it_was():
    import optuna

    before = optuna.logging.get_verbosity()
    importance_info(
        _study(np.random.default_rng(3), n_trials=8), PARAMS, "functional", n_repeats=1
    )
    assert optuna.logging.get_verbosity() == before


def test_parallel_coordinates_scale_every_axis():
    seeds = _study(np.random.default_rng(4))
    seeds.loc[seeds["trial_id"] == "t0", "mi.weight"] = 0.0  # a control on the log axis
    info = parallel_info(seeds, PARAMS, "functional")
    assert info.axes == [*PARAMS, "final.q_func_z"]
    assert info.log == [True, False, False, False, False]
    assert info.values.shape == (40, 5)
    body = np.delete(info.values, 0, axis=0)
    assert body.min() >= 0.0 and body.max() <= 1.0
    assert info.values[0, 0] == pytest.approx(-0.08)  # λ = 0 drawn under the axis
    pos, labels = info.ticks[0]
    assert labels[0] == "0" and pos[0] == pytest.approx(-0.08)
    assert info.ticks[3] == ([0.0, 1.0], ["gru", "rnn"])
    assert to_png(plot_parallel(info))[:4] == b"\x89PNG"
    empty = parallel_info(seeds.iloc[0:0], PARAMS, "functional")
    assert empty.message and to_png(plot_parallel(empty))[:4] == b"\x89PNG"


def test_importance_figure_names_both_evaluators():
    seeds = _study(np.random.default_rng(5), n_trials=12)
    infos = [
        importance_info(seeds, PARAMS, "functional", evaluator=e, n_repeats=2) for e in EVALUATORS
    ]
    fig = plot_importance(infos)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == list(EVALUATORS.values())
    assert to_png(fig)[:4] == b"\x89PNG"


def test_a_metric_without_variance_gives_a_message_not_an_error():
    # 8 arms of one study: the keys vary, the final q_func_z is the same in every trial
    # (fANOVA raises "zero total variance in all trees" on such a study)
    seeds = _study(np.random.default_rng(3), n_trials=8).assign(**{"final.q_func_z": 1.5})
    info = importance_info(seeds, PARAMS, "functional", evaluator="fanova", n_repeats=3)
    assert info.table.empty
    assert info.message == (
        "No importance for final.q_func_z: it does not vary over the trials' keys "
        "(zero total variance)."
    )
