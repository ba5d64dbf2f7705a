"""Which hyperparameters matter: Optuna's importance evaluators on a study's trials, with their
spread, and parallel coordinates of the trials.

The trials (one row each: the swept keys and an objective, the mean over the trial's seeds) are
rebuilt as an in-memory Optuna study (``optuna.create_study`` + ``add_trials``), so any study
can be judged, whatever sampler produced it. Evaluators disagree by design (fANOVA: variance of
a random-forest surrogate over the whole space; PED-ANOVA: how the best trials' region differs
from the rest), so each result names its evaluator. The spread comes from repeating the
evaluation on bootstrap resamples of the trials, with a new evaluator seed each time.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.figures import _figure
from analysis.response import _metric_label, _symbol, log_scale, trial_means

__all__ = [
    "EVALUATORS",
    "FANOVA_TREES",
    "MIN_TRIALS",
    "ImportanceInfo",
    "ParallelInfo",
    "importance_info",
    "parallel_info",
    "plot_importance",
    "plot_parallel",
]

MIN_TRIALS = 4  # fewer trials give a message, not an importance

# Evaluator key -> its name in figures and tables (with the settings used).
FANOVA_TREES = 64  # Optuna's default forest
EVALUATORS: Mapping[str, str] = {
    "fanova": f"fANOVA (random forest, {FANOVA_TREES} trees)",
    "ped_anova": "PED-ANOVA (top 10 % of trials vs all)",
}


class ImportanceInfo(NamedTuple):
    """Importance of each parameter for one objective by one evaluator, over repeats."""

    objective: str  # the metric judged (a claim name or a column)
    column: str  # what it reads, e.g. "final.q_func_z"
    direction: str  # "maximize" or "minimize" (matters to PED-ANOVA only)
    evaluator: str  # a key of EVALUATORS
    evaluator_name: str  # EVALUATORS[evaluator], with the number of trees of a smaller forest
    table: pd.DataFrame  # param, importance (all trials), mean, sd, q05, q95 (repeats), n_repeats
    n_trials: int
    dropped: list[str]  # params left out: a single value among these trials
    message: str  # why there is no importance ("" when there is one); warnings otherwise


_TABLE = ["param", "importance", "mean", "sd", "q05", "q95", "n_repeats"]


def importance_info(
    seeds: pd.DataFrame,
    params: Sequence[str],
    objective: str,
    *,
    evaluator: str = "fanova",
    direction: str = "maximize",
    n_repeats: int = 10,
    task_metric: str = "accuracy",
    log: Mapping[str, bool] | None = None,
    n_trees: int = FANOVA_TREES,
    rng: np.random.Generator | None = None,
) -> ImportanceInfo:
    """Normalised importance of `params` for `objective` by an Optuna evaluator.

    Repeat 0 uses every trial (``importance``); repeats 1.. use bootstrap resamples of the
    trials and a fresh evaluator seed, and ``mean``, ``sd``, ``q05``, ``q95`` summarise all
    repeats. Importances of one repeat sum to 1.

    Args:
        seeds: one row per seed (or per trial) with ``trial_id``, the params and the
            objective's column(s); the objective of a trial is its mean over seeds.
        params: the swept keys to judge (absent columns are ignored).
        objective: a claim name (``functional``, ...) or a column (``t_func``, ...).
        evaluator: ``fanova`` or ``ped_anova`` (:data:`EVALUATORS`).
        direction: which trials are best, for PED-ANOVA (``minimize`` for onsets).
        n_repeats: evaluations in all (1 = no spread).
        log: param -> log-scaled distribution; default :func:`analysis.response.log_scale`.
        n_trees: trees of fANOVA's random forest (its cost grows with them: about 1 s for 64
            trees on 60 trials of 3 keys; the repeats' spread includes the forest's own noise).
        rng: generator of the resamples and evaluator seeds; default ``default_rng(0)``.

    Returns:
        The :class:`ImportanceInfo`; fewer than :data:`MIN_TRIALS` trials with a finite
        objective, or no param with two values, give an empty table and a `message`.

    Raises:
        ValueError: for an unknown evaluator or direction, or n_repeats < 1.
    """
    _check(evaluator, direction, n_repeats)
    rng = np.random.default_rng(0) if rng is None else rng
    params = [p for p in params if p in seeds.columns]
    t = (
        trial_means(seeds, params, objective, task_metric=task_metric)
        if len(seeds)
        else pd.DataFrame(columns=["trial_id", *params, "y", "n", "n_seeds"])
    )
    t = t.dropna(subset=params)
    varied = [p for p in params if t[p].nunique() > 1]
    dropped = [p for p in params if p not in varied]
    info = ImportanceInfo(
        objective,
        _metric_label(objective, task_metric),
        direction,
        evaluator,
        _evaluator_name(evaluator, n_trees),
        pd.DataFrame(columns=_TABLE),
        len(t),
        dropped,
        "",
    )
    if len(t) < MIN_TRIALS or not varied:
        why = (
            f"{len(t)} trial{'s' * (len(t) != 1)} with a finite {info.column}, importance "
            f"needs at least {MIN_TRIALS}"
            if len(t) < MIN_TRIALS
            else "no swept key takes two values among the trials"
        )
        return info._replace(message=f"No importance for {info.column}: {why}.")
    dists = {p: _distribution(t[p], (log or {}).get(p)) for p in varied}
    runs, caught, flat = [], [], 0
    for r in range(n_repeats):
        rows = np.arange(len(t)) if r == 0 else rng.integers(0, len(t), len(t))
        seed = int(rng.integers(0, 2**31 - 1))
        try:
            imp, warned = _evaluate(t.iloc[rows], dists, evaluator, direction, seed, n_trees)
        except RuntimeError as e:  # fANOVA: no variance to share out in this (re)sample
            if "zero total variance" not in str(e):
                raise
            if r == 0:
                return info._replace(
                    message=f"No importance for {info.column}: it does not vary over the "
                    "trials' keys (zero total variance)."
                )
            flat += 1
            continue
        runs.append(imp)
        caught += warned
    if flat:
        caught.append(f"{flat} of {n_repeats} resamples had no variance and were left out")
    return info._replace(table=_summary(runs, varied), message="; ".join(dict.fromkeys(caught)))


def _evaluator_name(evaluator: str, n_trees: int) -> str:
    """EVALUATORS' name of an evaluator, naming a forest of other than the default size."""
    if evaluator == "fanova" and n_trees != FANOVA_TREES:
        return f"fANOVA (random forest, {n_trees} trees)"
    return EVALUATORS[evaluator]


