"""Emergence epochs of metric curves and statistics of the structural-minus-functional lag.

Pure NumPy/SciPy (pandas only inside the table helpers). Conventions: a curve is one seed's metric
sampled at evaluation epochs, shape (T,); "did not emerge" is NaN, never a number (method.md §10.3,
DESIGN.md §5); every random step takes an explicit ``np.random.Generator``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Onset", "onset"]

# Robust noise: a Gaussian's MAD is 0.6745 σ, and a difference of two independent evaluations has
# standard deviation √2 σ, so σ ≈ 1.4826 · MAD(diff) / √2.
_MAD_TO_SIGMA = 1.482602218505602
_MIN_POINTS = 3  # fewest finite evaluations from which a noise scale and a rise can be estimated


@dataclass(frozen=True)
class Onset:
    """Emergence of one curve (see :func:`onset` for the exact definitions)."""

    half_rise: float  # epoch, NaN when the curve did not emerge
    threshold: float  # first epoch from which the curve stays above chance + margin, NaN if never
    emerged: bool
    rise: float  # X_end − X_0 (X_end = mean of the last `final_window` finite values)
    noise: float  # per-evaluation noise scale σ used for the decision


def onset(
    epochs: Any,
    values: Any,
    *,
    chance: float | None = None,
    final_window: int = 3,
    noise_k: float = 3.0,
    min_rise: float = 0.02,
) -> Onset:
    """Half-rise and threshold-crossing epochs of one curve, or "did not emerge".

    Definitions (method.md §10.3; feasibility.md §1 for the averaged end value). Non-finite values
    (a diverged tail, a skipped evaluation) are dropped together with their epochs first; what
    follows uses the remaining T' finite evaluations.

    - ``X_0`` is the first finite value, ``X_end`` the mean of the last ``min(final_window, T'-1)``
      finite values, and ``rise = X_end − X_0``.
    - ``noise`` σ is estimated from the curve itself, robustly: 1.4826 · MAD of the successive
      differences / √2 (a step or sigmoid rise changes only a few differences, so it barely moves
      the MAD, while a linear drift only moves their median).
    - The curve **emerged** iff ``rise >= max(noise_k · σ, min_rise)``; a falling curve never
      emerges. Fewer than 3 finite values never emerge (no noise scale can be estimated).
    - ``half_rise`` is the first evaluation epoch whose value is ``>= X_0 + rise / 2``.
    - ``threshold`` is the first evaluation epoch from which every later finite value is
      ``> chance + max(noise_k · σ, min_rise)``, i.e. the curve leaves the chance level by the
      same margin that decides emergence and never falls back. NaN without ``chance``.

    Both epochs are NaN when the curve did not emerge (censored, not a number).

    Args:
        epochs: evaluation epochs, shape (T,), strictly increasing.
        values: the metric at those epochs, shape (T,); NaN/inf allowed.
        chance: the metric's chance level (e.g. :func:`chance_modularity`), or None.
        final_window: number of last finite evaluations averaged into X_end, >= 1.
        noise_k: how many noise scales the rise must exceed, >= 0.
        min_rise: smallest rise that counts, whatever the noise, >= 0.

    Returns:
        The :class:`Onset` of the curve.

    Raises:
        ValueError: on shapes, non-increasing epochs or out-of-range options.
    """
    t, x = _check_curve("onset()", epochs, values)
    if isinstance(final_window, bool) or not isinstance(final_window, (int, np.integer)):
        raise TypeError(f"onset(): final_window must be an int, but got {final_window!r}.")
    if final_window < 1:
        raise ValueError(f"onset(): final_window must be >= 1, but got final_window={final_window}.")
    if not (noise_k >= 0 and min_rise >= 0):
        raise ValueError(
            f"onset(): noise_k and min_rise must be >= 0, but got noise_k={noise_k}, "
            f"min_rise={min_rise}."
        )
    if chance is not None and not math.isfinite(chance):
        raise ValueError(f"onset(): chance must be finite or None, but got chance={chance}.")

    finite = np.isfinite(x)
    t, x = t[finite], x[finite]
    if x.size < _MIN_POINTS:
        return Onset(math.nan, math.nan, False, math.nan, math.nan)

    x0 = float(x[0])
    window = min(final_window, x.size - 1)
    rise = float(np.mean(x[-window:])) - x0
    d = np.diff(x)
    noise = float(_MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))
    margin = max(noise_k * noise, min_rise)
    if not rise >= margin:
        return Onset(math.nan, math.nan, False, rise, noise)

    # X_end >= X_0 + margin > X_0 + rise/2 somewhere in the final window, so argmax finds a hit.
    half_rise = float(t[np.argmax(x >= x0 + 0.5 * rise)])
    threshold = math.nan
    if chance is not None:
        below = np.flatnonzero(~(x > chance + margin))
        start = 0 if below.size == 0 else below[-1] + 1
        if start < x.size:
            threshold = float(t[start])
    return Onset(half_rise, threshold, True, rise, noise)


def _check_curve(where: str, epochs: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and values as float arrays of shape (T,), validated."""
    try:
        t = np.asarray(epochs, dtype=float)
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where}: epochs and values must be numeric arrays ({e}).") from e
    if t.ndim != 1 or x.shape != t.shape:
        raise ValueError(
            f"{where}: epochs and values must have the same shape (T,), but got epochs shape "
            f"{t.shape} and values shape {x.shape}."
        )
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{where}: epochs must be finite, but got {t.tolist()}.")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError(f"{where}: epochs must be strictly increasing, but got {t.tolist()}.")
    return t, x
