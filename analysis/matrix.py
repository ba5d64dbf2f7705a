"""The answer as a picture: claims × cells, each coloured by its verdict, timing beside them.

:func:`matrix_info` joins the claims table (:func:`analysis.claims.claims_table`, or any table
with the cell keys, ``claim`` and ``verdict``) with a timing-verdict table into a
:class:`MatrixInfo`; :func:`plot_matrix` draws it. A cell is one combination of the key values
(a grid point, or a bin of a continuous key, whose label is then the bin's text); its label
reads like ``λ=0.1 · K=2``. Wide matrices wrap into panels of at most ``max_columns`` cells.

A timing table with one ``verdict.<struct>`` column per ordering (the seam's,
:func:`analysis.verdicts.timing_verdicts`) gives one timing row per ordering, titled
``Timing, function vs Q(|W|)``, ``Timing, function vs ΔW``; a bare ``verdict`` column gives one
row, ``Timing``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from analysis.figures import _figure
from study.contract.params import PARAM_GROUPS, PARAM_HIDDEN, PARAM_LR
from study.contract.params import PARAM_MI_WEIGHT as LAMBDA

__all__ = [
    "CLAIM_COLOURS",
    "CLAIM_TITLES",
    "KEY_SYMBOLS",
    "NOT_MEASURED",
    "TIMING_ROW",
    "MatrixInfo",
    "cell_label",
    "facets",
    "matrix_info",
    "plot_matrix",
    "timing_colour",
]

NOT_MEASURED = "not measured"
TIMING_ROW = "Timing"

# Dotted key -> the symbol a cell label uses (λ, K, N); others keep their last part.
KEY_SYMBOLS: Mapping[str, str] = {
    LAMBDA: "λ",
    PARAM_GROUPS: "K",
    PARAM_HIDDEN: "N",
    PARAM_LR: "lr",
}

# Claim name (analysis.claims.CLAIMS) -> row title; unknown claims keep their name.
CLAIM_TITLES: Mapping[str, str] = {
    "accuracy": "Accuracy kept",
    "functional": "Functional modularity",
    "structural": "Structural modularity",
    "mi": "MI lowered",
}

# Claim verdict -> (colour, glyph). The glyph keeps the matrix readable without colour.
CLAIM_COLOURS: Mapping[str, tuple[str, str]] = {
    "holds": ("#1a9850", "✓"),
    "weak": ("#a6d96a", "~"),
    "breaks": ("#d73027", "✗"),
    "inconclusive": ("#bdbdbd", "?"),
    NOT_MEASURED: ("#ffffff", ""),
}
_UNKNOWN = ("#f1b6da", "·")  # a verdict label this module does not know

# Timing verdict family (leading words) -> (colour, glyph); the more specific prefix first.
_TIMING_PREFIXES = (
    ("function first", ("#2c7bb6", "F")),
    ("structure first", ("#e66101", "S")),
    ("co-emergent", ("#8073ac", "=")),
    ("inconclusive (power", ("#e0e0e0", "?")),
    ("inconclusive", ("#bdbdbd", "?")),
    ("structure never", ("#dfc27d", "–")),
    ("function never", ("#dfc27d", "–")),
    ("neither", ("#dfc27d", "–")),
    ("never", ("#dfc27d", "–")),
    ("no seeds", ("#f4cccc", "∅")),
    (NOT_MEASURED, ("#ffffff", "")),
)


def timing_colour(verdict: str) -> tuple[str, str]:
    """(colour, glyph) of a timing verdict; labels are matched by their leading words, so
    ``inconclusive (power)`` or ``structure never emerged (3 of 8)`` get their family's colour."""
    v = str(verdict).strip().lower()
    for prefix, style in _TIMING_PREFIXES:
        if v.startswith(prefix):
            return style
    return _UNKNOWN


