"""The timing verdicts of a study, per cell and per ordering, and their calibration at its design.

:func:`study_verdicts` judges every cell of a study (a grid point, or any grouping of seeds the
caller gives) for each ordering: function (``q_func_z``) against each structure measure of
:data:`study.contract.names.TIMING_STRUCTURE` (Q(|W|) as ``q_struct_z`` and ΔW as
``dw_block_z``). The per-seed timing onsets come from the seeds table's ``onset.*`` columns
(written by :func:`study.contract.rise.seed_onsets` into seeds.parquet, the one owner; computed
from the curves when the table predates them). Per cell and ordering: the censoring-aware
signed-rank test of the lags, the TOST of co-emergence, the CI of P(function first), the
smallest detectable lead and the power for a lead of 2 evaluations (:mod:`.verdicts`).

Families: the BH family of an ordering is the table's **treated** cells (λ > 0) that have seeds
to judge, one family per ordering; a cell is never pooled with another cell or across λ. λ = 0
control cells are judged alone at their raw p (any order there is a false one) and do not
dilute the treated family; a cell whose seeds were all left out reads :data:`NO_SEEDS`.

:func:`study_calibration` runs this pipeline on synthetic cells at the study's own design: for
each ordering and each cell size n, in BH families of the study's treated-cell count, with the
amplitudes, widths, noise and midpoint range measured from the study's treated curves
(:func:`.simulate.measure_curve_params`): the no-lead false-ordering rate and the power at known
leads of ±1, ±2, ±4 evaluations (seeds' own lags scattered as in the study), then the shipped
scenario suite (:func:`.calibration.scenarios`) around the measured models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from study.contract.names import TIMING_FUNCTION, TIMING_STRUCTURE
from study.contract.params import PARAM_MI_WEIGHT
from study.contract.power import (
    DEFAULT_LAG_SD_EVALS,
    LEAD_OF_INTEREST_EVALS,
    RESOLUTION_EVALS,
    power_at,
)
from study.contract.rise import (
    DETECT_RUN,
    DETECT_Z,
    ONSET_RULE,
    RULE_COLUMN,
    STEP_COLUMN,
    TimingOnset,
    onset_column,
    seed_onset_columns,
    seed_onsets,
)

from .calibration import DEFAULT_FUNC, DEFAULT_STRUCT, Scenario, calibrate_scenario, scenarios
from .simulate import CurveParams, measure_curve_params
from .verdicts import ALPHA, MARGIN_EVALS, cell_statistics, label_cells

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CALIBRATION_COLUMNS",
    "NO_SEEDS",
    "STUDY_LEADS",
    "VERDICT_COLUMNS",
    "ordering_label",
    "study_calibration",
    "study_verdicts",
    "study_verdicts_wide",
    "with_onsets",
]

NO_SEEDS = "no seeds to time"  # the verdict of a cell without a seed to judge
STUDY_LEADS = (0.0, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0)  # evaluations, > 0: function first

# the columns after the cell keys, in order (study_verdicts)
VERDICT_COLUMNS = (
    "ordering",
    "struct",
    "verdict",
    "n",
    "why",
    "control",
    "family",
    "p_order",
    "p_order_bh",
    "p_tost",
    "p_tost_bh",
    "u",
    "n_func_first",
    "n_struct_first",
    "n_undecided",
    "p_function_first",
    "ci_low",
    "ci_high",
    "median_lag_evals",
    "lag_sd_evals",
    "detectable_lead_evals",
    "power",
    "power_note",
    "step",
    "n_func_onset",
    "n_func_left",
    "n_func_unresolved",
    "n_func_not_detected",
    "n_struct_onset",
    "n_struct_left",
    "n_struct_unresolved",
    "n_struct_not_detected",
    "n_failed",
)
CALIBRATION_COLUMNS = (
    "ordering",
    "struct",
    "n_seeds",
    "family",
    "scenario",
    "lead_evals",
    "n_cells",
    "false_ordering",
    "power",
    "co_emergent",
    "never",
    "lag_jitter_evals",
    "lag_sd_evals",
    "func_model",
    "struct_model",
)


def ordering_label(struct: str, structures: Any = TIMING_STRUCTURE) -> str:
    """'function vs <label>' of a structure measure (its label in ``structures``, else its
    column name)."""
    for s in structures:
        if s[0] == struct:
            return f"function vs {s[2] if len(s) > 2 else s[0]}"
    return f"function vs {struct}"


def _onset_cols(func: str, structures: Any) -> tuple[str, ...]:
    return seed_onset_columns(func, [(s[0], s[1]) for s in structures])


def with_onsets(
    seeds: pd.DataFrame,
    curves: pd.DataFrame | None,
    *,
    func: str = TIMING_FUNCTION,
    structures: Any = TIMING_STRUCTURE,
    z: float = DETECT_Z,
    run: int = DETECT_RUN,
) -> pd.DataFrame:
    """``seeds`` with the timing-onset columns of every seed: kept where present and computed
    by the current rule (``onset.rule`` equal to :data:`study.contract.rise.ONSET_RULE`), else
    computed from ``curves`` (one trial at a time, :func:`study.contract.rise.seed_onsets`)
    and joined by ``trial_id`` (when both tables have it) and ``seed``. Columns of an older
    rule are kept only when no curves are given.

    Raises:
        ValueError: when the columns are missing and no curves are given.
    """
    cols = _onset_cols(func, structures)
    present = all(c in seeds.columns for c in cols if c != RULE_COLUMN)
    current = RULE_COLUMN in seeds.columns and bool((seeds[RULE_COLUMN] == ONSET_RULE).all())
    no_curves = curves is None or not len(curves)
    if present and (current or no_curves):
        return seeds
    if no_curves:
        missing = [c for c in cols if c not in seeds.columns]
        raise ValueError(
            f"study_verdicts(): the seeds table has no timing onsets ({missing[:3]} ... are "
            f"missing) and no curves were given to compute them from."
        )
    import pandas as pd

    structs = [(s[0], s[1]) for s in structures]
    keys = ["trial_id", "seed"] if "trial_id" in seeds and "trial_id" in curves else ["seed"]
    groups = curves.groupby("trial_id", sort=False) if keys[0] == "trial_id" else [(None, curves)]
    frames = []
    for trial, c in groups:
        f = seed_onsets(c, func=func, structures=structs, threshold=z, run=run)
        if trial is not None:
            f.insert(0, "trial_id", trial)
        frames.append(f)
    onsets = pd.concat(frames, ignore_index=True)
    base = seeds.drop(columns=[c for c in cols if c in seeds.columns])
    return base.merge(onsets, on=keys, how="left")


def _onset_of(row: Any, metric: str) -> TimingOnset | None:
    """The seed's timing onset of ``metric`` from its columns (None when not measured)."""
    status = row.get(onset_column(metric, "status"))
    if not isinstance(status, str):
        return None
    nan = math.nan

    def num(field: str | None) -> float:
        v = row.get(onset_column(metric, field))
        return float(v) if v is not None else nan

    return TimingOnset(
        num(None),
        num("lo"),
        num("hi"),
        status,
        num("detectable_from"),
        nan,
        num("decided_at"),
        math.isfinite(num("decided_at")),
        nan,
        nan,
        nan,
        nan,
    )


