"""Chaotic signal separation (docs/method.md §6): Lorenz + Rössler in, the six source signals out.

Conventions: trajectories are float64 arrays (n, T, 3) with variables x, y, z last; task arrays are
float32 with the population axis S leading, then batch B and time T. Pools are cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

from study.contract import settings
from study.core._checks import _check_int

__all__ = ["ChaosSeparation", "build", "lorenz", "minmax_then_drop", "rossler"]

logger = logging.getLogger("study.core.tasks.chaos")

# Trajectories integrated together in one solve_ivp call. Part of the cache key: the stacked
# error control (see _integrate) makes the data depend on how trajectories are grouped.
_CHUNK = 256
# Bump when anything about how the pools are generated or stored changes.
_FORMAT_VERSION = 1

# Reference system parameters (docs/method.md §6.1) and tolerances (§6.2, scipy defaults).
_LORENZ = {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}
_ROSSLER = {"a": 0.2, "b": 0.2, "c": 5.7}
_RTOL, _ATOL = 1e-3, 1e-6


# --------------------------------------------------------------------------------- validation


def _check_positive(where: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{where}: {name} must be a real number, but got {type(value).__name__} {value!r}."
        )
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name} must be finite and > 0, but got {name}={value!r}.")
    return float(value)


def _check_finite(where: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{where}: {name} must be a real number, but got {type(value).__name__} {value!r}."
        )
    if not np.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, but got {name}={value!r}.")
    return float(value)


def _initial_conditions(where: str, n: int, rng: object, y0: object) -> np.ndarray:
    """Initial states, shape (n, 3): U[0,1]³ from `rng` (docs/method.md §6.2), or `y0` as given."""
    if (rng is None) == (y0 is None):
        raise ValueError(
            f"{where}: pass exactly one of rng and y0, but got "
            f"rng={'None' if rng is None else 'a Generator'}, "
            f"y0={'None' if y0 is None else 'an array'}."
        )
    if y0 is None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"{where}: rng must be a numpy.random.Generator, but got {type(rng).__name__}."
            )
        return rng.uniform(0.0, 1.0, size=(n, 3))
    y0 = np.asarray(y0, dtype=np.float64)
    if y0.shape != (n, 3) or not np.all(np.isfinite(y0)):
        raise ValueError(
            f"{where}: y0 must be finite with shape (n, 3) = ({n}, 3), but got shape {y0.shape}."
        )
    return y0


# -------------------------------------------------------------------------------- integration


def _lorenz_rhs(sigma: float, rho: float, beta: float) -> Callable:
    def rhs(_t: float, state: np.ndarray) -> np.ndarray:
        x, y, z = state.reshape(3, -1)  # stacked state (3m,) laid out as x_1..x_m, y_1.., z_1..
        return np.concatenate((sigma * (y - x), x * (rho - z) - y, x * y - beta * z))

    return rhs


def _rossler_rhs(a: float, b: float, c: float) -> Callable:
    def rhs(_t: float, state: np.ndarray) -> np.ndarray:
        x, y, z = state.reshape(3, -1)
        return np.concatenate((-y - z, x + a * y, b + x * z - c * z))

    return rhs


def _integrate(
    rhs: Callable,
    y0: np.ndarray,
    t_end: float,
    n_samples: int,
    rtol: float,
    atol: float,
    label: str,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, trajectories (m, n_samples, 3) float64) for chunks of _CHUNK rows of y0."""
    # The m trajectories of a chunk form one stacked ODE of size 3m, so RK45's step-size control
    # acts on the RMS error of the whole stack, not per trajectory as in the reference (one
    # solve_ivp call each, docs/method.md §6.2). A fidelity choice: the orbits are chaotic, so
    # only their statistics matter, and stacking makes generation 60-90x faster.
    t_eval = np.linspace(0.0, t_end, n_samples)
    n = y0.shape[0]
    for start in range(0, n, _CHUNK):
        tic = time.perf_counter()
        block = y0[start : start + _CHUNK]  # (m, 3)
        m = block.shape[0]
        sol = solve_ivp(
            rhs, (0.0, t_end), block.T.ravel(), method="RK45", t_eval=t_eval, rtol=rtol, atol=atol
        )
        if not sol.success:
            raise RuntimeError(
                f"{label}: solve_ivp failed on trajectories "
                f"{start}..{start + m - 1}: {sol.message}"
            )
        # sol.y: (3m, n_samples) -> (3, m, n_samples) -> (m, n_samples, 3)
        traj = sol.y.reshape(3, m, n_samples).transpose(1, 2, 0)
        logger.info(
            "%s: integrated trajectories %d-%d of %d in %.1f s",
            label,
            start + 1,
            start + m,
            n,
            time.perf_counter() - tic,
        )
        yield start, traj