class MatrixInfo(NamedTuple):
    """What the verdict matrix draws; arrays have shape (n_rows, n_cells)."""

    keys: list[str]  # the cell keys, in label order
    cells: list[str]  # one label per column, e.g. "λ=0.1 · K=2"
    cell_values: list[dict[str, Any]]  # key -> value of each column
    claims: list[str]  # row titles of the claims (CLAIM_TITLES), in row order
    verdicts: np.ndarray  # (n_claims, n_cells) str: claim verdict or NOT_MEASURED
    timing: list[str]  # one timing verdict per cell (NOT_MEASURED where none): the first row's
    sentences: list[str]  # one per claim, then per timing row over treated cells and controls
    legend: list[tuple[str, str, str]]  # (label, colour, glyph) of each verdict shown
    # every timing row: (title, one verdict per cell), one per ordering the table gives
    timing_rows: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def timing_titles(self) -> list[str]:
        """The titles of the timing rows with at least one measured verdict."""
        rows = self.timing_rows or ((TIMING_ROW, tuple(self.timing)),)
        return [t for t, v in rows if any(x != NOT_MEASURED for x in v)]


def cell_label(values: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """``λ=0.1 · K=2``: each key's symbol (:data:`KEY_SYMBOLS`) and value, in `keys` order.

    Numbers print with ``:g``; other values (bin labels such as ``[0.01, 0.1)``) as text.
    An empty cell (a study with no swept key) reads ``all``.
    """
    keys = list(values) if keys is None else list(keys)
    parts = [f"{_symbol(k)}={_value(values[k])}" for k in keys if k in values]
    return " · ".join(parts) or "all"


def _symbol(key: str) -> str:
    return KEY_SYMBOLS.get(key, str(key).rsplit(".", 1)[-1])


def _value(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, float, np.integer, np.floating)):
        return f"{float(v):g}" if not float(v).is_integer() else f"{int(v)}"
    return str(v)


def matrix_info(
    claims: pd.DataFrame,
    timing: pd.DataFrame | None = None,
    *,
    keys: Sequence[str] | None = None,
    claim_order: Sequence[str] | None = None,
) -> MatrixInfo:
    """Claims × cells verdicts, the timing verdict of each cell, and a sentence per claim.

    Args:
        claims: one row per (cell, claim) with the cell keys, ``claim`` and ``verdict``
            (:func:`analysis.claims.claims_table`; its λ column is a cell key like any other).
        timing: one row per cell with ``verdict`` and either the cell keys as columns, or a
            ``cell`` column holding a key -> value mapping or the cell's :func:`cell_label`;
            with ``verdict.<struct>`` columns, one timing row per ordering (module docstring).
            Cells only in `timing` (such as λ = 0 controls) get NOT_MEASURED claims.
        keys: the cell keys, in label order; default the columns of `claims` that are not
            statistics (λ first).
        claim_order: claim names in row order; default the order of first appearance.

    Returns:
        The :class:`MatrixInfo`; empty inputs give an empty matrix, not an error.

    Raises:
        ValueError: when `claims` lacks ``claim``/``verdict`` or a (cell, claim) repeats.
    """
    claims = claims if claims is not None else pd.DataFrame()
    if len(claims) and not {"claim", "verdict"} <= set(claims.columns):
        raise ValueError(
            f"matrix_info(): claims must have columns 'claim' and 'verdict', but "
            f"it has {sorted(map(str, claims.columns))}."
        )
    keys = list(keys) if keys is not None else _keys(claims, timing)
    labelled = _labelled(claims, keys)
    if len(labelled) and labelled.duplicated(["_cell", "claim"]).any():
        dup = labelled.loc[labelled.duplicated(["_cell", "claim"]), ["_cell", "claim"]].iloc[0]
        raise ValueError(
            f"matrix_info(): each (cell, claim) must appear once, but "
            f"({dup['_cell']}, {dup['claim']}) repeats."
        )
    t_rows = [(title, _timing_cells(timing, keys, col)) for title, col in _orderings(timing)]
    t_cells: dict[str, tuple[dict[str, Any], str]] = {}
    for _, found in t_rows:
        for label, item in found.items():
            t_cells.setdefault(label, item)
    cells, values = _cell_order(labelled, t_cells, keys)
    names = (
        list(claim_order)
        if claim_order is not None
        else list(dict.fromkeys(labelled["claim"]))
        if len(labelled)
        else []
    )
    grid = np.full((len(names), len(cells)), NOT_MEASURED, dtype=object)
    col = {c: i for i, c in enumerate(cells)}
    row = {n: i for i, n in enumerate(names)}
    for r in labelled.to_dict("records"):
        if r["claim"] in row:
            grid[row[r["claim"]], col[r["_cell"]]] = str(r["verdict"])
    rows = [
        (title, [found.get(c, (None, NOT_MEASURED))[1] for c in cells]) for title, found in t_rows
    ]
    timing_row = rows[0][1] if rows else [NOT_MEASURED] * len(cells)
    titles = [CLAIM_TITLES.get(n, n) for n in names]
    # claims are judged in the treated cells only: a control column is not "not measured"
    treated = ~_controls(cells, values)
    shown = [c for c, k in zip(cells, treated) if k]
    sentences = [_sentence(t, grid[i][treated], shown) for i, t in enumerate(titles)]
    if timing is not None and len(t_cells):
        for title, row in rows:
            sentences += _timing_sentences(row, cells, values, title)
    every = [v for _, row in rows for v in row] if timing is not None else []
    return MatrixInfo(
        keys,
        cells,
        values,
        titles,
        grid,
        timing_row,
        sentences,
        _legend(grid, every),
        tuple((title, tuple(row)) for title, row in rows),
    )


