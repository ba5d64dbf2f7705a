"""study/contract/outcomes.py on irregularly spaced evaluations (a dense start, then a sparse
cadence): onsets, censoring, left-censoring, the tie rule of which_first, the half-rise and
seed_table, against hand-worked answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from study.contract.outcomes import half_rise, onset, seed_table, which_first

# every epoch up to 10, then every 25: 0..10, 25, 50, ..., 200
EPOCHS = np.array([*range(11), *range(25, 201, 25)], dtype=float)


def _z(values: dict[float, float], default: float = 0.0) -> np.ndarray:
    return np.array([values.get(e, default) for e in EPOCHS])


def test_onset_counts_evaluations_on_irregular_epochs():
    # >= 3 at 9, 10, 25: three consecutive evaluations spanning the switch of spacing
    z = _z({9: 4, 10: 4, 25: 4, 50: 1})
    o = onset(EPOCHS, z, threshold=3, run=3)
    assert (o.epoch, o.index, o.emerged, o.left) == (9.0, 9, True, False)
    # only the sparse part: three evaluations from 100 on
    late = _z({e: 5 for e in (100, 125, 150, 175, 200)})
    assert onset(EPOCHS, late).epoch == 100.0
    # censored at the last start from which 3 evaluations were observed: 150 (150, 175, 200)
    none = onset(EPOCHS, _z({}))
    assert not none.emerged and none.censor == 150.0 and not none.left


@pytest.mark.parametrize(
    "epochs, z, left",
    [
        (EPOCHS, _z({e: 5 for e in EPOCHS}), True),  # present at epoch 0: "<= 0"
        (EPOCHS, _z({e: 5 for e in EPOCHS if e >= 1}), True),  # first trained evaluation
        (EPOCHS, _z({e: 5 for e in EPOCHS if e >= 2}), False),  # epoch 1 observed below
        (EPOCHS, np.where(EPOCHS == 0, np.nan, _z({e: 5 for e in EPOCHS if e >= 1})), True),
        # ΔW metrics are NaN at epoch 0 and at the first evaluations that observed nothing
        (EPOCHS, np.where(EPOCHS < 3, np.nan, 5.0), True),
        # a curve starting after epoch 0 (a fork): its first evaluation bounds nothing below
        (EPOCHS[EPOCHS >= 50], np.full((EPOCHS >= 50).sum(), 5.0), True),
        (EPOCHS[EPOCHS >= 50], np.r_[0.0, np.full((EPOCHS >= 50).sum() - 1, 5.0)], False),
    ],
)
def test_an_onset_at_the_first_trained_evaluation_is_left_censored(epochs, z, left):
    o = onset(epochs, z)
    assert o.emerged and o.left is left


def test_which_first_ties_by_evaluations_not_by_a_typical_spacing():
    # onsets at epochs 2 and 8 are six evaluations apart in the dense phase: function first
    # (a median spacing of 25 epochs would call them a tie)
    of = onset(EPOCHS, _z({e: 5 for e in EPOCHS if e >= 2}))
    os_ = onset(EPOCHS, _z({e: 5 for e in EPOCHS if e >= 8}))
    assert which_first(of, os_) == "function"
    # onsets at 100 and 125 are adjacent evaluations: a tie (25 epochs, one evaluation)
    of = onset(EPOCHS, _z({e: 5 for e in EPOCHS if e >= 100}))
    os_ = onset(EPOCHS, _z({e: 5 for e in EPOCHS if e >= 125}))
    assert which_first(of, os_) == "tie" and which_first(os_, of) == "tie"
    os_ = onset(EPOCHS, _z({e: 5 for e in EPOCHS if e >= 150}))
    assert which_first(of, os_) == "function" and which_first(os_, of) == "structure"


def test_the_index_rule_equals_the_epoch_rule_on_a_regular_grid():
    rng = np.random.default_rng(0)
    t = np.arange(0, 401, 25, dtype=float)
    for _ in range(300):
        a = onset(t, rng.normal(2.5, 1.5, t.size))
        b = onset(t, rng.normal(2.5, 1.5, t.size))
        assert which_first(a, b) == which_first(a, b, 25.0)


def test_which_first_needs_step_for_onsets_without_indices():
    from study.contract.outcomes import Onset

    a, b = Onset(25.0, True, 100.0, -1), Onset(75.0, True, 100.0, -1)
    assert which_first(a, b, 25.0) == "function"
    with pytest.raises(ValueError, match=r"need step, but got step=None"):
        which_first(a, b)


def test_half_rise_on_irregular_epochs():
    # from 0 to 10 (the mean of the last 3 values): half is 5, first reached at epoch 50
    x = np.interp(EPOCHS, [0, 50, 200], [0, 5, 10])
    x[-3:] = 10.0
    assert half_rise(EPOCHS, x) == 50.0


def test_seed_table_on_irregular_curves_writes_left_censoring_and_index_ties():
    rows = []
    func = {0: _z({e: 5 for e in EPOCHS if e >= 1}), 1: _z({e: 5 for e in EPOCHS if e >= 100})}
    struct = {0: _z({e: 5 for e in EPOCHS if e >= 8}), 1: _z({e: 5 for e in EPOCHS if e >= 125})}
    for seed in (0, 1):
        for i, e in enumerate(EPOCHS):
            rows.append(
                {
                    "seed": seed,
                    "epoch": e,
                    "accuracy": 0.95,
                    "q_func": 0.1 * func[seed][i],
                    "q_struct": 0.1 * struct[seed][i],
                    "q_func_z": func[seed][i],
                    "q_struct_z": struct[seed][i],
                }
            )
    seeds = seed_table(pd.DataFrame(rows), task="working_memory")
    assert seeds["t_func"].tolist() == [1.0, 100.0]
    assert seeds["t_func_left"].tolist() == [True, False]
    assert seeds["t_struct_left"].tolist() == [False, False]
    assert seeds["first"].tolist() == ["function", "tie"]
    assert math.isclose(seeds.loc[0, "lag"], 7.0)


def test_a_sparse_metric_s_final_never_reaches_back_to_the_start_of_training():
    from study.contract.outcomes import final_value

    epochs = np.arange(0, 101, 5, dtype=float)  # 21 evaluations
    heldout = np.full(epochs.size, np.nan)
    heldout[[0, 10, 20]] = [4.0, 1.0, 0.1]  # measured at epochs 0, 50, 100 only
    # without epochs (the last 3 finite values) the untrained network at epoch 0 is averaged in
    assert final_value(heldout) == pytest.approx((4.0 + 1.0 + 0.1) / 3)
    assert final_value(heldout, 3, epochs) == pytest.approx((1.0 + 0.1) / 2)  # epochs 50, 100
    dense = np.linspace(0.0, 2.0, epochs.size)  # measured at every evaluation: the last 3
    assert final_value(dense, 3, epochs) == pytest.approx(dense[-3:].mean())
    early = np.full(epochs.size, np.nan)
    early[[0, 4]] = [3.0, 2.0]  # epochs 0 and 20 only: no final value
    assert math.isnan(final_value(early, 3, epochs))
