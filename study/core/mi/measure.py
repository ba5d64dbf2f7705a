"""Measurements of subgroup MI made apart from training (README "Reading MI").

- `heldout_mi`: fresh critics trained on some sequences and scored on held-out ones, with the
  same on the sequence-shuffled null pairing (`sequence_null`, split by `split_sequences`);
- `gaussian_mi`, `gaussian_penalty`: the Gaussian plug-in from the sample covariance, with the
  critic's input noise added exactly on the covariance diagonal;
- `estimate_mi`: a critic trained on samples of (x, y), scored on held-out rows.

Tensors are batched over leading axes (seed axis S first); estimates are in nats.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from study.contract.names import PENALTIES
from study.core._checks import Labels, _as_labels, _check_activity, _check_float
from study.core.mi.estimators import ESTIMATORS, make_estimator, take_rows
from study.core.mi.penalty import SubgroupMI

__all__ = [
    "heldout_mi",
    "split_sequences",
    "sequence_null",
    "gaussian_mi",
    "gaussian_penalty",
    "estimate_mi",
]


def split_sequences(
    n_sequences: int, test_fraction: float, gen: torch.Generator
) -> tuple[Tensor, Tensor] | None:
    """Random (train, test) sequence indices, at least 2 of each; None when there are < 4."""
    n_test = max(2, int(round(n_sequences * test_fraction)))
    if n_sequences - n_test < 2:
        return None
    order = torch.randperm(n_sequences, generator=gen)
    return order[n_test:].sort().values, order[:n_test].sort().values


def heldout_mi(
    sequences: Tensor,
    labels: np.ndarray,
    *,
    penalty: str = "pairwise",
    noise: float = 0.1,
    width: int = 64,
    depth: int = 2,
    steps: int = 300,
    batch: int = 512,
    lr: float = 1e-3,
    test_fraction: float = 0.25,
    repeats: int = 4,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Held-out subgroup-MI estimate of S networks' activity, and the same on its null pairing.

    A fresh DV critic per (seed, term) — 2·S·P replicas trained as one batch, like the training
    critics — is trained on the activity of the training sequences with the penalty's own noise
    (σ on both sides, the shuffled partner drawn from the noisy b: it estimates I(a+ε; b+ε′)),
    then scored on the held-out sequences. The split is by *sequence*, never by rows of the same
    sequences, so time autocorrelation cannot leak a memorised pairing into the score. The null
    replicas see the sequence-shuffled pairing (`sequence_null`: group g of sequence b
    with group h of another sequence, built within each split), trained and scored the same way,
    so `value − null` is the estimate's excess over what the estimator reads on independent
    groups with the same autocorrelation. The held-out DV bound of a fixed critic is a lower
    bound of the MI in expectation (up to the log-mean-exp's small-sample bias); an overfitted
    critic scores low, not high.

    Args:
        sequences: (S, T, B, N) activity whose subgroup MI is penalised (rates, not states).
        labels: (N,) group labels; penalty: "pairwise" or "total_correlation".
        noise: σ of the Gaussian noise on critic inputs (the training penalty's `input_noise`).
        width, depth: critic capacity; steps: Adam updates with learning rate lr, each on
            `batch` random rows of the training sequences; test_fraction: share of sequences
            held out (at least 2); repeats: noise and shuffle draws averaged on the test rows.
        seed: initialises the critics and draws the split, minibatches and noise.

    Returns:
        (value, null), each (S,) in nats, summed over the penalty's terms; NaN when there are
        fewer than 4 sequences (or, for the null, fewer sequences per split than groups).
    """
    s, t, b, n = sequences.shape
    device = sequences.device
    nan = torch.full((s,), float("nan"), device=device)
    gen = torch.Generator().manual_seed(int(seed))
    split = split_sequences(b, test_fraction, gen)
    if split is None:
        return nan, nan.clone()
    seqs = sequences.detach().float()
    own = [seqs[:, :, idx.to(device)] for idx in split]  # (S, T, B', N) train, test
    nulls = [sequence_null(x, labels) for x in own]  # built within each split
    has_null = all(x is not None for x in nulls)
    # the null replicas are the S seeds again on the shuffled pairing (or a placeholder)
    parts = [
        torch.cat([x, z if has_null else x]).reshape(2 * s, -1, n) for x, z in zip(own, nulls)
    ]
    train_rows, test_rows = parts
    dev_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
    est = SubgroupMI(
        2 * s,
        labels,
        penalty=penalty,
        estimator="dv",
        input_noise=noise,
        noise_mode="noisy_partner",
        critic={"width": width, "depth": depth},
        optim={"kind": "adam", "lr": lr, "clip_norm": None},
        seed=int(seed),
    )
    est.to(device)
    m_train = train_rows.shape[1]
    with torch.enable_grad():
        for _ in range(steps):
            rows = torch.randint(
                0, m_train, (2 * s, min(batch, m_train)), generator=dev_gen, device=device
            )
            est.critic_step(take_rows(train_rows, rows), dev_gen)
    values = torch.stack([est.measure(test_rows, dev_gen) for _ in range(repeats)]).mean(0)
    value, null_value = values[:s], values[s:]
    return value, (null_value if has_null else nan)