def _check(evaluator: str, direction: str, n_repeats: int) -> None:
    """importance_info()'s argument checks (ValueError)."""
    if evaluator not in EVALUATORS:
        raise ValueError(
            f"importance_info(): evaluator must be one of {', '.join(EVALUATORS)}, "
            f"but got {evaluator!r}."
        )
    if direction not in ("maximize", "minimize"):
        raise ValueError(
            f"importance_info(): direction must be 'maximize' or 'minimize', but "
            f"got {direction!r}."
        )
    if n_repeats < 1:
        raise ValueError(f"importance_info(): n_repeats must be >= 1, but got {n_repeats}.")


def _distribution(col: pd.Series, log: bool | None) -> Any:
    """The Optuna distribution of one param over the trials' values: integer, float (log when
    asked, or by log_scale, and all values positive) or categorical."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    num = pd.to_numeric(col, errors="coerce")
    if num.isna().any():
        return CategoricalDistribution(sorted(col.astype(str).unique()))
    lo, hi = float(num.min()), float(num.max())
    use_log = bool((log_scale(num) if log is None else log) and lo > 0)
    if (num == num.round()).all() and (pd.api.types.is_integer_dtype(col) or hi - lo >= 1):
        return IntDistribution(int(lo), int(hi), log=use_log)
    return FloatDistribution(lo, hi, log=use_log)


def _evaluate(
    t: pd.DataFrame,
    dists: dict[str, Any],
    evaluator: str,
    direction: str,
    seed: int,
    n_trees: int = FANOVA_TREES,
) -> tuple[dict[str, float], list[str]]:
    """One evaluation on an in-memory study of the rows of `t`; its warnings as text."""
    import optuna

    trials = [
        optuna.trial.create_trial(
            params={p: _param_value(v, dists[p]) for p, v in row.items() if p in dists},
            distributions=dists,
            value=float(row["y"]),
        )
        for row in t[[*dists, "y"]].to_dict("records")
    ]
    ev = (
        optuna.importance.FanovaImportanceEvaluator(n_trees=n_trees, seed=seed)
        if evaluator == "fanova"
        else optuna.importance.PedAnovaImportanceEvaluator()
    )
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            study = optuna.create_study(direction=direction)
            study.add_trials(trials)
            imp = optuna.importance.get_param_importances(
                study, evaluator=ev, params=list(dists), normalize=True
            )
    finally:
        optuna.logging.set_verbosity(verbosity)
    said = [
        str(w.message)
        for w in caught
        if not issubclass(w.category, optuna.exceptions.ExperimentalWarning)
    ]
    return {p: float(v) for p, v in imp.items()}, said


def _param_value(v: Any, dist: Any) -> Any:
    """A trial's value in the form its distribution holds (int, float or category text)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return str(v)
    return round(float(v)) if isinstance(dist, IntDistribution) else float(v)


