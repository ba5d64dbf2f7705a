"""Argument checks shared by the core's metric modules: ints, float tensors, square matrices,
adjacency matrices, activity, and label vectors (with their one-hot form).

Every check names the function that was called (`where`), the argument, what must hold and
what was given; it returns the validated value so callers can write `x = _check_...(x, ...)`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

Labels = np.ndarray | torch.Tensor | Sequence[int]


def _check_int(where: str, name: str, value: object, minimum: int | None = None) -> int:
    """`value` as an int; TypeError unless it is one (bool is refused), ValueError when it is
    below `minimum`."""
    # bool is an Integral, but n_units=True is always a mistake
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{where}: {name} must be an int, but got {type(value).__name__} {value!r}."
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: {name} must be at least {minimum}, but got {name}={value}.")
    return int(value)


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


def _one_hot(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N,) labels -> (N, K) float64 indicator matrix."""
    idx = torch.as_tensor(labels, dtype=torch.long, device=device)
    return torch.nn.functional.one_hot(idx, int(labels.max()) + 1).to(torch.float64)


def _check_float(x: object, name: str, where: str, min_ndim: int) -> torch.Tensor:
    """Raise unless `x` is a floating torch tensor with at least `min_ndim` axes."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{where}: {name} must be a torch.Tensor, but got {type(x).__name__}. "
            "Convert with torch.as_tensor(...)."
        )
    if not x.dtype.is_floating_point:
        raise TypeError(f"{where}: {name} must be a floating tensor, but got dtype {x.dtype}.")
    if x.ndim < min_ndim:
        raise ValueError(
            f"{where}: {name} must have at least {min_ndim} axes, but got shape {tuple(x.shape)}."
        )
    return x


def _check_square(x: object, name: str, where: str) -> torch.Tensor:
    x = _check_float(x, name, where, 2)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{where}: {name} must have shape (..., N, N), but got shape {tuple(x.shape)}."
        )
    return x


def _check_adjacency(adjacency: object, where: str) -> torch.Tensor:
    """Validate a symmetric non-negative (..., N, N) adjacency; NaN entries are let through."""
    a = _check_square(adjacency, "adjacency", where)
    if a.numel() == 0:
        return a
    low = a.amin()
    if low < 0:
        raise ValueError(
            f"{where}: adjacency must be non-negative, but got min {low.item():.6g}. "
            "Use structural_adjacency()/functional_adjacency() to build one."
        )
    # relative tolerance sqrt(eps): above rounding of a symmetric computation, below real asymmetry
    scale = a.abs().amax()
    gap = (a - a.mT).abs().amax()
    if gap > torch.finfo(a.dtype).eps ** 0.5 * scale:
        raise ValueError(
            f"{where}: adjacency must be symmetric, but got max |A - A^T| = {gap.item():.6g} "
            f"(max |A| = {scale.item():.6g})."
        )
    return a


def _check_activity(activity: object, where: str) -> torch.Tensor:
    x = _check_float(activity, "activity", where, 2)
    if x.shape[-2] < 2:
        raise ValueError(
            f"{where}: activity must have shape (..., M, N) with M >= 2 samples, but got "
            f"shape {tuple(x.shape)}."
        )
    return x
