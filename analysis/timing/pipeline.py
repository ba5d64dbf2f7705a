"""Bring your own curves: the whole timing pipeline on any table of per-seed curves.

:func:`timing_from_curves` takes a table with one row per (seed, evaluation): columns ``seed``,
``epoch``, a function column (default ``q_func_z``), a structure column (default ``q_struct_z``;
any other, e.g. a signed ΔW block statistic with ``struct_direction=-1``) and optional cell columns
``by``. It computes per seed the timing onsets of both metrics (:mod:`study.contract.rise`) and
their "detectable from" epochs, per cell the lag test, the TOST, the CI of P(function first) and
the detectable lead (:mod:`.verdicts`), BH across the cells of the table (one verdict family), and
the calibration of exactly this pipeline at the table's own n per cell, BH family, schedule and
measured curve models (:mod:`.calibration`, :func:`.simulate.measure_curve_params`). It returns one
JSON-ready record per cell.

Seeds whose ``success`` column (when present) is false failed the task: they are listed per
cell and left out of the timing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from study.contract.power import DEFAULT_LAG_SD_EVALS, LEAD_OF_INTEREST_EVALS
from study.contract.rise import TimingOnset, regular_step, timing_onsets

from .calibration import DEFAULT_FUNC, DEFAULT_STRUCT, Scenario, calibrate_scenario
from .simulate import CurveParams, measure_curve_params
from .verdicts import ALPHA, MARGIN_EVALS, cell_statistics, label_cells

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CALIBRATION_LEADS", "jsonable", "timing_from_curves"]

CALIBRATION_LEADS = (0.0, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0)  # evaluations, > 0: function first


def jsonable(obj: Any) -> Any:
    """obj with NumPy scalars as Python numbers, tuples as lists and non-finite floats as None
    (strict JSON has no NaN or inf; a record's status fields say what a None bound means)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _check_table(table: pd.DataFrame, by: list[str], func: str, struct: str) -> None:
    """The columns the pipeline needs, else a ValueError naming the missing ones."""
    need = ["seed", "epoch", func, struct, *by]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(
            f"timing_from_curves(): the curves table must have columns {need}, but "
            f"{missing} are missing (columns: {list(table.columns)})."
        )


def _seed_curves(
    cell: pd.DataFrame, keys: list[str], func: str, struct: str, excluded: list[dict[str, Any]]
) -> list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]]:
    """(seed key, epochs, function values, structure values) per seed, sorted by epoch; seeds
    with fewer than 3 evaluations are appended to ``excluded``.

    Raises:
        ValueError: when a seed repeats an epoch (a cell column missing from ``by``).
    """
    out = []
    for key, g in cell.sort_values("epoch", kind="stable").groupby(keys, sort=True):
        t = g["epoch"].to_numpy(float)
        if t.size < 3:
            excluded.append({"seed": key, "reason": f"{t.size} evaluations (3 needed)"})
            continue
        if not np.all(np.diff(t) > 0):
            raise ValueError(
                f"timing_from_curves(): seed {key!r} repeats an epoch; each seed "
                f"needs one row per evaluation (is a cell column missing from "
                f"by?)."
            )
        out.append((key, t, g[func].to_numpy(float), g[struct].to_numpy(float)))
    return out


def _onsets(
    seeds: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]],
    direction: int,
    which: int,
    kw: dict[str, Any],
) -> list[TimingOnset]:
    """Timing onsets of column ``which`` (2: function, 3: structure) of every seed, batched by
    identical schedules."""
    out: list[TimingOnset | None] = [None] * len(seeds)
    groups: dict[tuple[float, ...], list[int]] = {}
    for i, s in enumerate(seeds):
        groups.setdefault(tuple(s[1].tolist()), []).append(i)
    for sched, idx in groups.items():
        x = np.stack([seeds[i][which] for i in idx])
        for i, o in zip(idx, timing_onsets(np.asarray(sched), x, direction=direction, **kw)):
            out[i] = o
    return [o for o in out if o is not None]


