"""The MI audit: per λ, every MI figure of a study against epoch, each measured one as excess
over its own null floor, with the floor drawn (docs/run-data.md).

Three kinds of number are compared. `mi` is the training critic's value right after the
network was trained to fool it (in clean_partner mode the critic objective, which includes a
KL term): not a measurement. `mi_gauss` (Gaussian plug-in on the noisy activity) and
`mi_heldout` (a fresh critic scored on held-out sequences) are measurements, and each comes with
`*_null`, the same estimator on a sequence-shuffled pairing whose true MI is 0: the excess
`value − null` is the MI the estimator can tell from zero, the null is its bias at that epoch
(it moves with λ, because λ changes the time constants). Reads only the StudyData tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from study.contract.params import PARAM_MI_WEIGHT

__all__ = ["mi_audit", "mi_audit_table", "AUDIT_SERIES"]

# (label, value column, null column or None); the excess is value − null
AUDIT_SERIES = (
    ("training critic (mi)", "mi", None),
    ("held-out critic", "mi_heldout", "mi_heldout_null"),
    ("Gaussian plug-in", "mi_gauss", "mi_gauss_null"),
)
_COLOURS = {"mi": "tab:grey", "mi_heldout": "tab:blue", "mi_gauss": "tab:orange"}
_BY = PARAM_MI_WEIGHT  # one audit row and panel per λ


def _per_seed(data, groups: pd.Series | None = None) -> pd.DataFrame:
    """Curves with the trial's λ (or its group label from `groups`, trial_id -> label)
    attached and the excess columns added."""
    curves = data.curves
    if curves is None or not len(curves):
        return pd.DataFrame()
    lam = groups
    for table in (data.trials, data.seeds):
        if lam is None and table is not None and _BY in getattr(table, "columns", ()):
            lam = table.drop_duplicates("trial_id").set_index("trial_id")[_BY]
            break
    out = curves.assign(**{_BY: curves["trial_id"].map(lam) if lam is not None else np.nan})
    for _, value, null in AUDIT_SERIES:
        if value not in out:
            out[value] = np.nan
        if null is not None:
            if null not in out:
                out[null] = np.nan
            out[f"{value}_excess"] = out[value] - out[null]
    return out


def _last_finite(g: pd.DataFrame, col: str) -> float:
    v = g.sort_values("epoch")[col].to_numpy(float)
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else np.nan


def _table(curves: pd.DataFrame) -> pd.DataFrame:
    """Per λ: each seed's last finite value of every series, summarised over seeds."""
    cols = [
        "mi",
        "mi_heldout",
        "mi_heldout_null",
        "mi_heldout_excess",
        "mi_gauss",
        "mi_gauss_null",
        "mi_gauss_excess",
    ]
    rows = []
    for lam, g in curves.groupby(_BY, dropna=False, sort=False):
        finals = pd.DataFrame(
            [{c: _last_finite(s, c) for c in cols} for _, s in g.groupby(["trial_id", "seed"])]
        )
        row: dict[str, object] = {"lambda": lam, "n_seeds": len(finals)}
        for c in cols:
            v = finals[c].to_numpy(float)
            v = v[np.isfinite(v)]
            row[f"{c} mean"] = float(v.mean()) if v.size else np.nan
            row[f"{c} sd"] = float(v.std(ddof=1)) if v.size > 1 else np.nan
        for c in ("mi_heldout_excess", "mi_gauss_excess"):
            v = finals[c].to_numpy(float)
            row[f"{c} > 0"] = f"{int((v[np.isfinite(v)] > 0).sum())}/{int(np.isfinite(v).sum())}"
        rows.append(row)
    return pd.DataFrame(rows)


