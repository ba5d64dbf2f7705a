"""The one owner of per-seed outcomes: onsets, finals, success, the chance level of Q.

Both ``study`` (``study/summary.py``, at the end of a trial) and ``analysis`` (``runs.py``, for
trials without a current ``seeds.parquet``) compute a seed's outcomes here and nowhere else
(docs/run-data.md, "Who computes what"). The module is pure NumPy at import time (pandas is
imported inside :func:`seed_table`), so the training side pulls in nothing heavy.

Onset rule (docs/run-data.md, "Onsets"): a metric's onset is the first evaluation from which its
null-referenced z-score stays ``>= z`` for ``run`` consecutive evaluations. It looks only at that
evaluation and the ``run - 1`` after it, never at the run's end, so truncating the curve after
``onset + run - 1`` evaluations cannot move it. A curve with no such stretch "did not emerge" and
is censored at the last evaluation from which an onset could still have been confirmed.

Every rule counts evaluations, never epochs, so it holds on irregular spacing (a dense start,
``train.dense_until``): ``run`` is that many evaluations, a tie is onsets at most ``TIE_EVALS``
evaluations apart, censoring is at an evaluation. An onset at the first evaluation of training
(the first after epoch 0 that observed the metric, or epoch 0 itself) is left-censored: the
metric emerged at or before it ("≤ t"), and ``Onset.left`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .rise import seed_onsets

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_FINAL_WINDOW",
    "DEFAULT_RUN",
    "DEFAULT_Z",
    "DIFFERENTIATED_Q_STRUCT",
    "FIRST",
    "ONSET_METRICS",
    "SUCCESS_THRESHOLD",
    "TASK_METRIC",
    "TIE_EVALS",
    "Onset",
    "chance_modularity",
    "final_value",
    "group_sizes",
    "half_rise",
    "onset",
    "seed_table",
    "success_metric",
    "trial_metrics",
    "which_first",
]

# docs/method.md §11: success = final accuracy > 0.9 (WM) or final mean R² > 0.96 (separation);
# differentiated = success and final q_struct > 0.1 (the paper's absolute cut, kept for
# reproduction; the null-referenced onsets below are what the timing statistics use).
TASK_METRIC = {"working_memory": "accuracy", "chaos_separation": "r2"}
SUCCESS_THRESHOLD = {"accuracy": 0.9, "r2": 0.96}
DIFFERENTIATED_Q_STRUCT = 0.1
DEFAULT_FINAL_WINDOW = 3  # evaluations averaged into a final value (train.final_window)

# Defaults of the `emergence` config section (study/config.py), chosen by the calibration in
# analysis.emergence (docs/run-data.md, "Onsets"): z = 3, run = 3 keeps the false
# "function first" rate <= alpha for identical time courses with the noise of a q_func z-score
# against a smooth q_struct z-score, and the false-emergence rate of null curves below 5 %.
DEFAULT_Z = 3.0
DEFAULT_RUN = 3
TIE_EVALS = 1  # onsets at most this many evaluations apart are a tie

# metric tag -> the curve column whose onset it is (the contract's shared names)
ONSET_METRICS = {"func": "q_func_z", "struct": "q_struct_z"}
# which-first outcomes of one seed
FIRST = ("function", "structure", "tie", "neither")


def success_metric(task: str | None) -> str:
    """``accuracy`` for working memory (and unknown tasks), ``r2`` for chaos separation."""
    return TASK_METRIC.get(task or "", "accuracy")


def group_sizes(n_hidden: int, n_groups: int, sizes: Sequence[int] | None = None) -> list[int]:
    """Sizes of the K contiguous subgroups of N units.

    Args:
        n_hidden: N, the number of units.
        n_groups: K, the number of groups, 1 <= K <= N.
        sizes: explicit sizes (K positive ints summing to N); by default as equal as possible,
            larger groups first (N=10, K=3 gives [4, 3, 3]).

    Returns:
        The K group sizes.

    Raises:
        ValueError: when the sizes cannot partition N units into K groups.
    """
    n, k = int(n_hidden), int(n_groups)
    if not 1 <= k <= n:
        raise ValueError(
            f"group_sizes(): 1 <= n_groups <= n_hidden must hold, but got n_hidden={n_hidden}, "
            f"n_groups={n_groups}."
        )
    if sizes is None:
        base, extra = divmod(n, k)
        return [base + 1] * extra + [base] * (k - extra)
    out = [int(s) for s in sizes]
    if len(out) != k or sum(out) != n or min(out) < 1:
        raise ValueError(
            f"group_sizes(): sizes must be {k} positive ints summing to n_hidden={n}, but got "
            f"sizes={list(sizes)}."
        )
    return out


def chance_modularity(n_hidden: int, n_groups: int, sizes: Sequence[int] | None = None) -> float:
    """Newman Q of the fixed partition on the complete graph with equal weights: Q's chance level.

    Q_chance = Σ_c [n_c(n_c − 1) / (N(N − 1)) − (n_c / N)²], which is −1/(2(N − 1)) for two equal
    halves (docs/ground-truth.md). A graph with no group structure sits here, not at 0.
    """
    n = int(n_hidden)
    if n < 2:
        raise ValueError(f"chance_modularity(): n_hidden must be >= 2, but got n_hidden={n}.")
    nc = np.asarray(group_sizes(n, n_groups, sizes), dtype=float)
    return float(np.sum(nc * (nc - 1.0) / (n * (n - 1.0)) - (nc / n) ** 2))


def final_value(values: Any, window: int = DEFAULT_FINAL_WINDOW, epochs: Any = None) -> float:
    """A seed's final value: the mean of its last ``window`` finite evaluations (NaN if none).

    ``values`` (T,) is one metric at every evaluation of the run, in epoch order, NaN where the
    metric was not measured. With ``epochs`` (T,) only values from the second half of the run
    count (``epoch >= epochs[-1] / 2``): a metric measured at a few evaluations (the held-out
    critic, the lesions) averages its last ``window`` values there, and a value from the start
    of training is never part of a final one (NaN if the metric has none in the second half).
    """
    x = np.asarray(values, dtype=float).reshape(-1)
    keep = np.isfinite(x)
    if epochs is not None:
        t = np.asarray(epochs, dtype=float).reshape(-1)
        if t.size:
            keep &= t >= t[-1] / 2
    x = x[keep]
    return float(x[-int(window) :].mean()) if x.size else math.nan


@dataclass(frozen=True)
class Onset:
    """Onset of one z-score curve under the rule of :func:`onset`."""

    epoch: float  # onset epoch, NaN when the metric did not emerge
    emerged: bool
    censor: float  # last epoch from which an onset could still be confirmed; NaN if none
    index: int  # onset's evaluation index, -1 when not emerged
    # left-censored: emerged at the first evaluation of training that observed the metric (no
    # finite value before it at an epoch > 0), so the onset is only known to be <= epoch
    left: bool = False

    @property
    def duration(self) -> float:
        """Time to emergence for survival analysis: the onset, else the censoring epoch."""
        return self.epoch if self.emerged else self.censor


def _check_curve(where: str, epochs: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and values as float arrays of shape (T,), validated."""
    try:
        t = np.asarray(epochs, dtype=float)
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where}: epochs and values must be numeric arrays ({e}).") from e
    if t.ndim != 1 or x.shape != t.shape:
        raise ValueError(
            f"{where}: epochs and values must have the same shape (T,), but got epochs shape "
            f"{t.shape} and values shape {x.shape}."
        )
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{where}: epochs must be finite, but got {t.tolist()}.")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError(f"{where}: epochs must be strictly increasing, but got {t.tolist()}.")
    return t, x