def _measure(
    table: pd.DataFrame, column: str, direction: int, by: list[str], default: CurveParams
) -> tuple[CurveParams, tuple[float, float] | None, str]:
    """The column's measured curve model, midpoint range and a note (the default when the
    curves show no rise to measure)."""
    try:
        m = measure_curve_params(table, column, direction=direction, by=by)
    except ValueError as e:
        return default, None, f"default model ({e})"
    return m.params, m.onset_range, f"measured on {m.n_seeds} seeds"


def _calibrate(
    epochs: np.ndarray,
    n: int,
    family: int,
    fm: CurveParams,
    sm: CurveParams,
    mid: tuple[float, float] | None,
    n_sim: int,
    seed: int,
    alpha: float,
    margin_evals: float,
    kw: dict[str, Any],
) -> dict[str, Any]:
    """No-lead false-ordering rate and the power at leads ±1, ±2, ±4 evaluations of this
    pipeline, at n seeds per cell in BH families of ``family`` cells. Function midpoints are
    drawn in the measured 10–90 % range, kept within [t₁ + 5 % span, t_T − 25 % span] so a
    simulated rise has room to resolve (default: the middle half)."""
    if mid is not None:
        span = epochs[-1] - epochs[0]
        lo = max(mid[0], epochs[0] + 0.05 * span)
        hi = min(max(mid[1], lo), epochs[-1] - 0.25 * span)
        mid = (lo, max(hi, lo))
    rows = []
    for lead in CALIBRATION_LEADS:
        r = calibrate_scenario(
            Scenario(f"lead {lead:+g}", fm, sm, lead),
            epochs=epochs,
            n_seeds=n,
            n_cells=max(n_sim, family),
            family=family,
            onset_range=mid,
            alpha=alpha,
            margin_evals=margin_evals,
            rng=np.random.default_rng(seed),
            onset_kwargs=kw,
        )
        rows.append(
            {
                "lead_evals": lead,
                "false_ordering": r.false_ordering,
                "power": r.power,
                "rates": r.rates,
                "lag_sd_evals": r.lag_sd_evals,
                "n_cells": r.n_cells,
            }
        )
    return {
        "n_seeds": n,
        "family": family,
        "alpha": alpha,
        "scenarios": rows,
        "false_ordering": rows[0]["false_ordering"],
        "lag_sd_evals": rows[0]["lag_sd_evals"],
    }