def _band(ax, g: pd.DataFrame, col: str, colour: str, label: str, dashed: bool = False) -> None:
    """Median over seeds (line, markers where evaluated) and interquartile band of `col`."""
    d = g[["epoch", col]].dropna()
    if not len(d):
        return
    stats = d.groupby("epoch")[col].quantile([0.25, 0.5, 0.75]).unstack()
    ax.plot(
        stats.index,
        stats[0.5],
        color=colour,
        ls="--" if dashed else "-",
        marker="." if not dashed else None,
        label=label,
    )
    ax.fill_between(
        stats.index, stats[0.25], stats[0.75], color=colour, alpha=0.1 if dashed else 0.2, lw=0
    )


def _levels(curves: pd.DataFrame) -> list:
    """The λ levels (numbers, sorted) or group labels (in their order of first appearance
    after sorting by label, "0" first) of the curves."""
    values = curves[_BY].dropna().unique().tolist()
    if all(isinstance(v, (int, float, np.number)) for v in values):
        return sorted(values)
    return sorted(values, key=lambda v: (str(v) != "0", _lower_edge(v), str(v)))


def _lower_edge(label) -> float:
    """The lower edge of a bin label such as ``[0.01, 0.1)``, for ordering."""
    try:
        return float(str(label).strip("[]()").split(",")[0])
    except ValueError:
        return float("inf")


def mi_audit_table(data, *, groups: pd.Series | None = None) -> pd.DataFrame:
    """The MI audit table of :func:`mi_audit` without the figure."""
    curves = _per_seed(data, groups)
    if not len(curves):
        return pd.DataFrame(columns=["lambda", "n_seeds"])
    return _table(_ordered(curves))


def _ordered(curves: pd.DataFrame) -> pd.DataFrame:
    order = {v: i for i, v in enumerate(_levels(curves))}
    return curves.assign(_order=curves[_BY].map(order)).sort_values("_order", kind="stable")


def mi_audit(data, *, groups: pd.Series | None = None) -> tuple[Figure, pd.DataFrame]:
    """The MI audit figure and table of a study (an `analysis.runs.StudyData`).

    With `groups` (trial_id -> label, such as λ's bin in an adaptive search) the panels and
    rows are those groups instead of the values of λ.

    Figure: one panel per λ, nats against epoch: the training critic's value (grey), and for the
    held-out critic (blue) and the Gaussian plug-in (orange) the excess over the null (solid,
    median over seeds with interquartile band) and the null itself (dashed). A dotted line marks
    0. Table: per λ, the number of seeds and, of each seed's last evaluated value, the mean and
    standard deviation over seeds of every series (`*_excess` = value − null) and how many seeds
    end with a positive excess.

    Studies written before these metrics existed give NaN columns and empty panels.
    """
    curves = _per_seed(data, groups)
    fig = Figure(figsize=(4.2, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    if not len(curves):
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no curves", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig, pd.DataFrame(columns=["lambda", "n_seeds"])
    levels = _levels(curves) or [np.nan]
    fig.set_size_inches(4.2 * len(levels), 3.4)
    axes = fig.subplots(1, len(levels), squeeze=False, sharey=True)[0]
    for ax, lam in zip(axes, levels):
        numeric = isinstance(lam, (int, float, np.number))
        g = curves[curves[_BY] == lam] if not numeric or np.isfinite(lam) else curves
        for label, value, null in AUDIT_SERIES:
            colour = _COLOURS[value]
            if null is None:
                _band(ax, g, value, colour, f"{label}: critic objective")
            else:
                _band(ax, g, f"{value}_excess", colour, f"{label} − null")
                _band(ax, g, null, colour, f"{label} null", dashed=True)
        ax.axhline(0.0, color="black", lw=0.6, ls=":")
        title = f"λ = {lam:g}" if numeric and np.isfinite(lam) else "all trials"
        ax.set_title(title if numeric else f"λ ∈ {lam}" if lam != "0" else "λ = 0")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("nats")
    axes[-1].legend(fontsize="x-small", loc="best")
    return fig, _table(_ordered(curves))