def _summary(runs: list[dict[str, float]], params: list[str]) -> pd.DataFrame:
    """Per param: the all-trials importance and the mean, sd and 5–95 % range of repeats."""
    m = np.array([[r.get(p, math.nan) for p in params] for r in runs])
    table = pd.DataFrame(
        {
            "param": params,
            "importance": m[0],
            "mean": np.nanmean(m, axis=0),
            "sd": np.nanstd(m, axis=0, ddof=1) if len(m) > 1 else np.full(len(params), math.nan),
            "q05": np.nanpercentile(m, 5, axis=0),
            "q95": np.nanpercentile(m, 95, axis=0),
            "n_repeats": len(m),
        }
    )
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


class ParallelInfo(NamedTuple):
    """Trials across parallel axes (the params, then the objective), each scaled to [0, 1]."""

    axes: list[str]  # params, then the objective's column
    log: list[bool]  # per axis
    values: np.ndarray  # (n_trials, n_axes) in [0, 1]; a 0 on a log axis sits at -0.08
    ticks: list[tuple[list[float], list[str]]]  # per axis: positions in [0, 1] and labels
    colour: np.ndarray  # (n_trials,) objective value of each trial
    objective: str
    message: str  # why nothing is drawn ("" otherwise)


_ZERO_AT = -0.08  # where a 0 on a log axis is drawn, below the axis' range


def parallel_info(
    seeds: pd.DataFrame,
    params: Sequence[str],
    objective: str,
    *,
    task_metric: str = "accuracy",
    log: Mapping[str, bool] | None = None,
) -> ParallelInfo:
    """One polyline per trial through its param values and its objective (mean over seeds).

    Numeric axes are scaled min → 0, max → 1 (log10 first on a log axis, whose zeros are
    drawn at -0.08 under a "0" tick); a categorical axis spaces its levels evenly.
    """
    params = [p for p in params if p in seeds.columns]
    t = (
        trial_means(seeds, params, objective, task_metric=task_metric)
        if len(seeds)
        else pd.DataFrame(columns=["trial_id", *params, "y"])
    )
    column = _metric_label(objective, task_metric)
    axes, logs, cols, ticks = [], [], [], []
    for name, col in [*((p, t[p]) for p in params), (column, t["y"])]:
        is_log = bool((log or {}).get(name, log_scale(col)))
        scaled, tick = _scale(col, is_log)
        axes.append(name)
        logs.append(is_log)
        cols.append(scaled)
        ticks.append(tick)
    values = np.column_stack(cols) if len(t) else np.empty((0, len(axes)))
    message = "" if len(t) else f"No trial with a finite {column} to draw."
    return ParallelInfo(axes, logs, values, ticks, t["y"].to_numpy(float), column, message)


def _scale(col: pd.Series, log: bool) -> tuple[np.ndarray, tuple[list[float], list[str]]]:
    """One axis scaled to [0, 1], and its ticks (positions, labels)."""
    num = pd.to_numeric(col, errors="coerce")
    if len(col) and num.isna().any():
        levels = sorted(col.astype(str).unique())
        pos = np.linspace(0, 1, len(levels)) if len(levels) > 1 else np.array([0.5])
        where = dict(zip(levels, pos))
        return col.astype(str).map(where).to_numpy(float), (pos.tolist(), levels)
    v = num.to_numpy(float)
    zero = log & (v <= 0)
    u = np.where(zero, np.nan, np.log10(np.where(v > 0, v, 1.0))) if log else v
    if not np.isfinite(u).any():
        return np.full(len(v), 0.5), ([], [])
    lo, hi = float(np.nanmin(u)), float(np.nanmax(u))
    span = hi - lo if hi > lo else 1.0
    scaled = np.where(zero, _ZERO_AT, (u - lo) / span + (0.5 if hi == lo else 0.0))
    marks = np.linspace(lo, hi, 3) if hi > lo else np.array([lo])
    pos = ((marks - lo) / span + (0.5 if hi == lo else 0.0)).tolist()
    labels = [f"{10**m if log else m:.3g}" for m in marks]
    if zero.any():
        pos, labels = [_ZERO_AT, *pos], ["0", *labels]
    return scaled, (pos, labels)


