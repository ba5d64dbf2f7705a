"""analysis.matrix: the claims × cells verdict matrix, on tables with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.claims import claims_table
from analysis.figures import to_png
from analysis.matrix import (
    NOT_MEASURED,
    _panels,
    cell_label,
    facets,
    matrix_info,
    plot_matrix,
    timing_colour,
)


def _claims(cells, verdict):
    """A claims-like table: one row per (cell, claim) with verdict(cell, claim)."""
    return pd.DataFrame(
        [
            {
                **cell,
                "claim": c,
                "n": 8,
                "p": 0.01,
                "p_bh": 0.02,
                "n_success": -1,
                "verdict": verdict(cell, c),
            }
            for cell in cells
            for c in ("accuracy", "functional")
        ]
    )


def test_cell_label_reads_like_the_design():
    assert cell_label({"mi.weight": 0.1, "partition.groups": 2}) == "λ=0.1 · K=2"
    assert (
        cell_label({"partition.groups": 3.0, "mi.weight": 1e-3}, ["mi.weight", "partition.groups"])
        == "λ=0.001 · K=3"
    )
    assert (
        cell_label({"mi.weight": "[0.01, 0.1)", "optim.reg_rec": 0.01})
        == "λ=[0.01, 0.1) · reg_rec=0.01"
    )
    assert cell_label({}) == "all"


def test_matrix_of_a_real_claims_table():
    # K = 2: q_func_z rises by 10 under the penalty (holds); K = 3: accuracy collapses (breaks)
    rng = np.random.default_rng(1)
    rows = []
    for k in (2, 3):
        for lam in (0.0, 0.1):
            for i in range(8):
                rows.append(
                    {
                        "partition.groups": k,
                        "mi.weight": lam,
                        "seed_value": i,
                        "final.q_func_z": rng.normal() + (10 if lam and k == 2 else 0),
                        "final.q_struct_z": rng.normal(),
                        "final.accuracy": 0.3 if (lam and k == 3) else 0.95,
                    }
                )
    table = claims_table(pd.DataFrame(rows), ["mi.weight", "partition.groups"])
    info = matrix_info(table)
    assert info.keys == ["mi.weight", "partition.groups"]
    assert info.cells == ["λ=0.1 · K=2", "λ=0.1 · K=3"]
    acc = info.claims.index("Accuracy kept")
    func = info.claims.index("Functional modularity")
    assert info.verdicts[acc].tolist() == ["holds", "breaks"]
    assert info.verdicts[func, 0] == "holds"
    assert info.verdicts[info.claims.index("MI lowered")].tolist() == [NOT_MEASURED] * 2
    assert info.sentences[acc] == "Accuracy kept: holds in 1 of 2 cells; breaks in λ=0.1 · K=3."
    assert info.timing == [NOT_MEASURED, NOT_MEASURED]


def test_sentence_counts_and_names_the_rare_verdicts():
    cells = [{"mi.weight": lam, "partition.groups": k} for lam in (0.1, 0.3) for k in range(6)]
    info = matrix_info(
        _claims(
            cells,
            lambda cell, c: (
                "breaks"
                if (c == "accuracy" and cell["mi.weight"] == 0.3 and cell["partition.groups"] == 3)
                else "holds"
            ),
        )
    )
    assert info.sentences[0] == "Accuracy kept: holds in 11 of 12 cells; breaks in λ=0.3 · K=3."
    assert info.sentences[1] == "Functional modularity: holds in 12 of 12 cells."
    assert len(info.sentences) == 2  # no timing table: no timing sentence


@pytest.mark.parametrize("form", ["keys", "mapping", "label"])
def test_timing_is_matched_to_cells_in_every_accepted_form(form):
    cells = [{"mi.weight": lam, "partition.groups": k} for lam in (0.1, 0.3) for k in (2, 3)]
    claims = _claims(cells, lambda cell, c: "holds")
    said = {
        (0.1, 2): "function first",
        (0.3, 2): "inconclusive (power)",
        (0.1, 3): "co-emergent",
        (0.0, 2): "structure never emerged",
    }
    rows = []
    for (lam, k), v in said.items():
        cell = {"mi.weight": lam, "partition.groups": k}
        if form == "keys":
            rows.append({**cell, "verdict": v, "n_seeds": 8})
        elif form == "mapping":
            rows.append({"cell": cell, "verdict": v})
        else:
            rows.append(
                {"cell": cell_label(cell, ["mi.weight", "partition.groups"]), "verdict": v}
            )
    info = matrix_info(claims, pd.DataFrame(rows), keys=["mi.weight", "partition.groups"])
    got = dict(zip(info.cells, info.timing))
    assert got == {
        "λ=0 · K=2": "structure never emerged",
        "λ=0.1 · K=2": "function first",
        "λ=0.3 · K=2": "inconclusive (power)",
        "λ=0.1 · K=3": "co-emergent",
        "λ=0.3 · K=3": NOT_MEASURED,
    }
    # the λ = 0 control cell exists only in the timing table: its claims are not measured;
    # it sorts first when its key values are known (a bare label sorts last)
    control = info.cells.index("λ=0 · K=2")
    assert control == (len(info.cells) - 1 if form == "label" else 0)
    assert (info.verdicts[:, control] == NOT_MEASURED).all()
    # the treated cells' timing, then the controls' apart
    assert info.sentences[-2] == (
        "Timing: function first in 1 of 3 cells; inconclusive "
        "(power) in λ=0.3 · K=2; co-emergent in λ=0.1 · K=3 "
        "(1 not measured)."
    )
    assert info.sentences[-1] == (
        "Timing at λ = 0 (controls: any order there is a false "
        "one): structure never emerged in 1 of 1 cell."
    )
    labels = [lab for lab, _, _ in info.legend]
    assert labels.index("timing: function first") < labels.index("timing: co-emergent")


def test_one_timing_row_per_ordering_of_a_wide_timing_table():
    # the seam's table: verdict (first ordering) and verdict.<struct> for each ordering; ΔW
    # measured in one cell only
    cells = [{"mi.weight": lam} for lam in (0.0, 0.1, 0.3)]
    claims = _claims(cells[1:], lambda cell, c: "holds")
    timing = pd.DataFrame(
        {
            "mi.weight": [0.0, 0.1, 0.3],
            "verdict": ["neither emerged", "inconclusive (power)", "function first"],
            "verdict.q_struct_z": ["neither emerged", "inconclusive (power)", "function first"],
            "verdict.dw_block_z": [np.nan, "co-emergent", np.nan],
        }
    )
    info = matrix_info(claims, timing, keys=["mi.weight"])
    q, dw = "Timing, function vs Q(|W|)", "Timing, function vs ΔW"
    assert [t for t, _ in info.timing_rows] == [q, dw] and info.timing_titles == [q, dw]
    assert dict(info.timing_rows)[dw] == (NOT_MEASURED, "co-emergent", NOT_MEASURED)
    assert info.timing == list(dict(info.timing_rows)[q])  # the first row, as before
    assert f"{q}: inconclusive (power) in 1 of 2 cells; function first in λ=0.3." in (
        info.sentences
    )
    assert f"{dw}: co-emergent in 1 of 1 cell (1 not measured)." in info.sentences
    assert f"{q} at λ = 0 (controls: any order there is a false one): neither emerged in " in (
        " ".join(info.sentences)
    )
    fig = plot_matrix(info)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[-2:] == [q, dw]


def test_timing_colour_by_family():
    assert timing_colour("inconclusive (power: lead >= 3)") != timing_colour("inconclusive")
    assert timing_colour("structure never emerged (3 of 8)") == timing_colour(
        "structure never emerged"
    )
    assert timing_colour("Function first")[1] == "F"
    assert timing_colour("something new")[1] == "·"


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="claims must have columns 'claim' and 'verdict'"):
        matrix_info(pd.DataFrame({"mi.weight": [0.1]}))
    cells = [{"mi.weight": 0.1}, {"mi.weight": 0.1}]
    with pytest.raises(ValueError, match=r"\(λ=0.1, accuracy\) repeats"):
        matrix_info(_claims(cells, lambda cell, c: "holds"))
    with pytest.raises(ValueError, match="timing must have a 'verdict' column"):
        matrix_info(
            _claims(cells[:1], lambda cell, c: "holds"), pd.DataFrame({"mi.weight": [0.1]})
        )
    finer = pd.DataFrame(
        {
            "mi.weight": [0.1, 0.1],
            "network.hidden": [24, 48],
            "verdict": ["function first", "inconclusive"],
        }
    )
    with pytest.raises(ValueError, match="λ=0.1 has several"):
        matrix_info(_claims(cells[:1], lambda cell, c: "holds"), finer)


def test_empty_inputs_give_an_empty_matrix_and_a_message_figure():
    info = matrix_info(pd.DataFrame())
    assert info.cells == [] and info.claims == [] and info.sentences == []
    assert to_png(plot_matrix(info))[:4] == b"\x89PNG"


def test_sixty_cells_wrap_into_facet_panels():
    cells = [
        {"mi.weight": lam, "partition.groups": k, "network.hidden": n}
        for lam in (0.01, 0.03, 0.1, 0.3, 1.0)
        for k in (2, 3, 4)
        for n in (24, 48, 96, 200)
    ]
    info = matrix_info(_claims(cells, lambda cell, c: "holds"))
    assert len(info.cells) == 60
    groups, ticks = facets(info)
    assert groups[:6] == ["K=2 · N=24"] * 5 + ["K=2 · N=48"]
    assert ticks[:5] == ["λ=0.01", "λ=0.03", "λ=0.1", "λ=0.3", "λ=1"]
    panels = _panels(groups, 24)
    assert len(panels) == 3 and all(len(p) <= 24 for p in panels)
    assert sorted(i for p in panels for i in p if i is not None) == list(range(60))
    fig = plot_matrix(info)
    w, h = fig.get_size_inches() * fig.dpi
    assert w <= 1100 and h <= 1100  # small enough to embed as PNG
    assert to_png(fig)[:4] == b"\x89PNG"


def test_a_facet_wider_than_a_panel_is_split():
    assert _panels(["a"] * 30, 24) == [list(range(24)), list(range(24, 30))]
    assert _panels(["a"] * 3 + ["b"] * 3, 6) == [[0, 1, 2], [3, 4, 5]]
    assert _panels(["a"] * 2 + ["b"] * 3, 6) == [[0, 1, None, 2, 3, 4]]