def onset(epochs: Any, z: Any, *, threshold: float = DEFAULT_Z, run: int = DEFAULT_RUN) -> Onset:
    """First evaluation from which the z-score stays ``>= threshold`` for ``run`` evaluations.

    A non-finite value (a skipped or diverged evaluation) breaks a stretch like a value below the
    threshold. The decision at evaluation i uses only z[i : i + run], so the onset does not depend
    on anything after it plus ``run - 1`` evaluations. Without an onset the curve is censored at
    ``epochs[T - run]``, the last start from which ``run`` evaluations were observed (the latest
    finite value's position bounds it when the tail is NaN). Epochs may be irregularly spaced:
    the rule counts evaluations. An onset with no finite value before it at an epoch > 0 (at
    epoch 0, at the first evaluation after it, or at the first that observed the metric) is
    left-censored, ``left = True``: the metric emerged at or before that epoch.

    Args:
        epochs: evaluation epochs, shape (T,), strictly increasing.
        z: the metric's z-score at those epochs, shape (T,); NaN allowed.
        threshold: the z-score a stretch must reach, finite.
        run: how many consecutive evaluations must reach it, >= 1.

    Returns:
        The :class:`Onset`.

    Raises:
        ValueError: on shapes, non-increasing epochs or out-of-range options.
    """
    t, x = _check_curve("onset()", epochs, z)
    if isinstance(run, bool) or not isinstance(run, (int, np.integer)) or run < 1:
        raise ValueError(f"onset(): run must be an int >= 1, but got run={run!r}.")
    if not math.isfinite(threshold):
        raise ValueError(f"onset(): threshold must be finite, but got threshold={threshold}.")
    finite = np.flatnonzero(np.isfinite(x))
    last = int(finite[-1]) if finite.size else -1  # a NaN tail was never observed
    censor_i = last - run + 1
    censor = float(t[censor_i]) if censor_i >= 0 else math.nan
    above = np.zeros(t.size + 1, dtype=np.int64)
    above[1:] = np.cumsum(np.nan_to_num(x, nan=-np.inf) >= threshold)
    if t.size >= run:
        # stretch[i] = number of evaluations >= threshold among i .. i + run - 1
        stretch = above[run:] - above[:-run]
        hits = np.flatnonzero(stretch == run)
        if hits.size:
            i = int(hits[0])
            earlier = np.isfinite(x[:i]) & (t[:i] > 0)
            return Onset(float(t[i]), True, censor, i, left=not bool(earlier.any()))
    return Onset(math.nan, False, censor, -1)


