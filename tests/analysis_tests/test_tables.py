"""analysis.tables: display formatting of machine tables (known values and properties)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from analysis.claims import claims_table
from analysis.tables import (
    EMPTY,
    MAX_DECIMALS,
    display_name,
    display_table,
    format_number,
    format_p,
    is_p_column,
)


@pytest.mark.parametrize(
    "p, shown",
    [
        (0.0123, "0.012"),
        (0.05, "0.05"),
        (0.0012, "0.0012"),
        (0.00099, "< 0.001"),
        (4.7e-10, "< 0.001"),
        (1.0, "1"),
        (0.5, "0.5"),
        (math.nan, EMPTY),
        (None, EMPTY),
    ],
)
def test_format_p_two_significant_figures(p, shown):
    assert format_p(p) == shown


@pytest.mark.parametrize(
    "v, shown",
    [
        (-0.006431, "-0.0064"),  # 3 s.f. would need 5 decimals: capped at 4
        (0.007812, "0.0078"),
        (0.123456, "0.123"),
        (12.3456, "12.3"),
        (12345.6, "12346"),
        (7, "7"),
        (np.int64(-1), "-1"),
        (25.0, "25"),
        (0.0, "0"),
        (-2e-7, "0"),
        (math.inf, EMPTY),
        (-math.inf, EMPTY),
        (True, "yes"),
        (np.bool_(False), "no"),
    ],
)
def test_format_number_three_significant_figures_at_most_four_decimals(v, shown):
    assert format_number(v) == shown


def test_p_columns_are_recognised_by_name():
    assert all(map(is_p_column, ["p", "p_bh", "p_sign_bh", "p_tost", "wald_p"]))
    assert not any(map(is_p_column, ["power", "pairs", "n_p", "effect", "lag"]))


def test_display_table_on_a_real_claims_table():
    # the claims table of a two-cell study: n_success is missing on every non-accuracy row
    rng = np.random.default_rng(0)
    rows = []
    for k in (2, 3):
        for lam in (0.0, 0.1):
            for i in range(8):
                rows.append(
                    {
                        "partition.groups": k,
                        "mi.weight": lam,
                        "seed_value": i,
                        "final.q_func_z": rng.normal() + 10 * lam,
                        "final.q_struct_z": rng.normal(),
                        "final.accuracy": 0.95,
                        "final.mi_heldout": 0.5 - lam,
                        "final.mi_heldout_null": 0.0,
                    }
                )
    table = claims_table(pd.DataFrame(rows), ["mi.weight", "partition.groups"])
    shown = display_table(table)
    assert list(shown.columns[:5]) == ["K", "λ", "claim", "test", "pairs"]
    assert "seeds in expected direction" in shown.columns and "p (BH)" in shown.columns
    succ = shown["treated seeds succeeding"]
    assert (succ[table["claim"] != "accuracy"] == EMPTY).all()
    assert (succ[table["claim"] == "accuracy"] == "8").all()
    decimals = re.compile(r"\.(\d+)")
    for cell in shown.to_numpy().ravel():
        assert isinstance(cell, str) and "-1" != cell and "nan" not in cell.lower()
        m = decimals.search(cell)
        assert m is None or len(m.group(1)) <= MAX_DECIMALS, cell
    # the machine table is untouched
    assert table.loc[table["claim"] != "accuracy", "n_success"].isna().all()


def test_display_table_shows_left_censored_onsets_as_bounds():
    df = pd.DataFrame({"t_func": [25.0, 50.0, np.nan, 1.0], "lag": [25.0, 25.0, 0.0, 1.0]})
    shown = display_table(df, left_censored={"t_func": 25.0})
    assert shown["functional onset (epoch)"].tolist() == ["≤ 25", "50", EMPTY, "≤ 1"]
    assert shown["lag (epochs)"].tolist() == ["25", "25", "0", "1"]  # not an onset column
    # per-row first evaluations (irregular schedules): 1 is the first of the last row only
    per_row = display_table(df, left_censored={"t_func": [0.0, 0.0, 0.0, 1.0]})
    assert per_row["functional onset (epoch)"].tolist() == ["25", "50", EMPTY, "≤ 1"]


def test_display_table_names_fallback_and_collisions():
    df = pd.DataFrame({"final.q_func_z": [1.23456], "my_col": ["text"], "n": [3], "pairs": [2]})
    shown = display_table(df)
    assert list(shown.columns) == ["final q func z", "my col", "pairs [n]", "pairs [pairs]"]
    assert shown.iloc[0].tolist() == ["1.23", "text", "3", "2"]
    assert display_name("mi.weight") == "λ" and display_name("x", {"x": "X"}) == "X"


def test_display_table_missing_values_and_empty_frame():
    df = pd.DataFrame({"p_bh": [np.nan, 0.2], "lag": [pd.NA, 3.0]})
    assert display_table(df).to_numpy().tolist() == [[EMPTY, EMPTY], ["0.2", "3"]]
    assert display_table(pd.DataFrame()).empty


def test_display_table_rejects_non_frames():
    with pytest.raises(TypeError, match="df must be a pandas DataFrame, but got list"):
        display_table([1, 2])
