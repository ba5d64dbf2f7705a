"""Matplotlib figures drawn from the info objects of ``analysis.phase`` (the "figure" half).

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot, so no
global state or display is touched. They are rendered and embedded, never compared in tests.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from analysis.phase import PhaseInfo, phase_quantities
from study.contract.params import PARAM_MI_WEIGHT

__all__ = [
    "plot_arm_curves",
    "plot_curve_bands",
    "plot_km",
    "plot_onsets",
    "plot_pareto",
    "plot_phase",
    "plot_scatter",
    "to_png",
]

_RATE = ("success_rate", "differentiated_rate", "func_emerged_rate", "struct_emerged_rate")


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return ""
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.2f}"


def _ink(im, value: float) -> str:
    """Black or white, whichever reads better on the cell's colour (Rec. 601 luma)."""
    if not np.isfinite(value):
        return "black"
    r, g, b, _ = im.cmap(im.norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def plot_phase(
    info: PhaseInfo,
    *,
    task_metric: str = "accuracy",
    title: str = "",
    first_eval: float = math.nan,
) -> Figure:
    """One heat-map panel per phase quantity, each cell annotated with its value and seed count;
    a median onset (t_func, t_struct) at or before `first_eval`, the first evaluation's epoch,
    is a bound and reads ``≤25``."""
    quantities = {
        q: t
        for q, t in phase_quantities(task_metric, list(info.values)).items()
        if q in info.values
    }
    ny, nx = info.n_seeds.shape
    ncols = 4
    nrows = math.ceil(len(quantities) / ncols)
    # A fixed grid instead of constrained layout: the layout pass over ~100 cell labels costs
    # seconds per figure, and these panels all have the same shape.
    fig = _figure(max(12.0, 1.0 + ncols * (0.6 * nx + 1.8)), nrows * (0.45 * ny + 2.4) + 0.6, None)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.9, wspace=0.55, hspace=0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (q, label) in zip(axes, quantities.items()):
        z = info.values[q]
        kw: dict = {"cmap": "viridis"}
        if q in _RATE:
            kw |= {"vmin": 0.0, "vmax": 1.0}
        elif q == "lag":
            lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
            kw = {"cmap": "RdBu_r", "norm": TwoSlopeNorm(0.0, -lim - 1e-9, lim + 1e-9)}
        elif q.startswith("t_"):
            kw["cmap"] = "magma"
        im = ax.imshow(np.ma.masked_invalid(z), origin="lower", aspect="auto", **kw)
        fig.colorbar(im, ax=ax, shrink=0.8)
        for j in range(ny):
            for i in range(nx):
                n, k = info.n_seeds[j, i], info.n_defined[q][j, i]
                if n:
                    count = f"n={n}" if k == n else f"n={k}/{n}"
                    ax.text(
                        i,
                        j,
                        f"{_onset_text(q, z[j, i], first_eval)}\n{count}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=_ink(im, z[j, i]),
                    )
        ax.set_xticks(range(nx), info.x.labels, rotation=45 if info.x.binned else 0, fontsize=7)
        ax.set_yticks(range(ny), info.y.labels, fontsize=7)
        ax.set_xlabel(info.x.key)
        ax.set_ylabel(info.y.key)
        ax.set_title(label, fontsize=9)
    for ax in axes[len(quantities) :]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def _onset_text(quantity: str, value: float, first_eval: float) -> str:
    """A cell's value; an onset at or before the first evaluation as the bound ``≤t``."""
    if quantity in ("t_func", "t_struct") and np.isfinite(value) and value <= first_eval:
        return f"≤{_fmt(value)}"
    return _fmt(value)


def plot_curve_bands(bands: pd.DataFrame, *, by: str = PARAM_MI_WEIGHT) -> Figure:
    """Median (line) and interquartile band (shade) over seeds of each metric, per level."""
    metrics = list(dict.fromkeys(bands["metric"]))
    fig = _figure(5.0 * max(1, len(metrics)), 3.6)
    axes = fig.subplots(1, max(1, len(metrics)), squeeze=False).ravel()
    for ax, m in zip(axes, metrics):
        sub = bands[bands["metric"] == m]
        for level, g in sub.groupby("level", sort=False):
            (line,) = ax.plot(g["epoch"], g["median"], label=f"{by} = {level}")
            ax.fill_between(g["epoch"], g["q25"], g["q75"], color=line.get_color(), alpha=0.25)
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.set_title(f"{m}: median and IQR over seeds", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def plot_onsets(seeds: pd.DataFrame, *, by: str = PARAM_MI_WEIGHT) -> Figure:
    """t_struct against t_func per seed: points above the diagonal are structure after function."""
    fig = _figure(4.8, 4.2)
    ax = fig.subplots()
    ok = seeds[
        np.isfinite(seeds["t_func"].astype(float)) & np.isfinite(seeds["t_struct"].astype(float))
    ]
    # Tiny deterministic offsets keep seeds on the same evaluation epoch visible as separate dots.
    jitter = (np.arange(len(ok)) % 5 - 2) * 1.5
    groups = ok.groupby(by, sort=True) if by in ok.columns else [("all", ok)]
    for level, g in groups:
        sel = ok.index.get_indexer(g.index)
        ax.scatter(
            g["t_func"] + jitter[sel],
            g["t_struct"] - jitter[sel],
            s=18,
            label=f"{by} = {level}",
            alpha=0.8,
        )
    lim = [0.0, 1.0]
    if len(ok):
        lim = [0.0, float(max(ok["t_func"].max(), ok["t_struct"].max())) * 1.05 + 1.0]
    ax.plot(lim, lim, color="grey", lw=1, ls="--")
    ax.set_xlabel("t_func (onset of q_func_z)")
    ax.set_ylabel("t_struct (onset of q_struct_z)")
    ax.set_title("seeds where both emerged (above the line: function first)", fontsize=9)
    if len(ok):
        ax.legend(fontsize=7)
    return fig


def plot_pareto(
    points: pd.DataFrame, *, task_metric: str = "accuracy", by: str = PARAM_MI_WEIGHT
) -> Figure:
    """Median final task metric against median final q_func per trial, with the Pareto front."""
    fig = _figure(4.8, 4.0)
    ax = fig.subplots()
    sc = ax.scatter(
        points["task"],
        points["q_func"],
        c=pd.to_numeric(points["level"], errors="coerce"),
        cmap="viridis",
        s=28,
    )
    front = points[points["on_front"]].sort_values("task")
    ax.plot(
        front["task"],
        front["q_func"],
        color="crimson",
        lw=1.2,
        marker="o",
        mfc="none",
        label="Pareto front",
    )
    if points["level"].notna().any():
        fig.colorbar(sc, ax=ax, label=by)
    ax.set_xlabel(f"median final {task_metric}")
    ax.set_ylabel("median final q_func")
    ax.legend(fontsize=7)
    return fig


def plot_scatter(points: pd.DataFrame, *, by: str = PARAM_MI_WEIGHT) -> Figure:
    """Final q_func against final q_struct per seed, coloured by `by`."""
    fig = _figure(4.8, 4.0)
    ax = fig.subplots()
    sc = ax.scatter(
        points["q_func"],
        points["q_struct"],
        c=pd.to_numeric(points["level"], errors="coerce"),
        cmap="viridis",
        s=18,
    )
    if points["level"].notna().any():
        fig.colorbar(sc, ax=ax, label=by)
    ax.axhline(0.1, color="grey", lw=1, ls="--")
    ax.set_xlabel("final q_func")
    ax.set_ylabel("final q_struct (dashed: differentiated cut 0.1)")
    return fig


def plot_km(km: pd.DataFrame, *, by: str = PARAM_MI_WEIGHT) -> Figure:
    """Kaplan–Meier fraction emerged against epoch: one panel per level, q_func and q_struct."""
    levels = list(dict.fromkeys(km["level"]))
    fig = _figure(3.6 * max(1, len(levels)), 3.4)
    axes = fig.subplots(1, max(1, len(levels)), squeeze=False, sharey=True).ravel()
    styles = {"func": ("tab:blue", "q_func_z"), "struct": ("tab:orange", "q_struct_z")}
    for ax, level in zip(axes, levels):
        sub = km[km["level"] == level]
        for tag, (colour, label) in styles.items():
            g = sub[sub["metric"] == tag].sort_values("epoch")
            if len(g):
                ax.step(
                    g["epoch"],
                    g["emerged"],
                    where="post",
                    color=colour,
                    label=f"{label} ({int(g['events'].iloc[0])}/{int(g['n'].iloc[0])})",
                )
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("epoch")
        ax.set_title(f"{by} = {level}" if level != "all" else "all seeds", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("fraction emerged (Kaplan–Meier)")
    return fig


def plot_arm_curves(
    bands: pd.DataFrame,
    switches: pd.DataFrame,
    *,
    control: str,
    arms: list[str],
    metrics: list[str],
    labels: dict[str, str] | None = None,
    title: str = "",
) -> Figure:
    """One row per arm, one column per metric: the arm's median over seeds (line) and IQR
    (band) against the control's (grey) on the same axes; the intervention's epoch dashed (the
    median of the seeds' switch epochs, their interquartile range shaded when they differ);
    where the arm has a metric's ``<metric>_orig`` (a swapped partition), that curve dotted."""
    labels = labels or {}
    rows = max(1, len(arms))
    cols = max(1, len(metrics))
    fig = _figure(4.0 * cols, 2.4 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    sw = switches.set_index("arm") if len(switches) else pd.DataFrame()
    for i, arm in enumerate(arms):
        for j, m in enumerate(metrics):
            ax = axes[i, j]
            for who, colour in ((control, "0.45"), (arm, f"C{i % 10}")):
                g = bands[(bands["arm"] == who) & (bands["metric"] == m)].sort_values("epoch")
                if not len(g):
                    continue
                ax.plot(g["epoch"], g["median"], color=colour, lw=1.3, label=str(who))
                ax.fill_between(g["epoch"], g["q25"], g["q75"], color=colour, alpha=0.22, lw=0)
            orig = bands[(bands["arm"] == arm) & (bands["metric"] == f"{m}_orig")]
            if len(orig):
                orig = orig.sort_values("epoch")
                ax.plot(
                    orig["epoch"],
                    orig["median"],
                    color=f"C{i % 10}",
                    ls=":",
                    lw=1.3,
                    label=f"{arm}, designed partition",
                )
            if arm in sw.index and np.isfinite(float(sw.loc[arm, "switch_median"])):
                s = sw.loc[arm]
                ax.axvline(float(s["switch_median"]), color="k", ls="--", lw=0.9)
                if float(s["switch_q75"]) > float(s["switch_q25"]):
                    ax.axvspan(
                        float(s["switch_q25"]), float(s["switch_q75"]), color="k", alpha=0.08
                    )
            if i == 0:
                ax.set_title(labels.get(m, m), fontsize=9)
            if j == 0:
                ax.set_ylabel(str(arm), fontsize=9)
            if i == rows - 1:
                ax.set_xlabel("epoch")
            ax.tick_params(labelsize=7)
            if j == cols - 1:
                ax.legend(fontsize=6, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