# ---- figures -----------------------------------------------------------------------------------


def plot_importance(infos: Sequence[ImportanceInfo], *, ncols: int = 3) -> Figure:
    """One panel per objective: a bar per (param, evaluator) at the all-trials importance,
    its whisker the 5–95 % range of the repeats; the evaluators named in the legend."""
    objectives = list(dict.fromkeys(i.objective for i in infos))
    n = max(len(objectives), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    n_params = max([len(i.table) for i in infos] + [1])
    fig = _figure(3.8 * ncols, (0.35 * n_params + 1.3) * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    colours = dict(zip(EVALUATORS, ("tab:blue", "tab:orange")))
    for ax, obj in zip(axes, objectives):
        group = [i for i in infos if i.objective == obj]
        _importance_panel(ax, group, colours)
    for ax in axes[len(objectives) :]:
        ax.set_axis_off()
    if not infos:
        axes[0].text(0.5, 0.5, "No importance to show.", ha="center", va="center")
    names = {i.evaluator: i.evaluator_name for i in infos if not i.table.empty}
    handles = [Patch(color=c, label=names[e]) for e, c in colours.items() if e in names]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=7, frameon=False)
    return fig


def _importance_panel(ax: Any, group: list[ImportanceInfo], colours: dict[str, str]) -> None:
    """Grouped horizontal bars of one objective; messages where an evaluator gave none."""
    params = list(dict.fromkeys(p for i in group for p in i.table["param"]))
    height = 0.8 / max(len(group), 1)
    for k, info in enumerate(group):
        tab = info.table.set_index("param")
        for j, p in enumerate(params):
            if p not in tab.index:
                continue
            r = tab.loc[p]
            y = j + (k - (len(group) - 1) / 2) * height
            err = [[max(r["importance"] - r["q05"], 0)], [max(r["q95"] - r["importance"], 0)]]
            ax.barh(
                y,
                r["importance"],
                height=height,
                color=colours[info.evaluator],
                xerr=err if r["n_repeats"] > 1 else None,
                error_kw={"lw": 0.8},
            )
    ax.set_yticks(range(len(params)), [_symbol(p) for p in params], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("importance (share)", fontsize=8)
    first = group[0]
    ax.set_title(f"{first.column} ({first.n_trials} trials)", fontsize=8)
    said = [i.message for i in group if i.table.empty and i.message]
    if said and not params:
        ax.text(
            0.5,
            0.5,
            "\n".join(textwrap.fill(m, 44) for m in dict.fromkeys(said)),
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=7,
            wrap=True,
        )
    ax.tick_params(labelsize=7)


def plot_parallel(info: ParallelInfo) -> Figure:
    """Parallel coordinates: a line per trial, coloured by the objective."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig = _figure(1.6 * max(len(info.axes), 2) + 1.0, 3.6)
    ax = fig.subplots()
    if info.message or not len(info.values):
        ax.set_axis_off()
        ax.text(0.5, 0.5, info.message or "No trials.", ha="center", va="center")
        return fig
    c = info.colour
    norm = Normalize(float(np.nanmin(c)), float(np.nanmax(c)) + (1e-12 if np.ptp(c) == 0 else 0))
    cmap = colormaps["viridis"]
    x = np.arange(len(info.axes))
    for row, value in zip(info.values, c):
        ax.plot(x, row, color=cmap(norm(value)), lw=0.8, alpha=0.7)
    for i, (pos, labels) in enumerate(info.ticks):
        ax.axvline(i, color="#555", lw=0.8)
        for p, lab in zip(pos, labels):
            ax.text(i + 0.04, p, lab, fontsize=6, va="center")
    names = [_symbol(a) + (" (log)" if lg else "") for a, lg in zip(info.axes, info.log)]
    ax.set_xticks(x, names, fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.05)
    ax.set_xlim(-0.2, len(x) - 0.6)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=info.objective)
    return fig
