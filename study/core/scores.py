"""Task scores of the network outputs (docs/method.md §2.4, §6.6): sign accuracy against ±1 targets
and per-output R², over (B, T, C) with any leading axes (seed axis S first).
"""

from __future__ import annotations

import torch

from study.core._checks import _check_float

__all__ = ["accuracy", "r2"]


def _check_pair(output: object, target: object, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    out = _check_float(output, "output", where, 3)
    tgt = _check_float(target, "target", where, 3)
    if out.shape != tgt.shape:
        raise ValueError(
            f"{where}: output and target must have the same shape (..., B, T, C), but got "
            f"{tuple(out.shape)} and {tuple(tgt.shape)}."
        )
    return out, tgt


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sign agreement between outputs and ±1 targets (docs/method.md §2.4).

    Mean over (B, T, C) of [(output > 0) == (target > 0)]: Keras BinaryAccuracy of
    round((y+1)/2) against (z+1)/2 at threshold 0.5, where y = 0 rounds to label 0 (banker's
    rounding) and so counts as negative, like z = 0.

    Args:
        output: shape (..., B, T, C), float, network outputs z, e.g. (S, B, T, C).
        target: shape (..., B, T, C), float, targets y.

    Returns:
        accuracy in [0, 1], shape (...), output's dtype.

    Raises:
        TypeError: if output or target is not a floating tensor.
        ValueError: if the shapes differ or have fewer than 3 axes.
    """
    out, tgt = _check_pair(output, target, "accuracy()")
    agree = ((out > 0) == (tgt > 0)).to(torch.float64)
    return agree.mean((-3, -2, -1)).to(out.dtype)


def r2(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-output coefficient of determination R² = 1 − SS_res/SS_tot over batch and time.

    Args:
        output: shape (..., B, T, C), float, predictions, e.g. (S, B, T, C).
        target: shape (..., B, T, C), float, targets; SS_tot uses their mean over (B, T).

    Returns:
        R², shape (..., C), output's dtype; NaN for an output whose target is constant.

    Raises:
        TypeError: if output or target is not a floating tensor.
        ValueError: if the shapes differ or have fewer than 3 axes.
    """
    out, tgt = _check_pair(output, target, "r2()")
    z, y = out.to(torch.float64), tgt.to(torch.float64)
    ss_res = ((y - z) ** 2).sum((-3, -2))  # (..., C)
    ss_tot = ((y - y.mean((-3, -2), keepdim=True)) ** 2).sum((-3, -2))
    safe = torch.where(ss_tot > 0, ss_tot, torch.ones_like(ss_tot))
    r = torch.where(ss_tot > 0, 1.0 - ss_res / safe, torch.full_like(ss_tot, float("nan")))
    return r.to(out.dtype)