def _solve(
    where: str,
    rhs: Callable,
    n: object,
    rng: object,
    y0: object,
    t_end: object,
    n_samples: object,
    rtol: object,
    atol: object,
) -> np.ndarray:
    n = _check_int(where, "n", n, 1)
    t_end = _check_positive(where, "t_end", t_end)
    n_samples = _check_int(where, "n_samples", n_samples, 2)
    rtol = _check_positive(where, "rtol", rtol)
    atol = _check_positive(where, "atol", atol)
    init = _initial_conditions(where, n, rng, y0)
    out = np.empty((n, n_samples, 3), dtype=np.float64)
    for start, traj in _integrate(rhs, init, t_end, n_samples, rtol, atol, where):
        out[start : start + traj.shape[0]] = traj
    return out


def lorenz(
    n: int,
    *,
    rng: np.random.Generator | None = None,
    y0: np.ndarray | None = None,
    t_end: float = 100.0,
    n_samples: int = 14000,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    rtol: float = 1e-3,
    atol: float = 1e-6,
) -> np.ndarray:
    """Integrate `n` Lorenz trajectories (docs/method.md §6.1–6.2), raw, not normalised.

    dx/dt = σ(y − x), dy/dt = x(ρ − z) − y, dz/dt = xy − βz, with RK45
    (`scipy.integrate.solve_ivp`) sampled at `np.linspace(0, t_end, n_samples)`. Trajectories
    are integrated in stacked chunks of 256, so RK45's step-size control acts on the RMS error
    of each chunk as a whole, not per trajectory as in the reference (one solve_ivp call per
    trajectory): a fidelity choice that makes generation 60-90x faster; only the statistics of
    chaotic trajectories matter, and a chunk's results depend on its other members.

    Args:
        n: number of trajectories.
        rng: draws the initial conditions, U[0,1]³ per trajectory. Exactly one of rng and y0.
        y0: explicit initial conditions, shape (n, 3), instead of rng.
        t_end: end time; the reference uses 100 (Δt ≈ 0.00714 with 14000 samples).
        n_samples: number of samples including t = 0.
        sigma, rho, beta: system parameters (reference 10, 28, 8/3).
        rtol, atol: RK45 tolerances (scipy defaults, as the reference).

    Returns:
        Trajectories, shape (n, n_samples, 3) with x, y, z last, float64.

    Raises:
        ValueError, TypeError: for invalid arguments.
    """
    where = "lorenz()"
    rhs = _lorenz_rhs(
        _check_finite(where, "sigma", sigma),
        _check_finite(where, "rho", rho),
        _check_finite(where, "beta", beta),
    )
    return _solve(where, rhs, n, rng, y0, t_end, n_samples, rtol, atol)


def rossler(
    n: int,
    *,
    rng: np.random.Generator | None = None,
    y0: np.ndarray | None = None,
    t_end: float = 700.0,
    n_samples: int = 14000,
    a: float = 0.2,
    b: float = 0.2,
    c: float = 5.7,
    rtol: float = 1e-3,
    atol: float = 1e-6,
) -> np.ndarray:
    """Integrate `n` Rössler trajectories (docs/method.md §6.1–6.2), raw, not normalised.

    dx/dt = −y − z, dy/dt = x + ay, dz/dt = b + xz − cz, otherwise exactly as `lorenz` (stacked
    RK45 chunks, samples at `np.linspace(0, t_end, n_samples)`).

    Args:
        n: number of trajectories.
        rng: draws the initial conditions, U[0,1]³ per trajectory. Exactly one of rng and y0.
        y0: explicit initial conditions, shape (n, 3), instead of rng.
        t_end: end time; the reference uses 700 (Δt ≈ 0.05 with 14000 samples).
        n_samples: number of samples including t = 0.
        a, b, c: system parameters (reference 0.2, 0.2, 5.7; b = 2.0 gives a periodic orbit).
        rtol, atol: RK45 tolerances (scipy defaults, as the reference).

    Returns:
        Trajectories, shape (n, n_samples, 3) with x, y, z last, float64.

    Raises:
        ValueError, TypeError: for invalid arguments.
    """
    where = "rossler()"
    rhs = _rossler_rhs(
        _check_finite(where, "a", a), _check_finite(where, "b", b), _check_finite(where, "c", c)
    )
    return _solve(where, rhs, n, rng, y0, t_end, n_samples, rtol, atol)