def _is_control(key: dict[str, Any], control_key: str | None) -> bool:
    """Whether a cell is a λ = 0 control (its control key is numerically 0)."""
    if not control_key or control_key not in key:
        return False
    try:
        return float(key[control_key]) == 0.0
    except (TypeError, ValueError):
        return False


def _p(p: float) -> str:
    return f"{p:.2g}" if math.isfinite(p) else "–"


def _why(r: dict[str, Any], margin_evals: float) -> str:
    """One line: the counts and the test behind the verdict (the power note when
    inconclusive)."""
    n, v = r["n"], r["verdict"]
    if n == 0:
        failed = f"; {r['n_failed']} failed the task" if r["n_failed"] else ""
        return f"no seed with both onsets measured{failed}"
    miss = {
        tag: r[f"n_{tag}_unresolved"] + r[f"n_{tag}_not_detected"] for tag in ("func", "struct")
    }
    if v.endswith(("never emerged", "neither emerged")):
        text = (
            f"no confirmed rise: function in {miss['func']}, structure in {miss['struct']} of "
            f"{n} seeds (unresolved or not detected)"
        )
    else:
        counts = (
            f"function first in {r['n_func_first']}, structure first in "
            f"{r['n_struct_first']}, undecided {r['n_undecided']} of {n} seeds"
        )
        if v in ("function first", "structure first"):
            text = (
                f"{counts}; signed-rank U = {r['u']}, p = {_p(r['p_order'])} "
                f"(BH {_p(r['p_order_bh'])})"
            )
        elif v == "co-emergent":
            text = (
                f"{counts}; TOST within ±{margin_evals:g} evaluations p = {_p(r['p_tost'])} "
                f"(BH {_p(r['p_tost_bh'])}), median lag {r['median_lag_evals']:.2f} evaluations"
            )
        else:
            text = (
                f"{counts}; order p (BH) = {_p(r['p_order_bh'])}, TOST p (BH) = "
                f"{_p(r['p_tost_bh'])}; {r['power_note']}"
            )
    return f"control (λ = 0), any order is false: {text}" if r["control"] else text