def timing_from_curves(
    table: pd.DataFrame,
    by: Sequence[str] = (),
    *,
    func: str = "q_func_z",
    struct: str = "q_struct_z",
    func_direction: int = 1,
    struct_direction: int = 1,
    alpha: float = ALPHA,
    margin_evals: float = MARGIN_EVALS,
    lead_of_interest: float = LEAD_OF_INTEREST_EVALS,
    n_sim: int = 200,
    seed: int = 0,
    func_model: CurveParams | None = None,
    struct_model: CurveParams | None = None,
    onset_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Timing verdicts, with their power and calibration, per cell of any curves table.

    Args:
        table: rows (seed, evaluation) with ``seed``, ``epoch``, ``func``, ``struct`` and the
            ``by`` columns; optional ``trial_id`` (part of a seed's key) and ``success``
            (false: the seed failed the task and is left out of the timing).
        by: the cell columns; no columns: the whole table is one cell.
        func, struct: the two curve columns (z-scores or any statistic with a threshold of
            ``onset_kwargs["threshold"]``, default 3).
        func_direction, struct_direction: +1 rising, −1 falling.
        alpha: level after BH across the table's cells; margin_evals: TOST margin and
            lead_of_interest (evaluations of the regular schedule).
        n_sim: simulated cells per calibration scenario (0: no calibration; the power of cells
            with too few point lags then uses the default lag spread).
        seed: seed of the calibration's random numbers.
        func_model, struct_model: curve models for the calibration instead of the measured
            ones (a per-seed fit absorbs slow wander, so smooth noise is under-measured).
        onset_kwargs: options of :func:`study.contract.rise.timing_onsets`.

    Returns:
        One record per cell (sorted by ``by``): the ``by`` values, ``verdict``, ``n_seeds``,
        ``excluded`` (seeds left out and why), the counts, p-values and power of
        :func:`analysis.timing.verdicts.label_cells`, ``step`` (epochs per regular
        evaluation), ``median_lag_evals``, ``seeds`` (per seed: both onsets and the lag
        interval), ``calibration`` (at this cell's n) and ``curve_models``; every value
        JSON-ready (:func:`jsonable`).
    """
    import pandas as pd

    by = list(by)
    _check_table(table, by, func, struct)
    kw = dict(onset_kwargs or {})
    keys = [k for k in ("trial_id", "seed") if k in table.columns]
    cells_in = table.groupby(by, sort=True, dropna=False) if by else [((), table)]
    cells, meta = [], []
    for key, cell in cells_in:
        key = key if isinstance(key, tuple) else (key,)
        excluded = []
        if "success" in cell.columns:
            ok = cell.groupby(keys)["success"].transform(
                lambda s: bool(pd.Series(s).fillna(False).astype(bool).all())
            )
            for k, _ in cell[~ok.astype(bool)].groupby(keys, sort=True):
                excluded.append({"seed": k, "reason": "failed the task (success false)"})
            cell = cell[ok.astype(bool)]
        seeds = _seed_curves(cell, keys, func, struct, excluded)
        of = _onsets(seeds, func_direction, 2, kw)
        os_ = _onsets(seeds, struct_direction, 3, kw)
        longest = max((s[1] for s in seeds), key=len) if seeds else np.array([0.0, 1.0])
        step = regular_step(longest)
        stats = cell_statistics(of, os_, step=step, margin_evals=margin_evals)
        cells.append(stats)
        meta.append(
            {
                "key": dict(zip(by, key)),
                "excluded": excluded,
                "step": step,
                "epochs": longest,
                "seeds": [
                    {"seed": s[0], "func": f.to_dict(), "struct": g.to_dict(), "lag": list(lag)}
                    for s, f, g, lag in zip(seeds, of, os_, stats["lags"])
                ],
            }
        )
    family = len(cells)
    kept = table
    if "success" in table.columns:
        kept = table[table["success"].fillna(False).astype(bool)]
    fm, f_mid, f_note = _measure(kept, func, func_direction, by, DEFAULT_FUNC)
    sm, _, s_note = _measure(kept, struct, struct_direction, by, DEFAULT_STRUCT)
    if func_model is not None:
        fm, f_note = func_model, "given"
    if struct_model is not None:
        sm, s_note = struct_model, "given"
    calib: dict[int, dict[str, Any]] = {}
    if n_sim > 0 and family:
        sched = max((m["epochs"] for m in meta), key=len)
        for n in sorted({c["n_seeds"] for c in cells if c["n_seeds"] > 0}):
            calib[n] = _calibrate(
                sched, n, family, fm, sm, f_mid, n_sim, seed, alpha, margin_evals, kw
            )
    fallback = [
        calib[c["n_seeds"]]["lag_sd_evals"]
        if c["n_seeds"] in calib and math.isfinite(calib[c["n_seeds"]]["lag_sd_evals"])
        else DEFAULT_LAG_SD_EVALS
        for c in cells
    ]
    labelled = label_cells(
        cells,
        step=[m["step"] for m in meta],
        alpha=alpha,
        lead_of_interest=lead_of_interest,
        fallback_sd_evals=fallback,
    )
    out = []
    for r, m in zip(labelled, meta):
        rec = {**m["key"], "verdict": r.pop("verdict")}
        r.pop("lags")
        rec.update(r)
        rec.update(
            excluded=m["excluded"],
            step=m["step"],
            median_lag_evals=r["median_lag"] / m["step"],
            seeds=m["seeds"],
            calibration=calib.get(r["n_seeds"]),
            curve_models={
                "func": {**fm.to_dict(), "source": f_note},
                "struct": {**sm.to_dict(), "source": s_note},
            },
        )
        out.append(jsonable(rec))
    return out
