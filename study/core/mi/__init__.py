"""Neural and plug-in estimates of the mutual information between neuron subgroups.

The package is cut along the seams of the method, each module importing only those before it:
- `critic`: the critic network T(a, b), batched over (seed, term) replicas, and its precision;
- `estimators`: the registered bounds (DV, MINE, InfoNCE), each handed the critic, the input
  noise and the generator, each owning its running state, and the row sampling they share;
- `penalty`: the training penalty (`SubgroupMI`): its terms, critics, optimiser, input noise
  policy, row subsampling, checkpoint state;
- `measure`: measurements apart from training: held-out critics, the Gaussian plug-in and the
  sequence-shuffled null.
Import the names below from `study.core.mi`.
"""

from __future__ import annotations

from study.core.mi.critic import PRECISIONS, Critic, compute_dtype
from study.core.mi.estimators import (
    DV,
    ESTIMATORS,
    MINE,
    Estimator,
    InfoNCE,
    NoisePolicy,
    estimator_from_config,
    log_mean_exp,
    make_estimator,
    random_permutations,
    register_estimator,
    shuffled_scores,
    take_rows,
)
from study.core.mi.measure import (
    estimate_mi,
    gaussian_mi,
    gaussian_penalty,
    heldout_mi,
    sequence_null,
    split_sequences,
)
from study.core.mi.penalty import (
    NOISE_MODES,
    PENALTIES,
    InputNoise,
    PenaltyTerms,
    SubgroupMI,
    penalty_terms,
)

__all__ = [
    # critic
    "Critic",
    "PRECISIONS",
    "compute_dtype",
    # estimators
    "Estimator",
    "ESTIMATORS",
    "register_estimator",
    "make_estimator",
    "estimator_from_config",
    "DV",
    "MINE",
    "InfoNCE",
    "NoisePolicy",
    "shuffled_scores",
    "random_permutations",
    "take_rows",
    "log_mean_exp",
    # penalty
    "PENALTIES",
    "NOISE_MODES",
    "PenaltyTerms",
    "penalty_terms",
    "InputNoise",
    "SubgroupMI",
    # measurement
    "heldout_mi",
    "split_sequences",
    "sequence_null",
    "gaussian_mi",
    "gaussian_penalty",
    "estimate_mi",
]