def _orderings(timing: pd.DataFrame | None) -> list[tuple[str, str]]:
    """(row title, verdict column) of each timing row: one per ``verdict.<struct>`` column,
    else the ``verdict`` column as :data:`TIMING_ROW`."""
    if timing is None or not len(timing):
        return []
    per = [c for c in timing.columns if str(c).startswith("verdict.")]
    if not per:
        return [(TIMING_ROW, "verdict")]
    from analysis.timing import ordering_label

    return [(f"{TIMING_ROW}, {ordering_label(c.split('.', 1)[1])}", c) for c in per]


# Columns of a claims table that are statistics, not cell keys (analysis.claims.claims_table,
# analysis.response.binned_claims); so are names starting with _STAT_PREFIXES.
_STAT_COLUMNS = {
    "claim",
    "verdict",
    "n",
    "effect",
    "p",
    "limit",
    "level",
    "cell",
    "text",
    "test",
    "margin",
    "why",
}
_STAT_PREFIXES = ("p_", "n_", "median", "ci_", "mean", "worst", "power", "min_")


def _keys(claims: pd.DataFrame, timing: pd.DataFrame | None) -> list[str]:
    """The cell keys: columns of `claims` that are not statistics, λ first."""
    source = claims if len(claims.columns) or timing is None or "cell" in timing else timing
    cols = [
        c
        for c in source.columns
        if c not in _STAT_COLUMNS and not str(c).startswith(_STAT_PREFIXES)
    ]
    return sorted(
        cols,
        key=lambda k: (
            k != LAMBDA,
            list(KEY_SYMBOLS).index(k) if k in KEY_SYMBOLS else len(KEY_SYMBOLS),
        ),
    )


