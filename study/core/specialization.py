"""Specialisation index D (docs/method.md §10.1): how one-to-one the unit groups map onto the input
or output channels, from a (..., N, C) non-negative strength matrix batched over leading axes.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from study.core._checks import Labels, _as_labels, _check_float, _one_hot

__all__ = ["specialization"]

_MAX_BRUTE_FORCE_K = 6  # 6! = 720 assignments; beyond that use the Hungarian algorithm


def _best_assignment(m: torch.Tensor) -> torch.Tensor:
    """(..., K, K) float64 -> (...) max over permutations π of Σ_c m[c, π(c)]."""
    k = m.shape[-1]
    if k <= _MAX_BRUTE_FORCE_K:
        perms = torch.tensor(list(itertools.permutations(range(k))), device=m.device)  # (P, K)
        rows = torch.arange(k, device=m.device)
        return m[..., rows, perms].sum(-1).amax(-1)  # (..., P, K) -> (...)
    from scipy.optimize import linear_sum_assignment  # only for K > 6 (a ~2 s import)

    flat = m.detach().cpu().numpy().reshape(-1, k, k)
    best = np.full(flat.shape[0], np.nan)
    for b, mat in enumerate(flat):
        if np.isfinite(mat).all():  # linear_sum_assignment rejects NaN/inf
            r, c = linear_sum_assignment(mat, maximize=True)
            best[b] = mat[r, c].sum()
    return torch.as_tensor(best.reshape(m.shape[:-2]), device=m.device)


def specialization(strength: torch.Tensor, labels: Labels, channels: Labels) -> torch.Tensor:
    """Specialisation index D: how one-to-one groups map onto channels (docs/method.md §10.1).

    With M[c, k] = Σ_{i∈G_c} Σ_{j: channels[j]=k} strength[i, j] and T = Σ M,
    D = max_π [Σ_c M[c,π(c)] − (1/(K−1)) Σ_c Σ_{k≠π(c)} M[c,k]] / T over one-to-one π,
    i.e. (K·max_π Σ_c M[c,π(c)] / T − 1)/(K − 1). At K = 2 this is the reference
    |Σ_{G1} d_i − Σ_{G2} d_i| / Σ_i(...) of D_in, D_out and D_corr. D is 1 for one-to-one
    specialisation, 0 when M is uniform (equal strengths with equal group sizes and channel
    widths; unequal sizes alone give D > 0), never negative (the best assignment beats the
    average one, T/K), and invariant to relabelling groups or channels.

    Args:
        strength: shape (..., N, C), float, non-negative: |W_out| (C outputs), |W_in|ᵀ (C input
            lines) or |corr(unit, target)|, e.g. (S, N, C).
        labels: shape (N,), integers 0..K-1, the unit groups.
        channels: shape (C,), integers 0..K_ch-1: the channel of each column (WM: output k ->
            k, input lines on_k and off_k -> k; separation: outputs 0-2 -> 0, 3-5 -> 1).

    Returns:
        D, shape (...), strength's dtype; NaN when K != K_ch, K = 1 or all strengths are 0.

    Raises:
        TypeError: if strength is not a floating tensor or labels/channels are not integers.
        ValueError: on a bad shape, N or C mismatch, or negative strengths.
    """
    where = "specialization()"
    s = _check_float(strength, "strength", where, 2)
    lab = _as_labels(labels, where, s.shape[-2])
    ch = _as_labels(channels, where, s.shape[-1], name="channels", axis="C")
    if s.numel() and s.amin() < 0:
        raise ValueError(
            f"{where}: strength must be non-negative, but got min {s.amin().item():.6g}. "
            "Pass absolute weights or |corr|."
        )
    k, k_ch = int(lab.max()) + 1, int(ch.max()) + 1
    if k != k_ch or k == 1:
        return torch.full(s.shape[:-2], float("nan"), dtype=s.dtype, device=s.device)
    g = _one_hot(lab, s.device)  # (N, K)
    h = _one_hot(ch, s.device)  # (C, K)
    m = g.T @ s.to(torch.float64) @ h  # (..., K, K) M[c, k]
    total = m.sum((-2, -1))
    best = _best_assignment(m)
    d = (k * best / total - 1.0) / (k - 1)
    return torch.where(total > 0, d, torch.full_like(d, float("nan"))).to(s.dtype)
