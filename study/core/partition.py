"""Fixed a-priori partitions of N units into K contiguous subgroups, as label vectors.

A label vector has shape (N,), dtype int64, and value k for the units of group k (0-based).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _check_int(value: object, name: str, where: str) -> int:
    """Return `value` as an int, or raise TypeError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{where}: {name} must be an int, but got {value!r} of type {type(value).__name__}."
        )
    return int(value)


def groups(n_units: int, n_groups: int, sizes: Sequence[int] | None = None) -> np.ndarray:
    """Label vector of K contiguous groups over N units.

    Without `sizes` the groups are as equal as possible, larger groups first
    (N=40, K=3 gives sizes 14, 13, 13); the reference uses two halves (method.md §3.5, §7.6).

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
    n_units = _check_int(n_units, "n_units", "groups()")
    n_groups = _check_int(n_groups, "n_groups", "groups()")
    if n_units < 1:
        raise ValueError(f"groups(): n_units must be at least 1, but got n_units={n_units}.")
    if n_groups < 1:
        raise ValueError(f"groups(): n_groups must be at least 1, but got n_groups={n_groups}.")
    if n_groups > n_units:
        raise ValueError(
            f"groups(): n_groups must be at most n_units, but got n_units={n_units}, "
            f"n_groups={n_groups}."
        )
    if sizes is None:
        base, extra = divmod(n_units, n_groups)
        # the `extra` leftover units go one each to the first groups
        counts = [base + 1] * extra + [base] * (n_groups - extra)
    else:
        counts = [_check_int(s, "each entry of sizes", "groups()") for s in sizes]
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


def _as_labels(
    labels: object, where: str, n: int | None = None, name: str = "labels", axis: str = "N"
) -> np.ndarray:
    """Validate a (n,) integer vector using every value 0..K-1; return it as int64 numpy."""
    if isinstance(labels, torch.Tensor):
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"{where}: {name} must be integers, but got dtype {labels.dtype}.")
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{where}: {name} must be a non-empty vector of shape ({axis},), but got shape "
            f"{arr.shape}."
        )
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name} must be integers, but got dtype {arr.dtype}.")
    if n is not None and arr.shape[0] != n:
        raise ValueError(
            f"{where}: {name} must have shape ({axis},) with {axis}={n}, but got shape "
            f"{arr.shape}."
        )
    if arr.min() < 0:
        raise ValueError(f"{where}: {name} must be non-negative, but got min {arr.min()}.")
    counts = np.bincount(arr)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(
            f"{where}: {name} must use every index 0..K-1 (K={counts.size}), but {missing} "
            "never occur."
        )
    return arr.astype(np.int64, copy=False)


def group_sizes(labels: np.ndarray | torch.Tensor | Sequence[int]) -> tuple[int, ...]:
    """Sizes of groups 0..K-1.

    Args:
        labels: shape (N,), integers 0..K-1, every group non-empty.

    Returns:
        (n_0, ..., n_{K-1}), summing to N.

    Raises:
        TypeError: if labels are not integers.
        ValueError: if labels are not a non-empty vector, are negative or skip a group.
    """
    arr = _as_labels(labels, "group_sizes()")
    return tuple(int(c) for c in np.bincount(arr))