def minmax_then_drop(traj: np.ndarray, drop: int) -> np.ndarray:
    """Min-max scale each trajectory and variable to [0, 1] over all samples, then drop a prefix.

    Follows docs/method.md §6.3: the scaling uses the full series, including the transient that is
    dropped afterwards, so the kept part lies in [0, 1] without necessarily reaching 0 or 1.
    A variable that is constant over a trajectory maps to 0.

    Args:
        traj: trajectories, shape (..., T, D), e.g. (n, T, 3); real-valued and finite.
        drop: number of leading samples to discard, 0 <= drop < T.

    Returns:
        Scaled trajectories, shape (..., T - drop, D), float64.

    Raises:
        ValueError, TypeError: for invalid arguments.
    """
    where = "minmax_then_drop()"
    traj = np.asarray(traj)
    if traj.ndim < 2 or not np.issubdtype(traj.dtype, np.number) or np.iscomplexobj(traj):
        raise ValueError(
            f"{where}: traj must be a real array of shape (..., T, D), but got "
            f"dtype {traj.dtype} and shape {traj.shape}."
        )
    drop = _check_int(where, "drop", drop, 0)
    if drop >= traj.shape[-2]:
        raise ValueError(
            f"{where}: drop must be smaller than the number of samples T, but got "
            f"drop={drop}, T={traj.shape[-2]} (shape {traj.shape})."
        )
    traj = traj.astype(np.float64, copy=False)
    lo = traj.min(axis=-2, keepdims=True)  # (..., 1, D)
    span = traj.max(axis=-2, keepdims=True) - lo
    scaled = (traj[..., drop:, :] - lo) / np.where(span > 0, span, 1.0)
    if not np.all(np.isfinite(scaled)):
        raise ValueError(f"{where}: traj must be finite, but it contains NaN or Inf.")
    return scaled


# ------------------------------------------------------------------------------------- task


def _default_cache_dir() -> Path:
    return settings.cache_dir()