def study_verdicts(
    seeds: pd.DataFrame,
    by: Sequence[str],
    *,
    curves: pd.DataFrame | None = None,
    func: str = TIMING_FUNCTION,
    structures: Any = TIMING_STRUCTURE,
    control_key: str | None = PARAM_MI_WEIGHT,
    exclude_failed: bool = True,
    alpha: float = ALPHA,
    margin_evals: float = MARGIN_EVALS,
    lead_of_interest: float = LEAD_OF_INTEREST_EVALS,
    fallback_sd_evals: float = DEFAULT_LAG_SD_EVALS,
    z: float = DETECT_Z,
    run: int = DETECT_RUN,
) -> pd.DataFrame:
    """One timing verdict per cell and ordering (module docstring).

    Args:
        seeds: one row per seed (a study's analysed seeds, already restricted to the seeds a
            verdict may use: trials cut short left out), with the ``by`` columns and the
            ``onset.*`` columns of seeds.parquet (or ``trial_id``/``seed`` to match ``curves``).
        by: the cell keys (λ first, then every other swept key; bin labels work too).
        curves: the study's curves, used only when ``seeds`` lacks the onset columns.
        func, structures: the functional curve and the structure measures (metric, direction,
            label), default :data:`study.contract.names.TIMING_STRUCTURE`. An ordering whose
            structure curve no seed has is left out (not measured in this study).
        control_key: the key whose value 0 marks a control cell (λ); None: no controls.
        exclude_failed: leave out seeds whose ``success`` is false (networks that failed the
            task; counted in ``n_failed``).
        alpha, margin_evals, lead_of_interest: the level after BH, the TOST margin and the lead a
            cell should detect (evaluations of the regular schedule).
        fallback_sd_evals: the lag spread (evaluations) behind the power of cells with fewer
            than 4 point lags (default: the documented noise model, 2 evaluations).
        z, run: the detection rule, when the onsets are computed from ``curves``.

    Returns:
        One row per (cell, ordering), sorted by the cell keys: the ``by`` columns, then
        :data:`VERDICT_COLUMNS`: ``ordering`` ("function vs Q(|W|)"), ``struct`` (its column),
        ``verdict``, ``n`` (seeds with both onsets measured), ``why`` (one line), ``control``,
        ``family`` (BH family size), ``p_order``/``p_order_bh`` (signed-rank test),
        ``p_tost``/``p_tost_bh``, ``u``, the which-first counts, ``p_function_first`` with its
        95 % CI ``ci_low``/``ci_high``, ``median_lag_evals``, ``lag_sd_evals``,
        ``detectable_lead_evals`` (80 % power at α/family), ``power`` (for a lead of
        ``lead_of_interest`` evaluations), ``power_note``, ``step`` (epochs per regular
        evaluation), the onset status counts and ``n_failed``. Empty (with these columns) when
        there is no seed.
    """
    import pandas as pd

    by = list(by)
    columns = [*by, *VERDICT_COLUMNS]
    if not len(seeds):
        return pd.DataFrame(columns=columns)
    missing = [c for c in by if c not in seeds.columns]
    if missing:
        raise ValueError(
            f"study_verdicts(): the cell keys {missing} are not columns of the seeds table "
            f"(columns: {list(seeds.columns)})."
        )
    table = with_onsets(seeds, curves, func=func, structures=structures, z=z, run=run)
    failed = pd.Series(False, index=table.index)
    if exclude_failed and "success" in table:
        failed = ~table["success"].astype("boolean").fillna(False).astype(bool)
    table = table.assign(_failed=failed.to_numpy(bool))
    groups = table.groupby(by, sort=True, dropna=False) if by else [((), table)]
    cells = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        cells.append((dict(zip(by, key)), g[~g["_failed"]], int(g["_failed"].sum())))
    rows = []
    for struct, *_ in structures:
        status = onset_column(struct, "status")
        if not table[status].map(lambda v: isinstance(v, str)).any():
            continue  # this study did not measure the structure curve
        stats, meta = [], []
        for key, g, n_failed in cells:
            of, os_, steps = [], [], []
            for r in g.to_dict("records"):
                f, s = _onset_of(r, func), _onset_of(r, struct)
                if f is not None and s is not None:
                    of.append(f)
                    os_.append(s)
                    steps.append(r.get(STEP_COLUMN, math.nan))
            good = np.asarray(steps, float)
            good = good[np.isfinite(good)]
            step = float(np.median(good)) if good.size else 1.0
            stats.append(cell_statistics(of, os_, step=step, margin_evals=margin_evals))
            meta.append((key, step, n_failed, _is_control(key, control_key)))
        # the family: treated cells with seeds to judge (an empty cell's p = 1 only dilutes)
        treated = [i for i, m in enumerate(meta) if not m[3] and stats[i]["n_seeds"]]
        labelled: dict[int, dict[str, Any]] = {}
        if treated:
            out = label_cells(
                [stats[i] for i in treated],
                step=[meta[i][1] for i in treated],
                alpha=alpha,
                lead_of_interest=lead_of_interest,
                fallback_sd_evals=fallback_sd_evals,
            )
            labelled.update(zip(treated, out))
        for i, m in enumerate(meta):
            if i not in labelled:  # controls, and cells without seeds, alone
                labelled[i] = label_cells(
                    [stats[i]],
                    step=m[1],
                    alpha=alpha,
                    lead_of_interest=lead_of_interest,
                    fallback_sd_evals=fallback_sd_evals,
                )[0]
        for i, (key, step, n_failed, control) in enumerate(meta):
            r = labelled[i]
            n = r["n_seeds"]
            sd_evals = (
                r["lag_sd"] / step if math.isfinite(r["lag_sd"]) else float(fallback_sd_evals)
            )
            level = alpha / max(r["family"], 1)
            power = (
                power_at(max(lead_of_interest - RESOLUTION_EVALS, 0.0) / sd_evals, n, level)
                if n
                else 0.0
            )
            ci = r["ci_function_first"]
            row = {
                **key,
                "ordering": ordering_label(struct, structures),
                "struct": struct,
                "verdict": r["verdict"] if n else NO_SEEDS,
                "n": n,
                "control": control,
                "family": r["family"],
                "p_order": r["p_order"],
                "p_order_bh": r["p_order_bh"],
                "p_tost": r["p_tost"],
                "p_tost_bh": r["p_tost_bh"],
                "u": r["u"],
                "n_func_first": r["n_func_first"],
                "n_struct_first": r["n_struct_first"],
                "n_undecided": r["n_undecided"],
                "p_function_first": r["p_function_first"],
                "ci_low": ci[0],
                "ci_high": ci[1],
                "median_lag_evals": r["median_lag"] / step,
                "lag_sd_evals": r["lag_sd"] / step,
                "detectable_lead_evals": r["detectable_lead_evals"],
                "power": power,
                "power_note": r["power_note"],
                "step": step,
                "n_failed": n_failed,
                **{
                    f"n_{tag}_{s}": r[f"n_{tag}_{s}"]
                    for tag in ("func", "struct")
                    for s in ("onset", "left", "unresolved", "not_detected")
                },
            }
            row["why"] = _why(row, margin_evals)
            rows.append(row)
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(rows)
    order = {s[0]: i for i, s in enumerate(structures)}
    out["_o"] = out["struct"].map(order)
    try:
        out = out.sort_values([*by, "_o"], kind="stable")
    except TypeError:  # a key mixing numbers and labels keeps its order
        out = out.sort_values("_o", kind="stable")
    return out.drop(columns="_o").reset_index(drop=True)[columns]


