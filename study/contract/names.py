"""The names config.py validates against and the torch modules implement, in one light module.

config.py must stay free of torch (validating a spec is fast), yet its Literals and its list of
summary metrics have to agree with what `study.core.mi` and `study.training.evaluation`
compute.
Both sides read the tuples below, so each list exists once; tests check that the registries of
the torch side (`study.core.estimators.ESTIMATORS`) hold exactly these names.
"""

from __future__ import annotations

__all__ = [
    "PENALTIES",
    "ESTIMATOR_NAMES",
    "TASK_SCORES",
    "MI_METRICS",
    "MODULARITY_METRICS",
    "SPECIALISATION_METRICS",
    "WEIGHT_CHANGE_METRICS",
    "GRU_BLOCK_METRICS",
    "LESIONS",
    "lesion_metrics",
    "curve_metrics",
    "INTERVENED",
    "SWAP_TRACKED",
    "ORIG_SUFFIX",
    "intervention_metrics",
    "FREEZE_ROLES",
    "FUNC_ONSET",
    "SUMMARY_METRICS",
    "TIMING_FUNCTION",
    "TIMING_STRUCTURE",
]

# how the MI terms of K > 2 groups combine (study.core.mi.penalty_terms, metrics.gaussian_penalty)
PENALTIES = ("pairwise", "total_correlation")
# the MI estimators a config may name (implemented and registered in study.core.estimators)
ESTIMATOR_NAMES = ("dv", "mine", "infonce")

# -- per-evaluation (curve) metrics, docs/run-data.md; each section of Trainer.evaluate in order
TASK_LOSS = "task_loss"
TASK_SCORES = ("accuracy", "r2")  # the task metrics (study.contract.outcomes.TASK_METRIC's values)
MI_METRICS = ("mi", "mi_gauss", "mi_gauss_null", "mi_heldout", "mi_heldout_null")
MODULARITY_METRICS = (
    "q_func",
    "q_struct",
    "q_func_norm",
    "q_struct_norm",
    "q_func_z",
    "q_struct_z",
    "q_struct_delta",
    "q_struct_delta_z",
    "nmi_func",
    "nmi_struct",
    "q_func_found",
    "q_struct_found",
    "q_update_z",
    "q_reset_z",
)
SPECIALISATION_METRICS = ("d_in", "d_out", "d_corr")
# the signed block statistic of the change of W_rec (the GRU: U_h) with its z-score, and the
# decomposition of its within- and between-group blocks on W_rec(0) (docs/run-data.md)
WEIGHT_CHANGE_METRICS = (
    "dw_block",
    "dw_block_z",
    "w_within_ratio",
    "w_between_ratio",
    "w_within_proj",
    "w_between_proj",
    "w_within_orth",
    "w_between_orth",
)
# the GRU's recurrent blocks one by one (U_h is q_struct, q_struct_z, dw_block, dw_block_z; the
# z-scores of U_z and U_r are q_update_z, q_reset_z above) and their sum |U_z| + |U_r| + |U_h|;
# NaN for the leaky RNN
GRU_BLOCK_METRICS = (
    "q_update",
    "q_reset",
    "q_gru_sum",
    "q_gru_sum_z",
    "dw_block_update",
    "dw_block_update_z",
    "dw_block_reset",
    "dw_block_reset_z",
    "dw_block_gru_sum",
    "dw_block_gru_sum_z",
)
# lesions of a copy of the recurrent weights (train.lesion_every): the between-group blocks set
# to 0, the between-group blocks reset to W(0), all of W_rec reset to W(0)
LESIONS = ("zero_between", "reset_between", "reset_rec")


def lesion_metrics(task_score: str) -> tuple[str, ...]:
    """`lesion_<lesion>_<task_score>` and `lesion_<lesion>_q_func_z` of every lesion."""
    return tuple(
        m
        for lesion in LESIONS
        for m in (f"lesion_{lesion}_{task_score}", f"lesion_{lesion}_q_func_z")
    )


