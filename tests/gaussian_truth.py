"""Closed forms of jointly Gaussian data shared by the MI tests (docs/ground-truth.md): correlated
pairs and their log density ratio, the optimal critic's DV and InfoNCE values, equicorrelated
groups and their pairwise and total-correlation MI, and MI seen through input noise.
"""

import math

import numpy as np
import torch
from scipy.special import logsumexp


def _correlated(rng, m, d, mi):
    """(x, y), each (M, d): d independent unit-Gaussian pairs with I(x; y) = mi nats.

    I = −(d/2)·ln(1 − ρ²), so ρ = √(1 − exp(−2I/d)) (docs/ground-truth.md).
    """
    rho = math.sqrt(1 - math.exp(-2 * mi / d))
    x = rng.standard_normal((m, d))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((m, d))
    return x.astype(np.float32), y.astype(np.float32), rho


def _log_ratio(x, y, rho):
    """log p(x, y)/(p(x)p(y)) of the pairs above, summed over the d coordinates."""
    q = rho**2 * x**2 - 2 * rho * x * y + rho**2 * y**2
    return (-0.5 * np.log(1 - rho**2) - q / (2 * (1 - rho**2))).sum(-1)


def _optimal_dv(rng, mi, d, n, repeats=40):
    """Mean and spread of the DV bound of the optimal critic on n held-out rows."""
    vals = []
    for _ in range(repeats):
        x, y, rho = _correlated(rng, n, d, mi)
        shuffled = y[rng.permutation(n)]
        vals.append(
            _log_ratio(x, y, rho).mean() - (logsumexp(_log_ratio(x, shuffled, rho)) - math.log(n))
        )
    return float(np.mean(vals)), float(np.std(vals))


def _optimal_infonce(rng, mi, d, k, n_blocks):
    """Mean and spread (of an n_blocks average) of the InfoNCE bound of the optimal critic."""
    x, y, rho = _correlated(rng, 400 * k, d, mi)
    s = _log_ratio(x.reshape(400, k, 1, d), y.reshape(400, 1, k, d), rho)  # (400, k, k)
    per_block = (np.diagonal(s, axis1=1, axis2=2) - logsumexp(s, axis=2) + math.log(k)).mean(1)
    return float(per_block.mean()), float(per_block.std() / math.sqrt(n_blocks))


def _equicorrelated_groups(gen, m, d, rhos):
    """(S, M, 3d): per seed s and coordinate c, (G1_c, G2_c, G3_c) are unit Gaussians with
    pairwise correlation rhos[s]; coordinates independent. Uses a shared factor."""
    out = []
    for rho in rhos:
        shared = torch.randn(m, 1, d, generator=gen)
        own = torch.randn(m, 3, d, generator=gen)
        out.append((math.sqrt(rho) * shared + math.sqrt(1 - rho) * own).reshape(m, 3 * d))
    return torch.stack(out)


def _pairwise_truth(rho, d):
    return 3 * d * (-0.5 * math.log(1 - rho**2))  # three pairs, each −(d/2)·ln(1 − ρ²)


def _tc_truth(rho, d, k=3):
    return d * (-0.5 * math.log((1 - rho) ** (k - 1) * (1 + (k - 1) * rho)))


def _mi_closed_form(rho: float, d: int, sigma: float = 0.0) -> float:
    r = rho / (1 + sigma**2)
    return -0.5 * d * math.log(1 - r**2)


def _rho_for(mi: float, d: int) -> float:
    return math.sqrt(1 - math.exp(-2 * mi / d))