def half_rise(epochs: Any, values: Any, final_window: int = DEFAULT_FINAL_WINDOW) -> float:
    """Descriptive only, run-length dependent: first epoch reaching X_0 + ½(X_end − X_0).

    X_0 is the first finite value and X_end the mean of the last ``final_window`` finite values.
    A curve that keeps rising until the end gets a later half-rise the longer it runs, so this
    number is never used for a test; NaN for a falling or flat curve.
    """
    t, x = _check_curve("half_rise()", epochs, values)
    ok = np.isfinite(x)
    t, x = t[ok], x[ok]
    if x.size < 2:
        return math.nan
    x0 = float(x[0])
    rise = float(np.mean(x[-min(int(final_window), x.size - 1) :])) - x0
    if not rise > 0:
        return math.nan
    return float(t[np.argmax(x >= x0 + 0.5 * rise)])


def which_first(
    func: Onset, struct: Onset, step: float | None = None, tie_evals: int = TIE_EVALS
) -> str:
    """``function``, ``structure``, ``tie`` or ``neither`` for one seed.

    Both emerged: the earlier one, or ``tie`` when the onsets are at most ``tie_evals``
    evaluations apart. Without ``step`` the evaluations are counted by the onsets' indices (both
    from :func:`onset` on the same epochs), which holds on irregular spacing; with ``step``
    (a regular grid) the onsets may be at most ``tie_evals * step`` epochs apart, the same
    on a regular grid. Only one emerged by the end: that one came first (the other's onset lies
    after its censoring time: censored evidence for that side).
    """
    if func.emerged and struct.emerged:
        lag = struct.epoch - func.epoch
        if step is not None:
            tie = abs(lag) <= tie_evals * step + 1e-9
        elif func.index >= 0 and struct.index >= 0:
            tie = abs(struct.index - func.index) <= tie_evals
        else:
            raise ValueError(
                "which_first(): onsets without evaluation indices (index -1) need step, but "
                "got step=None."
            )
        if tie:
            return "tie"
        return "function" if lag > 0 else "structure"
    if func.emerged:
        return "function"
    if struct.emerged:
        return "structure"
    return "neither"