class ChaosSeparation:
    """Separate normalised Lorenz and Rössler signals from their sum (docs/method.md §6).

    Input x_t = L_t + R_t (3 channels, in [0, 2]); target [L_t; R_t] (6 channels: Lorenz x, y, z
    then Rössler x, y, z, in [0, 1]), at the same time step. A train pool of `n_train` and a
    test pool of `n_test` sequences are generated from `data_seed` (independent streams per pool
    and per system), stored float32 and cached on disk under a hash of every parameter that
    affects them; a second construction with the same parameters reads the file.

    Args:
        n_train: sequences in the train pool (reference 5000 per file, docs/method.md §6.5).
        n_test: sequences in the test pool (reference 50).
        n_samples: samples per raw trajectory, before the drop (reference 14000).
        drop: leading samples dropped after normalisation (reference 4000).
        lorenz_t_end: Lorenz integration end time (reference 100).
        rossler_t_end: Rössler integration end time (reference 700).
        washout: leading steps the loss ignores (200 in docs/method.md §6.6); no effect on data.
        data_seed: seed of the data, a non-negative int.
        cache_dir: folder of the cache files; None means `$STUDY_CACHE`, else `~/.cache/mistudy`.

    Attributes:
        n_inputs, n_outputs: 3 and 6.
        transient: 0 (no no-grad prefix).
        washout: as given.
        seq_len: n_samples - drop, the T of every array returned.
        input_channels: None (the input is a sum; no input specialisation).
        output_channels: channel of each output, [0, 0, 0, 1, 1, 1] (Lorenz 0, Rössler 1).
        metric: "r2".
        cache_path: the cache file of these parameters.
        loaded_from_cache: True when the pools were read from `cache_path`, not generated.

    Raises:
        ValueError, TypeError: for invalid arguments.
    """

    name = "chaos_separation"
    n_inputs = 3
    n_outputs = 6
    transient = 0
    input_channels = None
    metric = "r2"
    device_sampling = False  # study.core.tasks.Task: batches come from `sample` (NumPy pools)
    fixed_eval_pool = True  # evaluation uses `test_set`

    def __init__(
        self,
        *,
        n_train: int = 5000,
        n_test: int = 50,
        n_samples: int = 14000,
        drop: int = 4000,
        lorenz_t_end: float = 100.0,
        rossler_t_end: float = 700.0,
        washout: int = 200,
        data_seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        where = "ChaosSeparation"
        self.n_train = _check_int(where, "n_train", n_train, 1)
        self.n_test = _check_int(where, "n_test", n_test, 1)
        self.n_samples = _check_int(where, "n_samples", n_samples, 2)
        self.drop = _check_int(where, "drop", drop, 0)
        if self.drop >= self.n_samples:
            raise ValueError(
                f"{where}: drop must be smaller than n_samples, but got "
                f"drop={self.drop}, n_samples={self.n_samples}."
            )
        self.lorenz_t_end = _check_positive(where, "lorenz_t_end", lorenz_t_end)
        self.rossler_t_end = _check_positive(where, "rossler_t_end", rossler_t_end)
        self.washout = _check_int(where, "washout", washout, 0)
        self.seq_len = self.n_samples - self.drop
        if self.washout >= self.seq_len:
            raise ValueError(
                f"{where}: washout must be smaller than n_samples - drop = "
                f"{self.seq_len} so the loss sees at least one step, but got "
                f"washout={self.washout}."
            )
        self.data_seed = _check_int(where, "data_seed", data_seed, 0)
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(
                f"{where}: cache_dir must be a path or None, but got {type(cache_dir).__name__}."
            )
        self.output_channels = np.array([0, 0, 0, 1, 1, 1])

        self._params = {
            "format": _FORMAT_VERSION,
            "chunk": _CHUNK,
            "data_seed": self.data_seed,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_samples": self.n_samples,
            "drop": self.drop,
            "lorenz_t_end": self.lorenz_t_end,
            "rossler_t_end": self.rossler_t_end,
            "lorenz": _LORENZ,
            "rossler": _ROSSLER,
            "rtol": _RTOL,
            "atol": _ATOL,
        }
        self._params_json = json.dumps(self._params, sort_keys=True, separators=(",", ":"))
        key = hashlib.sha256(self._params_json.encode()).hexdigest()[:16]
        folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        self.cache_path = folder / f"chaos-{key}.npz"

        pools = self._load()
        self.loaded_from_cache = pools is not None
        if pools is None:
            pools = self._generate()
            self._save(pools)
        # Targets (n, T, 6) float32; inputs are summed from them on demand (saves a third of RAM).
        self._train, self._test = pools
        self._train.flags.writeable = False
        self._test.flags.writeable = False

    # ------------------------------------------------------------------------- data

    def _generate(self) -> tuple[np.ndarray, np.ndarray]:
        """Integrate and normalise both pools; returns targets (n_train, T, 6), (n_test, T, 6)."""
        # Four independent streams: (train, test) x (Lorenz, Rössler).
        streams = np.random.SeedSequence(self.data_seed).spawn(2)
        pools = []
        for pool, stream, n in zip(("train", "test"), streams, (self.n_train, self.n_test)):
            lorenz_ss, rossler_ss = stream.spawn(2)
            target = np.empty((n, self.seq_len, 6), dtype=np.float32)
            systems = (
                (_lorenz_rhs(**_LORENZ), lorenz_ss, self.lorenz_t_end, slice(0, 3), "lorenz"),
                (_rossler_rhs(**_ROSSLER), rossler_ss, self.rossler_t_end, slice(3, 6), "rossler"),
            )
            for rhs, ss, t_end, channels, system in systems:
                y0 = np.random.default_rng(ss).uniform(0.0, 1.0, size=(n, 3))
                label = f"{self.cache_path.name} {pool} {system}"
                for start, traj in _integrate(rhs, y0, t_end, self.n_samples, _RTOL, _ATOL, label):
                    rows = slice(start, start + traj.shape[0])
                    target[rows, :, channels] = minmax_then_drop(traj, self.drop)
            pools.append(target)
        return pools[0], pools[1]

    def _load(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.cache_path.is_file():
            return None
        try:
            with np.load(self.cache_path, allow_pickle=False) as f:
                params = str(f["params"])
                train, test = f["train"], f["test"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
            logger.warning(
                "%s: unreadable cache file (%s); generating it again.", self.cache_path, e
            )
            return None
        expected = ((self.n_train, self.seq_len, 6), (self.n_test, self.seq_len, 6))
        if (
            params != self._params_json
            or (train.shape, test.shape) != expected
            or train.dtype != np.float32
            or test.dtype != np.float32
        ):
            logger.warning(
                "%s: cache file does not match its parameters; generating it again.",
                self.cache_path,
            )
            return None
        logger.info("%s: loaded cached pools", self.cache_path)
        return train, test

    def _save(self, pools: tuple[np.ndarray, np.ndarray]) -> None:
        # Temp file in the same folder + os.replace: readers see the old file or the whole new one,
        # never a partial one, even when two processes build the same pool at once.
        folder = self.cache_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.cache_path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, params=np.array(self._params_json), train=pools[0], test=pools[1])
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache must be readable by others
            os.replace(tmp, self.cache_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        logger.info("%s: cached pools written", self.cache_path)

    # ----------------------------------------------------------------------- batches

    def sample(
        self, rngs: Sequence[np.random.Generator], batch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw a training batch per population member, with replacement (docs/method.md §6.5).

        Args:
            rngs: one generator per member s; member s draws its `batch` indices with rngs[s].
            batch: sequences per member (B).

        Returns:
            inputs, shape (S, B, T, 3), and targets, shape (S, B, T, 6), float32, T = seq_len;
            inputs == targets[..., :3] + targets[..., 3:].

        Raises:
            ValueError, TypeError: for invalid arguments.
        """
        where = "ChaosSeparation.sample()"
        if isinstance(rngs, np.random.Generator) or not isinstance(rngs, Sequence) or not rngs:
            raise TypeError(
                f"{where}: rngs must be a non-empty sequence of "
                f"numpy.random.Generator (one per member), but got "
                f"{type(rngs).__name__}."
            )
        for s, rng in enumerate(rngs):
            if not isinstance(rng, np.random.Generator):
                raise TypeError(
                    f"{where}: rngs[{s}] must be a numpy.random.Generator, but got "
                    f"{type(rng).__name__}."
                )
        batch = _check_int(where, "batch", batch, 1)
        idx = np.stack([rng.integers(0, self.n_train, size=batch) for rng in rngs])  # (S, B)
        targets = self._train[idx]  # (S, B, T, 6)
        return self._mix(targets), targets

    def test_set(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """The fixed evaluation batch: the first `batch` test sequences (docs/method.md §6.5).

        Args:
            batch: number of test sequences (B), 1 <= batch <= n_test.

        Returns:
            inputs, shape (B, T, 3), and targets, shape (B, T, 6), float32.

        Raises:
            ValueError, TypeError: for invalid arguments.
        """
        where = "ChaosSeparation.test_set()"
        batch = _check_int(where, "batch", batch, 1)
        if batch > self.n_test:
            raise ValueError(
                f"{where}: batch must be at most n_test={self.n_test}, but got batch={batch}."
            )
        targets = self._test[:batch].copy()
        return self._mix(targets), targets

    @staticmethod
    def _mix(targets: np.ndarray) -> np.ndarray:
        return targets[..., :3] + targets[..., 3:]  # L + R, docs/method.md §6.4


def build(cfg) -> ChaosSeparation:
    """The separation task of a TrialConfig (`task.chaos`)."""
    c = cfg.task.chaos
    return ChaosSeparation(
        n_train=c.n_train,
        n_test=c.n_test,
        n_samples=c.n_samples,
        drop=c.drop,
        lorenz_t_end=c.lorenz_t_end,
        rossler_t_end=c.rossler_t_end,
        washout=c.washout,
        data_seed=c.data_seed,
    )