METHOD = (
    "half-rise onsets (half-way from each curve's first level to its fitted plateau; "
    "amplitude-invariant, decided online), censoring-aware signed-rank lag test beyond "
    "±0.25 evaluations and TOST per cell and ordering, BH within the "
    "treated cells; docs/timing.md"
)
# the per-ordering columns study_verdicts_wide repeats with a ".<struct>" suffix
WIDE_COLUMNS = (
    "verdict",
    "n",
    "why",
    "n_func_first",
    "n_struct_first",
    "n_undecided",
    "p_order_bh",
    "p_tost_bh",
    "median_lag_evals",
    "detectable_lead_evals",
    "power",
)


def study_verdicts_wide(seeds: pd.DataFrame, by: Sequence[str], **kwargs: Any) -> pd.DataFrame:
    """:func:`study_verdicts` with one row per cell, for a consumer that takes one timing
    verdict per cell (a verdict matrix, ``analysis.verdicts.timing_verdicts``).

    The first ordering the study measured (function vs Q(|W|) by default) gives the row's
    ``ordering``, ``verdict``, ``n``, ``why`` and all of :data:`VERDICT_COLUMNS`; every ordering
    (that one included) also gives ``<column>.<struct>`` for the columns of
    :data:`WIDE_COLUMNS` (e.g. ``verdict.dw_block_z``, ``why.dw_block_z``). ``attrs["method"]``
    names the pipeline in words. Arguments as :func:`study_verdicts`.
    """
    import pandas as pd

    by = list(by)
    long = study_verdicts(seeds, by, **kwargs)
    if not len(long):
        out = long.drop(columns=["struct"])
        out.attrs["method"] = METHOD
        return out
    order = list(dict.fromkeys(long["struct"]))
    first = long[long["struct"] == order[0]].drop(columns=["struct"]).reset_index(drop=True)
    for struct in order:
        part = long[long["struct"] == struct]
        extra = part[[*by, *WIDE_COLUMNS]].rename(
            columns={c: f"{c}.{struct}" for c in WIDE_COLUMNS}
        )
        first = (
            first.merge(extra, on=by, how="left")
            if by
            else pd.concat([first, extra.reset_index(drop=True)], axis=1)
        )
    first.attrs["method"] = METHOD
    return first