def _gaussian_cov(z: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
    """(..., M, D) -> float64 sample covariance (..., D, D) + ridge 1e-6 × mean variance.

    `noise` σ adds σ² to the diagonal: the covariance of z + ε with independent ε ~ N(0, σ²I),
    exactly, without sampling ε.
    """
    z = z.to(torch.float64)
    zc = z - z.mean(-2, keepdim=True)
    cov = zc.mT @ zc / (z.shape[-2] - 1)
    cov = 0.5 * (cov + cov.mT)
    mean_var = cov.diagonal(dim1=-2, dim2=-1).mean(-1)  # (...,)
    # the ridge keeps constant units at finite log det; with every unit constant any ridge
    # works (the MI is 0), so fall back to 1
    ridge = 1e-6 * torch.where(mean_var > 0, mean_var, torch.ones_like(mean_var))
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    return cov + (ridge[..., None, None] + noise**2) * eye


def _logdet(cov: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """ln det of the block cov[..., idx, idx] via Cholesky; NaN where not positive definite."""
    i = torch.as_tensor(idx, dtype=torch.long, device=cov.device)
    block = cov[..., i[:, None], i[None, :]]
    chol, info = torch.linalg.cholesky_ex(block)
    ld = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return torch.where(info == 0, ld, torch.full_like(ld, float("nan")))


def gaussian_mi(x: torch.Tensor, y: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
    """Plug-in Gaussian MI I(X; Y) in nats from the sample covariance (docs/ground-truth.md).

    I = ½[ln det Σ_xx + ln det Σ_yy − ln det Σ], computed in float64 on the joint covariance
    with a ridge of 1e-6 × its mean variance added to the diagonal, so constant units give a
    finite value instead of −inf. Exact for Gaussian data up to a positive small-sample bias
    of about dx·dy/(2M) for independent rows (larger for autocorrelated rows such as time
    steps of one sequence: compare with `sequence_null`); it sees only linear dependence.

    Args:
        x: shape (..., M, dx), float, M joint samples, e.g. (S, B*T, N_1).
        y: shape (..., M, dy), float, same leading axes and M as x.
        noise: σ of independent Gaussian noise on every unit: the MI of (x + ε, y + ε′), with
            σ² added to the covariance diagonal (what a critic with `input_noise` σ sees).

    Returns:
        MI, shape (...), x's dtype.

    Raises:
        TypeError: if x or y is not a floating tensor.
        ValueError: if the leading axes or M differ, or M < 2.
    """
    where = "gaussian_mi()"
    x = _check_float(x, "x", where, 2)
    y = _check_float(y, "y", where, 2)
    if x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"{where}: x and y must share their leading axes and sample count (..., M), but got "
            f"shapes {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[-2] < 2:
        raise ValueError(f"{where}: x and y need M >= 2 samples, but got shape {tuple(x.shape)}.")
    dx, dy = x.shape[-1], y.shape[-1]
    cov = _gaussian_cov(torch.cat([x.to(torch.float64), y.to(torch.float64)], -1), noise)
    ix, iy = np.arange(dx), np.arange(dx, dx + dy)
    mi = 0.5 * (_logdet(cov, ix) + _logdet(cov, iy) - _logdet(cov, np.arange(dx + dy)))
    return mi.to(x.dtype)


def gaussian_penalty(
    activity: torch.Tensor, labels: Labels, kind: str, noise: float = 0.0
) -> torch.Tensor:
    """Gaussian plug-in version of the training MI penalty over K subgroups.

    `pairwise`: Σ_{i<j} I(G_i; G_j). `total_correlation`: Σ_{i>=2} I(G_1..G_{i−1}; G_i), which
    telescopes to ½[Σ_i ln det Σ_{G_i} − ln det Σ]. Both equal `gaussian_mi` of the two groups
    at K = 2; both are 0 at K = 1. Same covariance and ridge as `gaussian_mi`, over all N units.

    Args:
        activity: shape (..., M, N), float, M samples of N units, e.g. (S, B*T, N).
        labels: shape (N,), integers 0..K-1.
        kind: "pairwise" or "total_correlation".
        noise: σ of independent Gaussian noise on every unit (σ² on the covariance diagonal):
            the penalty of the noisy activity a critic with `mi.input_noise` σ sees.

    Returns:
        penalty in nats, shape (...), activity's dtype.

    Raises:
        TypeError: if activity is not a floating tensor or labels are not integers.
        ValueError: on an unknown kind, a bad shape or a label count other than N.
    """
    where = "gaussian_penalty()"
    if kind not in PENALTIES:
        raise ValueError(f"{where}: kind must be one of {PENALTIES}, but got {kind!r}.")
    x = _check_activity(activity, where)
    lab = _as_labels(labels, where, x.shape[-1])
    index = [np.flatnonzero(lab == c) for c in range(int(lab.max()) + 1)]
    cov = _gaussian_cov(x, noise)
    own = [_logdet(cov, idx) for idx in index]  # ln det Σ_{G_i}, each (...)
    total = torch.zeros(x.shape[:-2], dtype=torch.float64, device=x.device)
    if len(index) == 1:
        return total.to(x.dtype)
    if kind == "pairwise":
        for i, j in itertools.combinations(range(len(index)), 2):
            joint = _logdet(cov, np.concatenate([index[i], index[j]]))
            total = total + 0.5 * (own[i] + own[j] - joint)
    else:
        total = 0.5 * (torch.stack(own).sum(0) - _logdet(cov, np.concatenate(index)))
    return total.to(x.dtype)


def sequence_null(sequences: torch.Tensor, labels: Labels) -> torch.Tensor | None:
    """The sequence-shuffled pairing that is the null of every subgroup MI figure.

    Group g of sequence b is paired with group h of sequence (b + h − g) mod B: unit n of
    output sequence b is taken from sequence (b + label(n)) mod B at the same time step. Each
    group keeps its own statistics and autocorrelation, and no two groups come from the same
    sequence, so the true subgroup MI of the result is 0 while an estimator's bias (which grows
    with the time autocorrelation of the rows) is unchanged.

    Args:
        sequences: (..., T, B, N), float, B sequences of T steps (time-major, as networks.py).
        labels: (N,) group labels 0..K−1.

    Returns:
        (..., T, B, N), or None when B < K (too few sequences to give each group its own).
    """
    where = "sequence_null()"
    x = _check_float(sequences, "sequences", where, 3)
    lab = _as_labels(labels, where, x.shape[-1])
    b = x.shape[-2]
    if b < int(lab.max()) + 1:
        return None
    shift = torch.as_tensor(lab, dtype=torch.long, device=x.device)
    seq = (torch.arange(b, device=x.device)[:, None] + shift[None, :]) % b  # (B, N)
    unit = torch.arange(x.shape[-1], device=x.device).expand(b, -1)
    return x[..., seq, unit]


def estimate_mi(
    x,
    y,
    *,
    estimator: str = "dv",
    steps: int = 2000,
    batch: int = 512,
    width: int = 128,
    depth: int = 2,
    lr: float = 1e-3,
    holdout: float = 0.25,
    nce_block: int = 128,
    seed: int = 0,
) -> float:
    """Train a fresh critic on samples of (x, y) and return its MI estimate in nats.

    Args:
        x: (M, dx) samples (array-like); y: (M, dy) paired samples.
        estimator: "dv", "mine" or "infonce" (InfoNCE can never exceed ln(nce_block)).
        steps: critic updates (Adam) on random minibatches of `batch` rows of the training part.
        holdout: fraction of rows kept out of training; the estimate is the bound on those rows
            (averaged over several shuffles), so it is not inflated by the critic overfitting.

    Raises:
        ValueError: mismatched shapes, unknown estimator, too few samples.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float32)
    if x.dim() == 1:
        x = x[:, None]
    if y.dim() == 1:
        y = y[:, None]
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"estimate_mi(): x and y must be (M, dx) and (M, dy) with the same M, but got "
            f"shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"estimate_mi(): estimator must be one of {tuple(ESTIMATORS)}, but got {estimator!r}"
        )
    m = x.shape[0]
    n_test = int(round(m * holdout))
    if m - n_test < batch or n_test < (nce_block if estimator == "infonce" else 2):
        raise ValueError(
            f"estimate_mi(): need at least batch={batch} training rows and a held-out part, "
            f"but got M={m} rows with holdout={holdout}"
        )
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(m, generator=gen)
    train_idx, test_idx = order[n_test:], order[:n_test]
    labels = np.array([0] * x.shape[1] + [1] * y.shape[1])
    # the bound trained, and the same bound scored on the held-out rows: InfoNCE contrasts rows
    # within blocks, of the minibatch in training, that fit the held-out rows in scoring (the
    # other estimators read no block size, and a fresh MINE scores the same DV value)
    trained = make_estimator(estimator, {"nce_block": min(nce_block, batch)})
    scorer = make_estimator(estimator, {"nce_block": min(nce_block, n_test)})
    est = SubgroupMI(
        1,
        labels,
        estimator=trained,
        input_noise=0.0,
        critic={"width": width, "depth": depth},
        optim={"kind": "adam", "lr": lr},
        seed=seed,
    )
    data = torch.cat([x, y], dim=1)[None]  # (1, M, dx + dy)
    train_data = data[:, train_idx]
    for _ in range(steps):
        rows = torch.randint(0, train_data.shape[1], (batch,), generator=gen)
        est.critic_step(train_data[:, rows], gen)
    test_data = data[:, test_idx]
    with torch.no_grad():
        values = [est.measure(test_data, gen, estimator=scorer).item() for _ in range(8)]
    return float(np.mean(values))