def curve_metrics(task_score: str) -> tuple[str, ...]:
    """Per-evaluation metric keys of a trial whose task is scored by `task_score`, in logging
    order (the loss, the task score, then the MI, modularity and specialisation sections, then
    the weight change, the GRU's blocks and the lesions, added later and so at the end)."""
    return (
        TASK_LOSS,
        task_score,
        *MI_METRICS,
        *MODULARITY_METRICS,
        *SPECIALISATION_METRICS,
        *WEIGHT_CHANGE_METRICS,
        *GRU_BLOCK_METRICS,
        *lesion_metrics(task_score),
    )


# -- the curve metrics of a trial with an `intervention` section (study.training.interventions);
# other trials do not have them
# 1.0 where the intervention acts on the seed's network updates after this evaluation, else 0.0
INTERVENED = "intervened"
# the partition-dependent metrics that are measured on the designed partition too, as
# `<name>_orig`, in a trial whose `intervention.swap_partition` moves the penalty (and the
# unsuffixed metrics) to another partition; before the swap `<name>_orig` equals `<name>`
SWAP_TRACKED = (
    "mi_gauss",
    "mi_gauss_null",
    "q_func",
    "q_struct",
    "q_func_z",
    "q_struct_z",
    "q_struct_delta",
    "q_struct_delta_z",
    "d_in",
    "d_out",
    "d_corr",
)
ORIG_SUFFIX = "_orig"
# the parameter roles `intervention.freeze` may name (study.training.interventions)
FREEZE_ROLES = ("w_rec", "w_in", "w_out", "w_rec_between", "w_rec_within")
# `intervention.at: func_onset`: per seed, from the evaluation that decides its functional timing
# onset (study.contract.rise.confirm_online)
FUNC_ONSET = "func_onset"


def intervention_metrics(swap: bool) -> tuple[str, ...]:
    """The curve metrics an intervention adds after `curve_metrics`: `intervened`, and with
    `swap` the designed partition's `<name>_orig` of every SWAP_TRACKED name."""
    return (INTERVENED, *(f"{m}{ORIG_SUFFIX}" for m in SWAP_TRACKED if swap))


# -- trial summary metrics (what a spec's objectives and constraints may name)
# The curve metrics whose seed-median final an objective may name, in the order of the
# allowed-list in error messages: the task, the training critic's MI and the plug-in, the raw
# and normalised Q, specialisation; the null-referenced MI measurements come last (they were
# added later and the list keeps its order).
_FINAL_FIRST = (
    TASK_LOSS,
    *TASK_SCORES,
    *MI_METRICS[:2],
    *MODULARITY_METRICS[:4],
    *SPECIALISATION_METRICS,
)
_FINAL_LAST = MI_METRICS[2:]
# outcome metrics of study.contract.outcomes.trial_metrics (rates, onset medians, which first)
_OUTCOMES = (
    "final.success_rate",
    "final.differentiated_rate",
    "t_func",
    "t_struct",
    "lag",
    "t_func_half",
    "t_struct_half",
    "n_func_first",
    "n_struct_first",
    "n_tie",
    "n_neither",
)
SUMMARY_METRICS = (
    *(f"final.{m}" for m in _FINAL_FIRST),
    *_OUTCOMES,
    *(f"final.{m}" for m in _FINAL_LAST),
)


# -- the curves whose timing onsets (study.contract.rise) seeds.parquet carries and the timing
# verdicts order (docs/run-data.md, "Onsets"): the functional measure, and each structural one as
# (curve metric, direction, label), direction +1 when it rises as structure forms, -1 when it
# falls. Adding a structure measure is one line here; a run without that curve gets NaN columns.
# q_struct_delta_z (Q of |ΔW|) is not one: it is sign-blind, so whether it rises or falls with
# modular structure depends on the mechanism (between-group shrinkage reads as a fall).
TIMING_FUNCTION = "q_func_z"
TIMING_STRUCTURE = (
    ("q_struct_z", 1, "Q(|W|)"),  # Q of the recurrent weights' magnitudes: the state
    ("dw_block_z", 1, "ΔW"),  # within-minus-between contrast of |W(t)| − |W(0)|, a z-score
)