def _labelled(claims: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`claims` with a ``_cell`` label column."""
    if not len(claims):
        return pd.DataFrame(columns=[*keys, "claim", "verdict", "_cell"])
    missing = [k for k in keys if k not in claims.columns]
    if missing:
        raise ValueError(
            f"matrix_info(): the cell keys {missing} must be columns of claims, "
            f"but its columns are {sorted(map(str, claims.columns))}."
        )
    labels = [cell_label({k: r[k] for k in keys}, keys) for r in claims.to_dict("records")]
    return claims.assign(_cell=labels)


def _timing_cells(
    timing: pd.DataFrame | None, keys: list[str], column: str = "verdict"
) -> dict[str, tuple[dict[str, Any], str]]:
    """Cell label -> (key values, timing verdict in `column`) from the timing table's accepted
    forms (a missing verdict of a cell reads NOT_MEASURED)."""
    if timing is None or not len(timing):
        return {}
    if "verdict" not in timing:
        raise ValueError(
            f"matrix_info(): timing must have a 'verdict' column, but it has "
            f"{sorted(map(str, timing.columns))}."
        )
    out: dict[str, tuple[dict[str, Any], str]] = {}
    for r in timing.to_dict("records"):
        cell = r.get("cell")
        if isinstance(cell, Mapping):
            values = {k: cell[k] for k in keys if k in cell}
            label = cell_label(values, keys)
        elif all(k in r for k in keys) and keys:
            values = {k: r[k] for k in keys}
            label = cell_label(values, keys)
        elif cell is not None:
            values, label = {}, str(cell)
        else:
            raise ValueError(
                "matrix_info(): timing rows need a 'cell' column or the cell "
                f"keys {keys} as columns."
            )
        if label in out:
            raise ValueError(
                f"matrix_info(): each cell must have one timing verdict, but "
                f"{label} has several (are the timing cells finer than the "
                f"keys {keys}?)."
            )
        v = r.get(column)
        out[label] = (values, str(v) if isinstance(v, str) else NOT_MEASURED)
    return out


def _cell_order(
    labelled: pd.DataFrame, t_cells: dict, keys: list[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The union of cells, sorted by their key values (numbers numerically)."""
    found: dict[str, dict[str, Any]] = {}
    for r in labelled.to_dict("records"):
        found.setdefault(r["_cell"], {k: r[k] for k in keys})
    for label, (values, _) in t_cells.items():
        found.setdefault(label, values)

    def order(item: tuple[str, dict[str, Any]]) -> tuple:
        label, values = item
        # by the second key, then the third, ..., the first (λ) varying fastest; numbers
        # before text
        return tuple(
            (0, float(values[k]), "")
            if _is_number(values.get(k))
            else (1, math.inf, str(values.get(k, label)))
            for k in [*keys[1:], *keys[:1]]
        ) + ((0, 0.0, label),)

    ordered = sorted(found.items(), key=order)
    return [label for label, _ in ordered], [values for _, values in ordered]


def _is_number(v: Any) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, (bool, np.bool_))
        and math.isfinite(float(v))
    )


def _controls(cells: list[str], values: list[dict[str, Any]]) -> np.ndarray:
    """Which cells are λ = 0 controls (a bare label counts when one of its parts reads
    ``λ=0``)."""
    zero = f"{_symbol(LAMBDA)}=0"
    return np.array(
        [
            float(v[LAMBDA]) == 0 if _is_number(v.get(LAMBDA)) else zero in c.split(" · ")
            for c, v in zip(cells, values)
        ],
        dtype=bool,
    )


def _timing_sentences(
    timing: list[str], cells: list[str], values: list[dict[str, Any]], title: str = TIMING_ROW
) -> list[str]:
    """The timing sentence of one timing row over the treated cells, and one over the λ = 0
    controls (where any order is a false one) when the timing table has them (a bare label
    counts as a control when one of its parts reads ``λ=0``)."""
    control = _controls(cells, values)
    verdicts = np.array(timing, dtype=object)
    out = [_sentence(title, verdicts[~control], [c for c, k in zip(cells, control) if not k])]
    if control.any() and (verdicts[control] != NOT_MEASURED).any():
        out.append(
            _sentence(
                f"{title} at λ = 0 (controls: any order there is a false one)",
                verdicts[control],
                [c for c, k in zip(cells, control) if k],
            )
        )
    return out


