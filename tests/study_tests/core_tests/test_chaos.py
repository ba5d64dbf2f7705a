"""Tests of study/tasks/chaos.py: raw dynamics against ODE identities, scaling, task and cache."""

import threading

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from study.core.tasks.chaos import ChaosSeparation, lorenz, minmax_then_drop, rossler

LORENZ_REF = {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}
ROSSLER_REF = {"a": 0.2, "b": 0.2, "c": 5.7}

# A short-sequence task that builds in well under a second.
SMALL = {
    "n_train": 6,
    "n_test": 3,
    "n_samples": 400,
    "drop": 100,
    "lorenz_t_end": 4.0,
    "rossler_t_end": 28.0,
    "washout": 20,
    "data_seed": 3,
}


# ------------------------------------------------------------------------ helpers (ground truth)


def _lorenz_estimates(traj, keep):
    """Parameters recovered from time averages of exact derivatives (they vanish on the attractor).

    With ⟨·⟩ the average over time (after the transient) and trajectories:
      d x/dt:    σ(⟨y⟩ − ⟨x⟩) = 0                   → ⟨x⟩ = ⟨y⟩
      d z/dt:    ⟨xy⟩ − β⟨z⟩ = 0                    → β = ⟨xy⟩ / ⟨z⟩
      d(y²/2)/dt: ρ⟨xy⟩ − ⟨xyz⟩ − ⟨y²⟩ = 0          → ρ = (⟨y²⟩ + ⟨xyz⟩) / ⟨xy⟩
      d(xy)/dt:  σ(⟨y²⟩ − ⟨xy⟩) + ρ⟨x²⟩ − ⟨x²z⟩ − ⟨xy⟩ = 0
                                                    → σ = (⟨x²z⟩ + ⟨xy⟩ − ρ⟨x²⟩) / (⟨y²⟩ − ⟨xy⟩)
    (σ uses the ρ estimate, so a wrong ρ does not masquerade as a wrong σ.)
    """
    x, y, z = np.moveaxis(traj[:, keep:], -1, 0)
    rho = ((y * y).mean() + (x * y * z).mean()) / (x * y).mean()
    sigma = ((x * x * z).mean() + (x * y).mean() - rho * (x * x).mean()) / (
        (y * y).mean() - (x * y).mean()
    )
    return {
        "x_minus_y": x.mean() - y.mean(),
        "z": z.mean(),
        "beta": (x * y).mean() / z.mean(),
        "rho": rho,
        "sigma": sigma,
    }


def _rossler_estimates(traj, keep):
    """Parameters recovered from time averages of exact derivatives of the Rössler system.

    d x/dt:     −⟨y⟩ − ⟨z⟩ = 0                    → ⟨y⟩ = −⟨z⟩
    d y/dt:     ⟨x⟩ + a⟨y⟩ = 0
    d(y²/2)/dt: ⟨xy⟩ + a⟨y²⟩ = 0                  → a = −⟨xy⟩ / ⟨y²⟩
    d z/dt:     b + ⟨xz⟩ − c⟨z⟩ = 0
    d(z²/2)/dt: b⟨z⟩ + ⟨xz²⟩ − c⟨z²⟩ = 0          → (b, c) from this 2×2 linear system
    """
    x, y, z = np.moveaxis(traj[:, keep:], -1, 0)
    a = -(x * y).mean() / (y * y).mean()
    lhs = np.array([[1.0, -z.mean()], [z.mean(), -(z * z).mean()]])
    b, c = np.linalg.solve(lhs, -np.array([(x * z).mean(), (x * z * z).mean()]))
    return {
        "y_plus_z": y.mean() + z.mean(),
        "x_plus_ay": x.mean() + a * y.mean(),
        "a": a,
        "b": b,
        "c": c,
    }