def seed_table(
    curves: pd.DataFrame,
    *,
    task: str | None,
    final_window: int = DEFAULT_FINAL_WINDOW,
    z: float = DEFAULT_Z,
    run: int = DEFAULT_RUN,
    tie_evals: int = TIE_EVALS,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One trial's per-seed outcomes (the rows of seeds.parquet) from its curves.

    Columns: ``seed``, ``seed_value`` (when in the curves), ``final.<metric>`` for every metric,
    ``success``, ``differentiated``, and per onset metric tag (``func``, ``struct``):
    ``t_<tag>`` (onset epoch, NaN if it did not emerge), ``<tag>_emerged``, ``t_<tag>_censor``
    (the censoring epoch), ``t_<tag>_left`` (left-censored: the onset is only known to be
    ``<= t_<tag>``), ``t_<tag>_half`` (descriptive half-rise of q_<tag>); then ``lag``
    (t_struct − t_func, NaN unless both emerged), ``first`` (:func:`which_first`) and
    ``onsets_measured`` (both z-score columns present). Without a z-score column the onsets of
    that metric are NaN, never emerged, and ``first`` is ``neither``. Then the timing onsets
    (``onset.*``, ``lag.*``) of :func:`study.contract.rise.seed_onsets`, with the same z and run.

    Args:
        curves: one row per (seed, evaluation) with ``seed``, ``epoch`` and metric columns.
        task: the task name (decides the success metric).
        final_window: evaluations averaged into a final value.
        z: onset threshold (``emergence.z``).
        run: consecutive evaluations (``emergence.run``).
        tie_evals: onsets this many evaluations apart or fewer are a tie.
        metrics: metric columns to take finals of; default every non-key column.
    """
    import pandas as pd

    keys = {"trial_id", "run_id", "seed", "seed_value", "epoch"}
    if metrics is None:
        metrics = [c for c in curves.columns if c not in keys]
    task_metric = success_metric(task)
    rows = []
    measured = all(c in curves.columns for c in ONSET_METRICS.values())
    for seed, c in curves.sort_values("epoch", kind="stable").groupby("seed", sort=True):
        epochs = c["epoch"].to_numpy(float)
        row: dict[str, Any] = {"seed": seed}
        if "seed_value" in c:
            row["seed_value"] = c["seed_value"].iloc[0]
        for m in metrics:
            row[f"final.{m}"] = final_value(c[m].to_numpy(float), final_window, epochs)
        acc = row.get(f"final.{task_metric}", math.nan)
        success = bool(acc > SUCCESS_THRESHOLD[task_metric])
        row["success"] = success
        row["differentiated"] = success and bool(
            row.get("final.q_struct", math.nan) > DIFFERENTIATED_Q_STRUCT
        )
        ons = {}
        for tag, col in ONSET_METRICS.items():
            if col in c:
                o = onset(epochs, c[col].to_numpy(float), threshold=z, run=run)
            else:
                o = Onset(math.nan, False, math.nan, -1)
            ons[tag] = o
            row[f"t_{tag}"] = o.epoch
            row[f"{tag}_emerged"] = o.emerged
            row[f"t_{tag}_censor"] = o.censor
            row[f"t_{tag}_left"] = o.left
            raw = f"q_{tag}"
            row[f"t_{tag}_half"] = (
                half_rise(epochs, c[raw].to_numpy(float), final_window) if raw in c else math.nan
            )
        row["lag"] = ons["struct"].epoch - ons["func"].epoch
        row["first"] = which_first(ons["func"], ons["struct"], tie_evals=tie_evals)
        row["onsets_measured"] = measured
        rows.append(row)
    table = pd.DataFrame(rows)
    if not len(table):
        return table
    # the timing onsets (half-rise, decided online) of q_func_z and every structure measure
    return table.merge(seed_onsets(curves, threshold=z, run=run), on="seed", how="left")


def trial_metrics(seeds: pd.DataFrame, metrics: Sequence[str] = ()) -> dict[str, float]:
    """The trial's summary metrics from its per-seed table (MLflow, step = last epoch).

    ``final.<m>`` = median over seeds of the seeds' finals; ``final.success_rate`` and
    ``final.differentiated_rate``; ``t_func``, ``t_struct``, ``lag``, ``t_func_half``,
    ``t_struct_half`` = medians over the seeds where defined (left out when none is);
    ``n_seeds``, ``n_func_emerged``, ``n_struct_emerged`` and the which-first counts
    ``n_func_first``, ``n_struct_first``, ``n_tie``, ``n_neither``.
    """
    out: dict[str, float] = {}
    n = len(seeds)
    for m in metrics:
        col = f"final.{m}"
        if col in seeds:
            v = seeds[col].to_numpy(float)
            if np.isfinite(v).any():
                out[col] = float(np.nanmedian(v))
    out["final.success_rate"] = float(seeds["success"].mean()) if n else math.nan
    out["final.differentiated_rate"] = float(seeds["differentiated"].mean()) if n else math.nan
    for key in ("t_func", "t_struct", "lag", "t_func_half", "t_struct_half"):
        v = seeds[key].to_numpy(float) if n and key in seeds else np.array([])
        if np.isfinite(v).any():
            out[key] = float(np.nanmedian(v))
    out["n_seeds"] = float(n)
    for tag in ONSET_METRICS:
        out[f"n_{tag}_emerged"] = float(seeds[f"{tag}_emerged"].sum()) if n else 0.0
    first = seeds["first"] if n else []
    for name, key in zip(FIRST, ("n_func_first", "n_struct_first", "n_tie", "n_neither")):
        out[key] = float(sum(f == name for f in first))
    return out