def _sentence(title: str, verdicts: np.ndarray, cells: list[str]) -> str:
    """ "Accuracy kept: holds in 11 of 12 cells; breaks in λ=0.3 · K=3." Verdicts by count;
    a verdict of at most two cells names them."""
    measured = [(v, c) for v, c in zip(verdicts, cells) if v != NOT_MEASURED]
    if not measured:
        return f"{title}: not measured."
    counts = pd.Series([v for v, _ in measured]).value_counts(sort=False)
    counts = counts.sort_values(ascending=False, kind="stable")
    parts = []
    for i, (v, n) in enumerate(counts.items()):
        where = [c for w, c in measured if w == v]
        if i == 0:
            parts.append(f"{v} in {n} of {len(measured)} cell{'s' if len(measured) > 1 else ''}")
        elif n <= 2:
            parts.append(f"{v} in {' and '.join(where)}")
        else:
            parts.append(f"{v} in {n}")
    unmeasured = len(cells) - len(measured)
    tail = f" ({unmeasured} not measured)" if unmeasured else ""
    return f"{title}: {'; '.join(parts)}{tail}."


def _legend(grid: np.ndarray, timing: list[str]) -> list[tuple[str, str, str]]:
    """(label, colour, glyph) of each verdict present: claims first, then timing."""
    out = []
    present = set(grid.ravel().tolist())
    for v in sorted(
        present,
        key=lambda v: list(CLAIM_COLOURS).index(v) if v in CLAIM_COLOURS else len(CLAIM_COLOURS),
    ):
        out.append((v, *CLAIM_COLOURS.get(v, _UNKNOWN)))
    if NOT_MEASURED in timing and NOT_MEASURED not in present:
        out.append((NOT_MEASURED, *CLAIM_COLOURS[NOT_MEASURED]))
    shown = [t for t in dict.fromkeys(timing) if t != NOT_MEASURED]
    for v in sorted(shown, key=_timing_rank):
        out.append((f"timing: {v}", *timing_colour(v)))
    return out


def _timing_rank(verdict: str) -> int:
    """Position of a timing verdict's family in the legend (unknown labels last)."""
    v = str(verdict).strip().lower()
    return next(
        (i for i, (p, _) in enumerate(_TIMING_PREFIXES) if v.startswith(p)), len(_TIMING_PREFIXES)
    )


def _style(verdict: str, timing: bool) -> tuple[str, str]:
    if timing:
        return timing_colour(verdict)
    return CLAIM_COLOURS.get(verdict, _UNKNOWN)


def facets(info: MatrixInfo) -> tuple[list[str], list[str]]:
    """Per cell, its facet (the values of every key but the first, e.g. ``K=2 · N=24``) and
    its tick (the first key's value, e.g. ``λ=0.1``); with one key every cell shares facet ""."""
    if len(info.keys) < 2:
        return [""] * len(info.cells), list(info.cells)
    first, rest = info.keys[0], info.keys[1:]
    group = [
        cell_label({k: v[k] for k in rest if k in v}, rest) if v else "" for v in info.cell_values
    ]
    tick = [
        cell_label({first: v[first]}, [first]) if first in v else c
        for v, c in zip(info.cell_values, info.cells)
    ]
    return group, tick


def _panels(groups: list[str], max_columns: int) -> list[list[int | None]]:
    """Cell indices per panel with None as the gap between facets (at most `max_columns`
    entries per panel); a facet is split only when it alone is wider than that."""
    runs: list[list[int]] = []
    for i, g in enumerate(groups):
        if runs and groups[runs[-1][0]] == g:
            runs[-1].append(i)
        else:
            runs.append([i])
    panels: list[list[int | None]] = [[]]
    for run in runs:
        for k in range(0, len(run), max_columns):
            chunk = run[k : k + max_columns]
            if panels[-1] and len(panels[-1]) + 1 + len(chunk) > max_columns:
                panels.append([])
            panels[-1] += ([None] if panels[-1] else []) + chunk
    return panels


