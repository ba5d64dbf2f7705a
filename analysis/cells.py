"""How a study is cut into the cells its claims and timing are judged in: grid points, or bins
of λ for an adaptive search.

A grid (:func:`analysis.response.study_design`) is judged per cell: one value of every swept key,
each λ > 0 against the λ = 0 seeds of the same cell. An adaptive search (a continuous key, or a
sparse grid) has no such cells: every trial sits at its own point. Its λ is cut into declared bins
(:func:`analysis.response.bin_key`; λ = 0 is its own bin, the controls), crossed with the keys that
take few values (such as K); every other continuous key (such as the learning rate) is pooled
within a bin, and :class:`Cells` says which. Claims per bin are judged against the fitted λ → 0
limit (:func:`analysis.response.binned_claims`), so no λ = 0 trial is required.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analysis.response import (
    LOG_SPAN,
    MAX_LEVELS,
    Binning,
    Design,
    assign_bins,
    bin_key,
    study_design,
)
from analysis.runs import StudyData, analysed_seeds
from analysis.verdicts import verdict_cells
from study.contract.params import PARAM_MI_WEIGHT as LAMBDA

__all__ = ["N_BINS", "Cells", "log_axis", "study_cells"]

N_BINS = 4  # bins of λ over its positive values in an adaptive search


def log_axis(values: Any) -> bool:
    """Whether a key is shown (and binned) on a log axis: numeric, none negative, and its
    positive values spanning more than :data:`analysis.response.LOG_SPAN`, whatever the
    sampler's density (TPE crowds around its best region, which can mislead the median rule
    of :func:`analysis.response.log_scale`). Zeros (λ = 0 controls) are shown apart."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    pos = v[v > 0]
    return bool(len(pos) >= 2 and not (v < 0).any() and pos.max() / pos.min() > LOG_SPAN)


class Cells(NamedTuple):
    """The cells of a study and the per-seed table to judge them on."""

    design: Design  # grid or adaptive, and why
    keys: list[str]  # the cell keys, λ first (its bin labels in an adaptive search)
    seeds: pd.DataFrame  # the analysed seeds, as loaded
    cell_seeds: pd.DataFrame  # the same rows; λ holds its bin label when `binning` is set
    binning: Binning | None  # the bins of λ (adaptive searches with a numeric λ)
    pooled: list[str]  # swept keys pooled within a cell (continuous keys other than λ)
    statement: str  # one sentence: how the cells are made


def study_cells(
    data: StudyData, *, seeds: pd.DataFrame | None = None, n_bins: int = N_BINS
) -> Cells:
    """The cells of `data`: grid cells, or bins of λ crossed with the few-valued keys.

    Args:
        data: the loaded study.
        seeds: the per-seed table, default its analysed seeds (running trials left out).
        n_bins: bins of λ over its positive values (an adaptive search).
    """
    seeds = analysed_seeds(data) if seeds is None else seeds
    swept = [k for k in data.swept if k in seeds.columns]
    design = study_design(seeds, swept)
    if design.kind == "grid":
        keys = verdict_cells(swept, seeds)
        statement = (
            f"Grid: {design.reason[:1].upper()}{design.reason[1:]} Each cell is one value of "
            f"{' × '.join(keys) or 'nothing swept'}, judged against its own λ = 0 seeds."
        )
        return Cells(design, keys, seeds, seeds, None, [], statement)
    few = [k for k in swept if k != LAMBDA and design.levels.get(k, 0) <= MAX_LEVELS]
    few = [k for k in few if k not in design.continuous]
    pooled = [k for k in swept if k != LAMBDA and k not in few]
    lam = pd.to_numeric(seeds.get(LAMBDA, pd.Series(dtype=float)), errors="coerce")
    binning, cell_seeds = None, seeds
    if LAMBDA in seeds and lam.notna().any() and lam[lam > 0].nunique() >= 3:
        per_trial = (
            seeds.assign(_lam=lam).drop_duplicates("trial_id")["_lam"]
            if "trial_id" in seeds
            else lam
        )
        method = "log" if log_axis(per_trial) else "linear"
        binning = bin_key(per_trial, LAMBDA, method=method, n_bins=n_bins)
        cell_seeds = seeds.assign(**{LAMBDA: assign_bins(lam, binning).to_numpy(object)})
    keys = ([LAMBDA] if LAMBDA in seeds else []) + few
    pooled_text = f"; pooled within a cell: {', '.join(pooled)}" if pooled else ""
    bins_text = f" {binning.statement}" if binning is not None else " λ is not binned."
    statement = (
        f"Adaptive search: {design.reason}{bins_text} Cells: "
        f"{' × '.join(keys) or 'the whole study'}{pooled_text}."
    )
    return Cells(design, keys, seeds, cell_seeds, binning, pooled, statement)
