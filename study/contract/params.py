"""The trial params `analysis` reads, by their dotted keys (docs/run-data.md, "Params").

A trial run logs its flattened config (`TrialConfig.flat()`), one param per dotted key; these are
the keys analysis groups, pairs and recomputes outcomes by. test_contract_roundtrip.py checks that
each one is a key of the trial config. Pure constants: importing this module imports nothing.
"""

from __future__ import annotations

__all__ = [
    "PARAM_HIDDEN",
    "PARAM_GROUPS",
    "PARAM_SIZES",
    "PARAM_MI_WEIGHT",
    "PARAM_SEEDS",
    "PARAM_SEED",
    "PARAM_FINAL_WINDOW",
    "PARAM_EPOCHS",
    "PARAM_EVAL_EVERY",
    "PARAM_Z",
    "PARAM_RUN",
    "PARAM_LR",
    "PARAM_REG_REC",
    "PARAMS",
    "PARAM_ARM",
]

PARAM_HIDDEN = "network.hidden"  # N, units of the network
PARAM_GROUPS = "partition.groups"  # K, subgroups of the partition
PARAM_SIZES = "partition.sizes"  # optional JSON list of the K group sizes
PARAM_MI_WEIGHT = "mi.weight"  # λ, the weight of the MI penalty; λ = 0 is the control
PARAM_SEEDS = "seeds"  # S, networks trained at once by one trial
PARAM_SEED = "seed"  # the trial's base seed
PARAM_FINAL_WINDOW = "train.final_window"  # evaluations averaged into a final value
PARAM_EPOCHS = "train.epochs"
PARAM_EVAL_EVERY = "train.eval_every"  # epochs between evaluations
PARAM_Z = "emergence.z"  # onset threshold (study.contract.outcomes.onset)
PARAM_RUN = "emergence.run"  # consecutive evaluations an onset needs
PARAM_LR = "optim.lr"  # learning rate (the report labels it when swept)
PARAM_REG_REC = "optim.reg_rec"  # L2 weight of the recurrent matrix (labelled when swept)

PARAMS = (
    PARAM_HIDDEN,
    PARAM_GROUPS,
    PARAM_SIZES,
    PARAM_MI_WEIGHT,
    PARAM_SEEDS,
    PARAM_SEED,
    PARAM_FINAL_WINDOW,
    PARAM_EPOCHS,
    PARAM_EVAL_EVERY,
    PARAM_Z,
    PARAM_RUN,
    PARAM_LR,
    PARAM_REG_REC,
)

# not a trial config key: the arm of a trial in a study with `arms` (the Tune config key, the
# param of its run, beside the tag study.arm); analysis pairs the arms of a cell by seed
PARAM_ARM = "arm"
