"""Fixed a-priori partitions of N units into K contiguous subgroups, as label vectors.

A label vector has shape (N,), dtype int64, and value k for the units of group k (0-based).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from study.contract.outcomes import group_sizes
from study.core._checks import _check_int

__all__ = ["groups"]


def groups(n_units: int, n_groups: int, sizes: Sequence[int] | None = None) -> np.ndarray:
    """Label vector of K contiguous groups over N units.

    Without `sizes` the groups are as equal as possible, larger groups first
    (N=40, K=3 gives sizes 14, 13, 13); the reference uses two halves (docs/method.md §3.5, §7.6).

    Args:
        n_units: number of units N, at least 1.
        n_groups: number of groups K, 1 <= K <= N.
        sizes: optional group sizes, K positive ints summing to N, in group order.

    Returns:
        labels, shape (N,), int64: group k occupies one contiguous block, blocks in order 0..K-1.

    Raises:
        TypeError: if `n_units`, `n_groups` or an entry of `sizes` is not an int.
        ValueError: if K < 1, K > N, or `sizes` has the wrong length, a non-positive entry or
            the wrong sum.
    """
    n_units = _check_int("groups()", "n_units", n_units, 1)
    n_groups = _check_int("groups()", "n_groups", n_groups, 1)
    if n_groups > n_units:
        raise ValueError(
            f"groups(): n_groups must be at most n_units, but got n_units={n_units}, "
            f"n_groups={n_groups}."
        )
    if sizes is None:
        counts = group_sizes(n_units, n_groups)  # the leftover units go to the first groups
    else:
        counts = [_check_int("groups()", "each entry of sizes", s) for s in sizes]
        if len(counts) != n_groups:
            raise ValueError(
                f"groups(): sizes must have n_groups={n_groups} entries, but got "
                f"{len(counts)} entries: sizes={counts}."
            )
        if min(counts) < 1:
            raise ValueError(f"groups(): sizes must all be positive, but got sizes={counts}.")
        if sum(counts) != n_units:
            raise ValueError(
                f"groups(): sizes must sum to n_units={n_units}, but got sizes={counts} "
                f"(sum {sum(counts)})."
            )
    return np.repeat(np.arange(n_groups, dtype=np.int64), counts)