def _treated_curves(
    curves: pd.DataFrame, seeds: pd.DataFrame, by: list[str], control_key: str | None
) -> pd.DataFrame:
    """The curves of the seeds a verdict uses in treated cells (controls and failed networks
    out), with the cell keys attached; all curves when they cannot be matched."""
    keys = [k for k in ("trial_id", "seed") if k in seeds and k in curves]
    keep = seeds
    if "success" in keep:
        keep = keep[keep["success"].astype("boolean").fillna(False).astype(bool)]
    if control_key and control_key in keep:
        import pandas as pd

        lam = pd.to_numeric(keep[control_key], errors="coerce")
        keep = keep[~lam.eq(0.0)]
    if "seed" not in keys:
        return curves
    cols = [*keys, *(k for k in by if k not in curves.columns)]
    return curves.merge(keep[cols].drop_duplicates(keys), on=keys, how="inner")


_NEVER = ("never emerged", "neither emerged")


def _cells_curves(curves: pd.DataFrame, cells: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The rows of ``curves`` in the given cells (matched on the ``by`` columns both have)."""
    keys = [k for k in by if k in curves and k in cells]
    if not keys:
        return curves
    return curves.merge(cells[keys].drop_duplicates(), on=keys, how="inner")


def _schedule(curves: pd.DataFrame) -> np.ndarray:
    """The study's most common complete schedule: the epochs of the trial with the most
    evaluations (ties: the first)."""
    keys = [k for k in ("trial_id", "seed") if k in curves]
    best = np.array([])
    for _, g in curves.groupby(keys, sort=True):
        t = np.unique(g["epoch"].to_numpy(float))
        if t.size > best.size:
            best = t
    return best


def _measured(
    curves: pd.DataFrame, column: str, direction: int, default: CurveParams
) -> tuple[CurveParams, tuple[float, float] | None, str]:
    """The column's measured curve model and midpoint range (the default without a rise)."""
    try:
        m = measure_curve_params(curves, column, direction=direction)
    except ValueError as e:
        return default, None, f"default ({e})"
    return m.params, m.onset_range, f"measured on {m.n_seeds} seeds"


def _model_text(p: CurveParams, note: str) -> str:
    return (
        f"amplitude {p.amplitude:.3g}, width {p.width:.3g} evaluations, noise sd {p.sd:.3g}, "
        f"rho {p.rho:.2f} ({note})"
    )


def study_calibration(
    curves: pd.DataFrame,
    seeds: pd.DataFrame,
    by: Sequence[str],
    *,
    verdicts: pd.DataFrame | None = None,
    func: str = TIMING_FUNCTION,
    structures: Any = TIMING_STRUCTURE,
    control_key: str | None = PARAM_MI_WEIGHT,
    n_sim: int = 100,
    suite: bool = True,
    seed: int = 0,
    alpha: float = ALPHA,
    margin_evals: float = MARGIN_EVALS,
    func_model: CurveParams | None = None,
    struct_models: dict[str, CurveParams] | None = None,
    n_seeds: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The calibration table of the study's timing verdicts, at its own design (module
    docstring): one row per (ordering, cell size n, scenario).

    Args:
        curves: the study's curves (``trial_id``, ``seed``, ``epoch``, the curve columns).
        seeds, by: as for :func:`study_verdicts` (which gives the cell sizes and family).
        verdicts: :func:`study_verdicts` of the same seeds, if already computed (the wide form
            of :func:`study_verdicts_wide` is recomputed in the long one).
        n_sim: simulated cells per scenario (rounded up to whole families; Monte-Carlo SE of a
            5 % rate at 100 cells: 2.2 %).
        suite: also run the shipped scenario suite around the measured models.
        seed: seed of the random numbers (each row reproducible).
        func_model, struct_models: curve models instead of the measured ones (a per-seed fit
            under-measures smooth noise, docs/timing.md), the latter per structure column.
        n_seeds: the cell sizes to calibrate at; default every size of a treated cell.

    Returns:
        :data:`CALIBRATION_COLUMNS`: ``ordering``, ``struct``, ``n_seeds``, ``family``,
        ``scenario`` ("study: no lead", "study: function leads 2", ... then the suite's names),
        ``lead_evals``, ``n_cells``, ``false_ordering`` (no lead: either side called; a lead:
        the wrong side), ``power`` (the right side; NaN without a lead), ``co_emergent`` and
        ``never`` (the rates of those labels), ``lag_jitter_evals`` (the seeds' own lag
        scatter simulated), ``lag_sd_evals`` (median lag spread of the simulated cells), and
        the two curve models in words. Empty when no ordering has treated cells.
    """
    import pandas as pd

    by = list(by)
    if verdicts is None or "struct" not in verdicts:  # none, or the one-row-per-cell form
        verdicts = study_verdicts(
            seeds, by, curves=curves, func=func, structures=structures, control_key=control_key
        )
    rows: list[dict[str, Any]] = []
    if not len(verdicts):
        return pd.DataFrame(columns=list(CALIBRATION_COLUMNS))
    treated_curves = _treated_curves(curves, seeds, by, control_key)
    epochs = _schedule(treated_curves if len(treated_curves) else curves)
    if epochs.size < 3:
        return pd.DataFrame(columns=list(CALIBRATION_COLUMNS))
    span = epochs[-1] - epochs[0]
    directions = {s[0]: int(s[1]) for s in structures}
    func_models: dict[tuple, tuple] = {}  # the function model of each set of judged cells
    for struct, part in verdicts.groupby("struct", sort=False):
        treated = part[~part["control"].astype(bool) & (part["n"] > 0)]
        if not len(treated):
            continue
        family = len(treated)
        # the models are measured on the cells this ordering judged (a cell where a metric
        # mostly never emerged has no order to calibrate, and its flat curves would read as
        # small, noisy rises); on every treated cell when none was judged
        judged = treated[~treated["verdict"].astype(str).str.endswith(_NEVER)]
        source = _cells_curves(treated_curves, judged, by) if len(judged) else treated_curves
        if not len(source):
            source = treated_curves
        cells = tuple(map(tuple, judged[[k for k in by if k in judged]].to_numpy().tolist()))
        if cells not in func_models:  # orderings that judged the same cells share it
            func_models[cells] = _measured(source, func, 1, DEFAULT_FUNC)
        fm, f_mid, f_note = func_models[cells]
        if func_model is not None:
            fm, f_note = func_model, "given"
        mid = None
        if f_mid is not None:  # room to resolve a simulated rise (as timing_from_curves)
            lo = max(f_mid[0], epochs[0] + 0.05 * span)
            hi = min(max(f_mid[1], lo), epochs[-1] - 0.25 * span)
            mid = (lo, max(hi, lo))
        sm, _, s_note = _measured(source, struct, directions.get(struct, 1), DEFAULT_STRUCT)
        if struct_models and struct in struct_models:
            sm, s_note = struct_models[struct], "given"
        label = ordering_label(struct, structures)
        sd = pd.to_numeric(treated["lag_sd_evals"], errors="coerce").to_numpy(float)
        study_sd = float(np.median(sd[np.isfinite(sd)])) if np.isfinite(sd).any() else math.nan
        sizes = {int(v) for v in treated["n"]} if n_seeds is None else set(map(int, n_seeds))
        for n in sorted(k for k in sizes if k > 0):
            common = {
                "epochs": epochs,
                "n_seeds": n,
                "n_cells": max(n_sim, family),
                "family": family,
                "onset_range": mid,
                "alpha": alpha,
                "margin_evals": margin_evals,
            }
            base = {
                "ordering": label,
                "struct": struct,
                "n_seeds": n,
                "family": family,
                "func_model": _model_text(fm, f_note),
                "struct_model": _model_text(sm, s_note),
            }
            # the onsets' own scatter at no lead, then the seeds' extra lag scatter the study
            # shows beyond it: sqrt(study sd² − estimation sd²)
            jitter = 0.0
            results = []
            for lead in STUDY_LEADS:
                name = (
                    "study: no lead"
                    if lead == 0
                    else f"study: {'function' if lead > 0 else 'structure'} leads {abs(lead):g}"
                )
                r = calibrate_scenario(
                    Scenario(name, fm, sm, lead),
                    rng=np.random.default_rng([seed, n, int(round(4 * lead)) + 100]),
                    lag_jitter_evals=jitter,
                    **common,
                )
                if lead == 0 and math.isfinite(study_sd) and math.isfinite(r.lag_sd_evals):
                    jitter = math.sqrt(max(study_sd**2 - r.lag_sd_evals**2, 0.0))
                    if jitter > 0:  # rerun the no-lead row with the study's scatter
                        r = calibrate_scenario(
                            Scenario(name, fm, sm, lead),
                            rng=np.random.default_rng([seed, n, 100]),
                            lag_jitter_evals=jitter,
                            **common,
                        )
                results.append((r, jitter))
            if suite:
                for j, sc in enumerate(scenarios(fm, sm)):
                    r = calibrate_scenario(
                        sc, rng=np.random.default_rng([seed, n, 1000 + j]), **common
                    )
                    results.append((r, 0.0))
            for r, jit in results:
                never = sum(
                    r.rates[v]
                    for v in (
                        "structure never emerged",
                        "function never emerged",
                        "neither emerged",
                    )
                )
                rows.append(
                    {
                        **base,
                        "scenario": r.name,
                        "lead_evals": r.lead_evals,
                        "n_cells": r.n_cells,
                        "false_ordering": r.false_ordering,
                        "power": r.power,
                        "co_emergent": r.rates["co-emergent"],
                        "never": never,
                        "lag_jitter_evals": jit,
                        "lag_sd_evals": r.lag_sd_evals,
                    }
                )
    return pd.DataFrame(rows, columns=list(CALIBRATION_COLUMNS))