def plot_matrix(info: MatrixInfo, *, max_columns: int = 24, title: str = "") -> Figure:
    """Draw the matrix: one square per (row, cell) with its verdict's colour and glyph, the
    timing row under the claims, cells grouped in facets (:func:`facets`) whose label sits
    above them, the first key's value under each cell, the legend below.

    Args:
        info: from :func:`matrix_info`.
        max_columns: columns per panel, gaps between facets included; more cells wrap into
            further panels (60 cells of 5 λ × 12 (K, N) facets: three panels of four).
        title: the figure title.
    """
    rows = list(info.claims) + info.timing_titles
    if not info.cells or not rows:
        fig = _figure(5.0, 1.2)
        fig.text(
            0.5,
            0.5,
            "No verdicts to show (no claims or timing measured).",
            ha="center",
            va="center",
            fontsize=10,
        )
        return fig
    groups, ticks = facets(info)
    panels = _panels(groups, max_columns)
    width = max(len(p) for p in panels)
    tick_h = 0.065 * max(len(t) for t in ticks) + 0.25
    panel_h = 0.32 * len(rows) + tick_h + (0.25 if any(groups) else 0.0)
    # a narrow matrix stacks its legend in two columns and is never narrower than the legend
    ncol = 3 if width >= 14 else 2
    legend_h = 0.2 * math.ceil(len(info.legend) / ncol) + 0.1
    fig_w = max(2.0 + 0.34 * width, 7.2 if ncol == 3 else 5.0)
    fig = _figure(fig_w, len(panels) * panel_h + legend_h + (0.3 if title else 0))
    axes = fig.subplots(len(panels), 1, squeeze=False).ravel()
    for ax, cols in zip(axes, panels):
        _draw_panel(ax, info, rows, cols, width, groups, ticks)
    handles = [
        Patch(facecolor=c, edgecolor="#888", label=f"{g} {lab}".strip())
        for lab, c, g in info.legend
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(ncol, max(len(handles), 1)),
        fontsize=7,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _draw_panel(
    ax: Any,
    info: MatrixInfo,
    rows: list[str],
    cols: list[int | None],
    width: int,
    groups: list[str],
    ticks: list[str],
) -> None:
    """One panel: the cells `cols` (None: a gap) of every row, the timing rows set apart."""
    n_claims = len(info.claims)
    timing_rows = dict(info.timing_rows or ((TIMING_ROW, tuple(info.timing)),))
    gap = 0.25  # between the claims and the timing row

    def y_of(r: int) -> float:
        return r + (gap if r >= n_claims else 0.0)

    for x, i in enumerate(cols):
        if i is None:
            continue
        for r in range(len(rows)):
            timing = r >= n_claims
            verdict = timing_rows[rows[r]][i] if timing else info.verdicts[r, i]
            colour, glyph = _style(verdict, timing)
            ax.add_patch(_square(x, y_of(r), colour))
            if glyph:
                ax.text(
                    x, y_of(r), glyph, ha="center", va="center", fontsize=8, color=_ink(colour)
                )
        if groups[i] and (x == 0 or cols[x - 1] is None):
            span = next((k for k in range(x, len(cols)) if cols[k] is None), len(cols)) - x
            ax.text(x + (span - 1) / 2, -0.65, groups[i], ha="center", va="bottom", fontsize=7)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(y_of(len(rows) - 1) + 0.5, -0.5)
    ax.set_yticks([y_of(r) for r in range(len(rows))], rows, fontsize=8)
    shown = [(x, ticks[i]) for x, i in enumerate(cols) if i is not None]
    rotate = 90 if max(len(t) for _, t in shown) > 6 else 0
    ax.set_xticks([x for x, _ in shown], [t for _, t in shown], rotation=rotate, fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)


def _square(x: float, y: float, colour: str) -> Rectangle:
    return Rectangle(
        (x - 0.45, y - 0.45), 0.9, 0.9, facecolor=colour, edgecolor="#888", linewidth=0.5
    )


def _ink(colour: str) -> str:
    """Black or white glyphs, whichever reads better on `colour` (Rec. 601 luma)."""
    r, g, b = to_rgb(colour)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