def _largest_lyapunov(system, rng, n_pairs, n_steps, tau, warmup, **params):
    """Benettin's two-trajectory estimate: renormalise a 1e-7 separation every `tau`, average logs.

    Each pair is integrated in one stacked call, so both members see the same steps and the
    separation follows the linearised flow rather than the integrator's step-size noise.
    """
    d0 = 1e-7
    ref = system(n_pairs, rng=rng, t_end=warmup, n_samples=2, **params)[:, -1]  # on the attractor
    u = rng.normal(size=(n_pairs, 3))
    other = ref + d0 * u / np.linalg.norm(u, axis=1, keepdims=True)
    log_growth = np.zeros(n_pairs)
    for _ in range(n_steps):
        end = system(
            2 * n_pairs,
            y0=np.concatenate([ref, other]),
            t_end=tau,
            n_samples=2,
            rtol=1e-6,
            atol=1e-9,
            **params,
        )[:, -1]
        ref, other = end[:n_pairs], end[n_pairs:]
        dist = np.linalg.norm(other - ref, axis=1)
        log_growth += np.log(dist / d0)
        other = ref + (other - ref) * (d0 / dist)[:, None]
    return log_growth.mean() / (n_steps * tau)


def _lorenz_field(_t, s, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    return [sigma * (s[1] - s[0]), s[0] * (rho - s[2]) - s[1], s[0] * s[1] - beta * s[2]]


def _rossler_field(_t, s, a=0.2, b=0.2, c=5.7):
    return [-s[1] - s[2], s[0] + a * s[1], b + s[0] * s[2] - c * s[2]]


# --------------------------------------------------------------------------------- raw systems


@pytest.mark.parametrize("system", [lorenz, rossler])
def test_system_shape_dtype_and_initial_conditions(system):
    a = system(5, rng=np.random.default_rng(7), t_end=2.0, n_samples=50)
    b = system(5, rng=np.random.default_rng(7), t_end=2.0, n_samples=50)
    c = system(5, rng=np.random.default_rng(8), t_end=2.0, n_samples=50)
    assert a.shape == (5, 50, 3) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # docs/method.md §6.2: initial conditions U[0,1]³, independent per trajectory.
    assert np.all((a[:, 0] >= 0) & (a[:, 0] <= 1))
    assert len(np.unique(a[:, 0, 0])) == 5


@pytest.mark.parametrize(
    ("system", "field", "t_end"), [(lorenz, _lorenz_field, 0.3), (rossler, _rossler_field, 3.0)]
)
def test_system_matches_tight_reference_across_chunks(system, field, t_end):
    # 300 trajectories span two stacked chunks; each must follow its own ODE (checks the stacked
    # layout) to the accuracy of rtol=1e-3 over a horizon too short for chaos to amplify errors.
    rng = np.random.default_rng(11)
    y0 = rng.uniform(size=(300, 3))
    got = system(300, y0=y0, t_end=t_end, n_samples=7)
    t = np.linspace(0.0, t_end, 7)
    for i in (0, 255, 256, 299):
        want = solve_ivp(
            field, (0.0, t_end), y0[i], method="DOP853", t_eval=t, rtol=1e-10, atol=1e-12
        ).y.T
        np.testing.assert_allclose(got[i], want, rtol=0, atol=0.02 * np.abs(want).max())


def test_lorenz_time_averages_satisfy_identities():
    # 32 trajectories × 50 time units after a 10-unit transient (dt = 0.01): about 0.1 s.
    traj = lorenz(32, rng=np.random.default_rng(0), t_end=60.0, n_samples=6001)
    est = _lorenz_estimates(traj, keep=1000)
    assert abs(est["x_minus_y"]) < 0.05
    assert est["z"] == pytest.approx(23.6, abs=0.3)  # docs/ground-truth.md; ρ = 24 gives ≈ 22.7
    assert est["beta"] == pytest.approx(LORENZ_REF["beta"], rel=0.01)
    assert est["rho"] == pytest.approx(LORENZ_REF["rho"], rel=0.01)
    assert est["sigma"] == pytest.approx(LORENZ_REF["sigma"], rel=0.03)


@pytest.mark.parametrize(("name", "wrong"), [("rho", 24.0), ("beta", 2.0), ("sigma", 16.0)])
def test_lorenz_identities_detect_wrong_parameter(name, wrong):
    # The tolerances of the test above reject data integrated with a wrong parameter.
    traj = lorenz(32, rng=np.random.default_rng(0), t_end=60.0, n_samples=6001, **{name: wrong})
    est = _lorenz_estimates(traj, keep=1000)
    assert est[name] != pytest.approx(LORENZ_REF[name], rel=0.03)
    assert est[name] == pytest.approx(wrong, rel=0.03)


def test_rossler_time_averages_satisfy_identities():
    # 16 trajectories × 400 time units after a 100-unit transient (dt = 0.05): about 0.3 s.
    traj = rossler(16, rng=np.random.default_rng(0), t_end=500.0, n_samples=10001)
    est = _rossler_estimates(traj, keep=2000)
    assert abs(est["y_plus_z"]) < 0.05  # ⟨z⟩ ≈ 0.9 for scale
    assert abs(est["x_plus_ay"]) < 0.05
    assert est["a"] == pytest.approx(ROSSLER_REF["a"], rel=0.03)
    assert est["b"] == pytest.approx(ROSSLER_REF["b"], rel=0.05)
    assert est["c"] == pytest.approx(ROSSLER_REF["c"], rel=0.02)


@pytest.mark.parametrize(("name", "wrong"), [("a", 0.1), ("b", 2.0), ("c", 4.0)])
def test_rossler_identities_detect_wrong_parameter(name, wrong):
    traj = rossler(16, rng=np.random.default_rng(0), t_end=500.0, n_samples=10001, **{name: wrong})
    est = _rossler_estimates(traj, keep=2000)
    assert est[name] != pytest.approx(ROSSLER_REF[name], rel=0.05)
    assert est[name] == pytest.approx(wrong, rel=0.05)


def test_lorenz_largest_lyapunov_exponent():
    # docs/ground-truth.md: λ_max ≈ 0.906. 16 pairs × 40 renormalisations of τ = 1: about 0.2 s.
    lam = _largest_lyapunov(
        lorenz, np.random.default_rng(0), n_pairs=16, n_steps=40, tau=1.0, warmup=20.0
    )
    assert lam == pytest.approx(0.906, abs=0.08)


@pytest.mark.parametrize(("b", "low", "high"), [(0.2, 0.045, 0.10), (2.0, -0.02, 0.02)])
def test_rossler_chaotic_at_b_02_periodic_at_b_2(b, low, high):
    # docs/ground-truth.md: λ_max ≈ 0.071 at b = 0.2 (chaos); b = 2.0 is a limit cycle (λ_max = 0).
    lam = _largest_lyapunov(
        rossler, np.random.default_rng(1), n_pairs=8, n_steps=60, tau=5.0, warmup=100.0, b=b
    )
    assert low < lam < high


@pytest.mark.parametrize(
    ("system", "kwargs", "error", "match"),
    [
        (
            lorenz,
            {"n": 0, "rng": np.random.default_rng(0)},
            ValueError,
            r"lorenz\(\): n must be at least 1",
        ),
        (lorenz, {"n": 2.0, "rng": np.random.default_rng(0)}, TypeError, r"n must be an int"),
        (lorenz, {"n": 2}, ValueError, r"exactly one of rng and y0"),
        (
            lorenz,
            {"n": 2, "rng": np.random.default_rng(0), "y0": np.zeros((2, 3))},
            ValueError,
            r"exactly one of rng and y0",
        ),
        (lorenz, {"n": 2, "rng": 0}, TypeError, r"rng must be a numpy.random.Generator"),
        (
            lorenz,
            {"n": 2, "y0": np.zeros((3, 3))},
            ValueError,
            r"y0 must be finite with shape \(n, 3\)",
        ),
        (
            lorenz,
            {"n": 2, "rng": np.random.default_rng(0), "t_end": -1.0},
            ValueError,
            r"t_end must be finite and > 0, but got t_end=-1.0",
        ),
        (
            rossler,
            {"n": 2, "rng": np.random.default_rng(0), "n_samples": 1},
            ValueError,
            r"rossler\(\): n_samples must be at least 2",
        ),
        (
            rossler,
            {"n": 2, "rng": np.random.default_rng(0), "rtol": 0.0},
            ValueError,
            r"rtol must be",
        ),
        (
            rossler,
            {"n": 2, "rng": np.random.default_rng(0), "b": float("nan")},
            ValueError,
            r"b must be finite",
        ),
    ],
)
def test_system_rejects_bad_arguments(system, kwargs, error, match):
    with pytest.raises(error, match=match):
        system(**kwargs)


# ------------------------------------------------------------------------------ normalisation


def test_minmax_then_drop_known_values():
    traj = np.array([[[0.0, 10.0, 3.0], [5.0, 20.0, 3.0], [10.0, 15.0, 3.0], [2.5, 12.5, 3.0]]])
    # Per variable (v − min) / (max − min) over all 4 samples; a constant variable maps to 0.
    want = np.array([[[0.5, 1.0, 0.0], [1.0, 0.5, 0.0], [0.25, 0.25, 0.0]]])
    np.testing.assert_allclose(minmax_then_drop(traj, 1), want)


@pytest.mark.parametrize("drop", [0, 1, 37])
def test_minmax_then_drop_range_and_extremes(drop):
    rng = np.random.default_rng(2)
    traj = rng.normal(size=(4, 60, 3)) * rng.uniform(1, 50, size=(4, 1, 3)) + 7.0
    out = minmax_then_drop(traj, drop)
    assert out.shape == (4, 60 - drop, 3)
    assert np.all((out >= 0) & (out <= 1))
    full = minmax_then_drop(traj, 0)
    # Extremes are attained per trajectory and variable over the full series, before the drop.
    np.testing.assert_allclose(full.min(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(full.max(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(out, full[:, drop:])


@pytest.mark.parametrize(
    ("traj", "drop", "error", "match"),
    [
        (np.zeros((3, 5, 3)), 5, ValueError, r"drop must be smaller than the number of samples T"),
        (np.zeros((3, 5, 3)), -1, ValueError, r"drop must be at least 0, but got drop=-1"),
        (np.zeros((3, 5, 3)), 1.0, TypeError, r"drop must be an int"),
        (np.zeros(5), 1, ValueError, r"traj must be a real array of shape \(\.\.\., T, D\)"),
        (np.full((1, 4, 3), np.nan), 1, ValueError, r"traj must be finite"),
    ],
)
def test_minmax_then_drop_rejects_bad_arguments(traj, drop, error, match):
    with pytest.raises(error, match=match):
        minmax_then_drop(traj, drop)


# -------------------------------------------------------------------------------------- task


@pytest.fixture(scope="module")
def small_task(tmp_path_factory):
    return ChaosSeparation(**SMALL, cache_dir=tmp_path_factory.mktemp("chaos-cache"))


def test_chaos_separation_attributes(small_task):
    task = small_task
    assert (task.n_inputs, task.n_outputs, task.transient, task.washout) == (3, 6, 0, 20)
    assert task.seq_len == 300 and task.metric == "r2" and task.input_channels is None
    np.testing.assert_array_equal(task.output_channels, [0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize(("n_members", "batch"), [(1, 4), (3, 2)])
def test_chaos_separation_sample_shapes_and_mixing(small_task, n_members, batch):
    rngs = [np.random.default_rng(s) for s in range(n_members)]
    x, y = small_task.sample(rngs, batch)
    assert x.shape == (n_members, batch, 300, 3) and y.shape == (n_members, batch, 300, 6)
    assert x.dtype == np.float32 and y.dtype == np.float32
    # docs/method.md §6.4: input = L + R, target = [L; R] at the same step.
    np.testing.assert_array_equal(x, y[..., :3] + y[..., 3:])
    assert np.all((y >= 0) & (y <= 1)) and np.all((x >= 0) & (x <= 2))


def test_chaos_separation_test_set_is_fixed_prefix(small_task):
    x3, y3 = small_task.test_set(3)
    x2, y2 = small_task.test_set(2)
    assert x3.shape == (3, 300, 3) and y3.shape == (3, 300, 6) and y3.dtype == np.float32
    np.testing.assert_array_equal(y2, y3[:2])
    np.testing.assert_array_equal(x3, y3[..., :3] + y3[..., 3:])
    np.testing.assert_array_equal(small_task.test_set(3)[1], y3)


def test_chaos_separation_channels_hold_lorenz_then_rossler(tmp_path):
    # Ground truth of the attractors: Lorenz x and y are strongly correlated, and Rössler z sits
    # near its minimum except for short spikes, so its normalised median is small.
    task = ChaosSeparation(
        n_train=2,
        n_test=4,
        n_samples=3000,
        drop=1000,
        lorenz_t_end=30.0,
        rossler_t_end=200.0,
        cache_dir=tmp_path,
    )
    _, y = task.test_set(4)
    for seq in y.astype(np.float64):
        assert np.corrcoef(seq[:, 0], seq[:, 1])[0, 1] > 0.7
        assert np.median(seq[:, 5]) < 0.1 < np.median(seq[:, 2])
        # Rössler at b = 0.2 is chaotic: successive maxima of x vary (~0.38 of the normalised
        # range); the b = 2.0 limit cycle would repeat one maximum (spread ~0.001).
        rx = seq[:, 3]
        peaks = rx[1:-1][(rx[1:-1] > rx[:-2]) & (rx[1:-1] >= rx[2:])]
        assert len(peaks) > 15 and np.ptp(peaks) > 0.1


def test_chaos_separation_members_draw_different_batches_with_replacement(small_task):
    _, y = small_task.sample([np.random.default_rng(0), np.random.default_rng(1)], 12)
    assert not np.array_equal(y[0], y[1])
    # 12 draws from a pool of 6 sequences: repeats must occur, and at most 6 are distinct.
    distinct = np.unique(y[0].reshape(12, -1), axis=0)
    assert len(distinct) <= SMALL["n_train"]


def test_chaos_separation_member_batch_depends_only_on_its_rng(small_task):
    _, pair = small_task.sample([np.random.default_rng(0), np.random.default_rng(1)], 4)
    _, alone = small_task.sample([np.random.default_rng(1)], 4)
    np.testing.assert_array_equal(pair[1], alone[0])


def test_chaos_separation_sample_is_deterministic_per_rng(small_task):
    a = small_task.sample([np.random.default_rng(5), np.random.default_rng(6)], 3)
    b = small_task.sample([np.random.default_rng(5), np.random.default_rng(6)], 3)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_chaos_separation_data_deterministic_per_seed(tmp_path, small_task):
    # Generated again in a fresh cache folder, not read from small_task's file.
    again = ChaosSeparation(**SMALL, cache_dir=tmp_path)
    assert not again.loaded_from_cache
    np.testing.assert_array_equal(again.test_set(3)[1], small_task.test_set(3)[1])
    rngs = lambda: [np.random.default_rng(9)]  # noqa: E731
    np.testing.assert_array_equal(again.sample(rngs(), 5)[1], small_task.sample(rngs(), 5)[1])
    other = ChaosSeparation(**{**SMALL, "data_seed": 4}, cache_dir=tmp_path)
    assert not np.allclose(other.test_set(3)[1], small_task.test_set(3)[1])


def test_chaos_separation_train_and_test_pools_differ(small_task):
    _, train = small_task.sample([np.random.default_rng(0)], 30)
    _, test = small_task.test_set(3)
    train_rows = np.unique(train[0].reshape(30, -1), axis=0)
    for seq in test.reshape(3, -1):
        assert not np.any(np.all(train_rows == seq, axis=1))


class _CountingTask(ChaosSeparation):
    """A real subclass that counts how often the pools are integrated rather than read."""

    generations = 0

    def _generate(self):
        type(self).generations += 1
        return super()._generate()


def test_chaos_separation_cache_written_once_then_read(tmp_path):
    _CountingTask.generations = 0
    first = _CountingTask(**SMALL, cache_dir=tmp_path)
    assert first.cache_path.is_file() and first.cache_path.parent == tmp_path
    assert first.cache_path.name.startswith("chaos-") and first.cache_path.suffix == ".npz"
    mtime = first.cache_path.stat().st_mtime_ns
    second = _CountingTask(**SMALL, cache_dir=tmp_path)
    assert _CountingTask.generations == 1
    assert (first.loaded_from_cache, second.loaded_from_cache) == (False, True)
    assert second.cache_path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(first.test_set(3)[1], second.test_set(3)[1])
    # Atomic write: no temporary file is left beside the cache file.
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.cache_path.name]


@pytest.mark.parametrize(
    ("change", "same_key"),
    [
        ({"n_train": 7}, False),
        ({"n_test": 4}, False),
        ({"n_samples": 401}, False),
        ({"drop": 99}, False),
        ({"lorenz_t_end": 4.5}, False),
        ({"rossler_t_end": 30.0}, False),
        ({"data_seed": 4}, False),
        ({"washout": 30}, True),
        ({"lorenz_t_end": 4}, True),
    ],
)
def test_chaos_separation_cache_key_tracks_data_parameters(tmp_path, small_task, change, same_key):
    # washout only affects the loss; an int t_end equals the same float.
    task = ChaosSeparation(**{**SMALL, **change}, cache_dir=tmp_path)
    assert (task.cache_path.name == small_task.cache_path.name) == same_key


def test_chaos_separation_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path / "env-cache"))
    task = ChaosSeparation(**SMALL)
    assert task.cache_path.parent == tmp_path / "env-cache" and task.cache_path.is_file()


def test_chaos_separation_regenerates_broken_cache_file(tmp_path, small_task):
    path = tmp_path / small_task.cache_path.name
    path.write_bytes(b"not a zip file")
    task = ChaosSeparation(**SMALL, cache_dir=tmp_path)
    assert not task.loaded_from_cache
    np.testing.assert_array_equal(task.test_set(3)[1], small_task.test_set(3)[1])
    assert ChaosSeparation(**SMALL, cache_dir=tmp_path).loaded_from_cache


def test_chaos_separation_ignores_cache_file_of_other_parameters(tmp_path, small_task):
    other = ChaosSeparation(**{**SMALL, "data_seed": 4}, cache_dir=tmp_path)
    # A valid file that holds small_task's pools (same shapes) under other's name is not trusted.
    other.cache_path.write_bytes(small_task.cache_path.read_bytes())
    again = ChaosSeparation(**{**SMALL, "data_seed": 4}, cache_dir=tmp_path)
    assert not again.loaded_from_cache
    np.testing.assert_array_equal(again.test_set(3)[1], other.test_set(3)[1])


def test_chaos_separation_concurrent_builds_leave_valid_file(tmp_path, small_task):
    errors = []

    def build():
        try:
            ChaosSeparation(**SMALL, cache_dir=tmp_path)
        except Exception as e:  # collected so the main thread fails the test
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [small_task.cache_path.name]
    task = ChaosSeparation(**SMALL, cache_dir=tmp_path)
    assert task.loaded_from_cache
    np.testing.assert_array_equal(task.test_set(3)[1], small_task.test_set(3)[1])


def test_chaos_separation_logs_progress_per_chunk(tmp_path, caplog):
    caplog.set_level("INFO", logger="study.core.tasks.chaos")
    ChaosSeparation(**SMALL, cache_dir=tmp_path)
    lines = [r.getMessage() for r in caplog.records if "integrated trajectories" in r.getMessage()]
    # One chunk per (pool, system): train/test × Lorenz/Rössler.
    assert len(lines) == 4 and any("train lorenz" in m for m in lines)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            {"n_train": 0},
            ValueError,
            r"ChaosSeparation: n_train must be at least 1, but got n_train=0",
        ),
        ({"n_test": -2}, ValueError, r"n_test must be at least 1"),
        ({"n_samples": 100.0}, TypeError, r"n_samples must be an int, but got float"),
        (
            {"drop": 400},
            ValueError,
            r"drop must be smaller than n_samples, but got drop=400, n_samples=400",
        ),
        ({"washout": 300}, ValueError, r"washout must be smaller than n_samples - drop = 300"),
        ({"washout": -1}, ValueError, r"washout must be at least 0"),
        ({"lorenz_t_end": 0.0}, ValueError, r"lorenz_t_end must be finite and > 0"),
        ({"rossler_t_end": float("inf")}, ValueError, r"rossler_t_end must be finite and > 0"),
        ({"data_seed": -1}, ValueError, r"data_seed must be at least 0"),
        ({"data_seed": True}, TypeError, r"data_seed must be an int"),
        ({"cache_dir": 3}, TypeError, r"cache_dir must be a path or None"),
    ],
)
def test_chaos_separation_rejects_bad_arguments(tmp_path, change, error, match):
    kwargs = {**SMALL, "cache_dir": tmp_path, **change}
    with pytest.raises(error, match=match):
        ChaosSeparation(**kwargs)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda t: t.sample([np.random.default_rng(0)], 0),
            ValueError,
            r"sample\(\): batch must be at least 1",
        ),
        (
            lambda t: t.sample(np.random.default_rng(0), 2),
            TypeError,
            r"rngs must be a non-empty sequence",
        ),
        (lambda t: t.sample([], 2), TypeError, r"rngs must be a non-empty sequence"),
        (
            lambda t: t.sample([np.random.default_rng(0), 1], 2),
            TypeError,
            r"rngs\[1\] must be a numpy",
        ),
        (
            lambda t: t.test_set(4),
            ValueError,
            r"test_set\(\): batch must be at most n_test=3, but got batch=4",
        ),
        (lambda t: t.test_set(0), ValueError, r"test_set\(\): batch must be at least 1"),
    ],
)
def test_chaos_separation_batch_methods_reject_bad_arguments(small_task, call, error, match):
    with pytest.raises(error, match=match):
        call(small_task)
