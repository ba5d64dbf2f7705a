"""The evaluation metrics (method.md §10) under one name, for callers that read them as
`metrics.<function>` (the training loop's evaluation). Each lives in its family's module:

- `study.core.modularity`: Q, Q/Q_max, functional and structural graphs, random-partition
  z-scores, the weight-change graph;
- `study.core.specialization`: the D indices;
- `study.core.scores`: accuracy, R²;
- `study.core.mi.measure`: the Gaussian MI plug-in and the sequence-shuffled null.
Nothing is defined here; new metrics go to their family's module.
"""

from __future__ import annotations

from study.core.mi.measure import gaussian_mi, gaussian_penalty, sequence_null
from study.core.modularity import (functional_adjacency, functional_modularity, modularity,
                                   modularity_max, modularity_of_partitions, modularity_zscore,
                                   random_partitions, structural_adjacency,
                                   structural_modularity, weight_change)
from study.core.scores import accuracy, r2
from study.core.specialization import specialization

__all__ = [
    "modularity",
    "modularity_max",
    "functional_adjacency",
    "functional_modularity",
    "structural_adjacency",
    "structural_modularity",
    "random_partitions",
    "modularity_of_partitions",
    "modularity_zscore",
    "weight_change",
    "specialization",
    "accuracy",
    "r2",
    "gaussian_mi",
    "gaussian_penalty",
    "sequence_null",
]
