"""MI that can be trusted (issue 8): no fake MI from padded columns, the held-out estimate
against closed forms (i.i.d. Gaussians and an AR(1) pair), the sequence-shuffled null floor,
and the Gaussian plug-in on the noisy activity the penalty sees.

Ground truth used throughout: for unit-variance jointly Gaussian pairs (x_c, y_c) with
correlation ρ, independent across d coordinates, I(x; y) = −(d/2)·ln(1 − ρ²). Adding
independent N(0, σ²) noise to every unit keeps them Gaussian with correlation ρ/(1 + σ²).
"""

import math

import numpy as np
import pytest
import torch

from study.core.metrics import gaussian_mi, gaussian_penalty, sequence_null
from study.core.mi import SubgroupMI, heldout_mi, split_sequences
from study.core.partition import groups


def _mi_closed_form(rho: float, d: int, sigma: float = 0.0) -> float:
    r = rho / (1 + sigma**2)
    return -0.5 * d * math.log(1 - r**2)


def _rho_for(mi: float, d: int) -> float:
    return math.sqrt(1 - math.exp(-2 * mi / d))


# ----------------------------------------------------------------------------------------------
# no fake MI from padded columns


def _train_on_independent(labels, estimator, noise_mode, steps=100, seed=0):
    """A training critic on independent tanh(N(0, 1)) units; its estimate on fresh rows.

    Adam at 1e-2 is an aggressive critic: before the fix, 100 such steps read 24 nats of fake
    MI in the 7-7-6 case (0.5 nats at width 32 on 256 rows).
    """
    n = len(labels)
    est = SubgroupMI(1, labels, estimator=estimator, noise_mode=noise_mode, input_noise=0.1,
                     nce_block=64, critic={"width": 64}, optim={"kind": "adam", "lr": 1e-2},
                     seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        est.critic_step(torch.tanh(torch.randn(1, 512, n, generator=gen)), gen)
    test = torch.tanh(torch.randn(1, 8192, n, generator=gen))
    return float(torch.stack([est.measure(test, gen) for _ in range(4)]).mean())


@pytest.mark.parametrize("noise_mode", ["clean_partner", "noisy_partner"])
def test_unequal_groups_7_7_6_read_zero_on_independent_units(noise_mode):
    # the regression of issue 8: N = 20, K = 3 pads the 6-unit group to 7 columns; in
    # clean_partner mode the padded column was noisy in the joint branch and exactly 0 in the
    # shuffled one, and the critic read 2.3 nats (and growing) on independent units
    labels = groups(20, 3, None)
    assert np.bincount(labels).tolist() == [7, 7, 6]
    got = _train_on_independent(labels, "dv", noise_mode)
    assert abs(got) < 0.05, got


def test_padded_columns_carry_no_noise():
    labels = groups(20, 3, None)  # pairs (G1, G3), (G2, G3): b side padded to 7 columns
    est = SubgroupMI(2, labels, input_noise=0.5, critic={"width": 8})
    assert est.a_mask is None and est.b_mask is not None
    gen = torch.Generator().manual_seed(0)
    a, b = est._sides(torch.randn(2, 64, 20, generator=gen), gen)
    padded = est.b_mask[:, 0] == 0  # (R, 7)
    assert padded.sum() == 2 * 2  # two padded terms per seed, one column each
    noisy = b + est._noise(b, est.b_mask, 0.5, gen)
    assert (noisy.permute(0, 2, 1)[padded] == 0).all()  # padded columns stay exactly 0
    assert (noisy.permute(0, 2, 1)[~padded] != 0).all()


_SIZES = [(2, None), (2, (12, 8)), (3, None), (3, (9, 6, 5)), (4, None), (4, (8, 5, 4, 3)),
          (5, None), (5, (6, 5, 4, 3, 2))]
# DV at every K and layout; MINE (same sampling and noise code) at the unequal ones; InfoNCE at
# the unequal K = 2, 3 only: its K = 4, 5 cases cost ~110 s of CI and exercise the same masking
# code as MINE and DV there
_CASES = ([(k, sz, "dv") for k, sz in _SIZES]
          + [(k, sz, "mine") for k, sz in _SIZES if sz is not None]
          + [(k, sz, "infonce") for k, sz in _SIZES if sz is not None and k <= 3])


@pytest.mark.slow
@pytest.mark.parametrize("noise_mode", ["clean_partner", "noisy_partner"])
@pytest.mark.parametrize("k, sizes, estimator", _CASES)
def test_no_fake_mi_any_k_and_sizes(k, sizes, estimator, noise_mode):
    labels = groups(20, k, sizes)
    got = _train_on_independent(labels, estimator, noise_mode)
    assert abs(got) < 0.05, got


@pytest.mark.parametrize("k, sizes", [(3, None),
                                      pytest.param(4, (8, 5, 4, 3), marks=pytest.mark.slow),
                                      pytest.param(5, (6, 5, 4, 3, 2), marks=pytest.mark.slow)])
def test_measurements_of_independent_units_read_zero(k, sizes):
    # Gaussian plug-in (noisy), its null and the held-out estimate with its null, on i.i.d.
    # independent units: all within 0.05 nats of 0 (plug-in bias Σ dx·dy/(2M) ≈ 0.01 here)
    labels = groups(20, k, sizes)
    x = torch.tanh(torch.randn(1, 200, 40, 20, generator=torch.Generator().manual_seed(k)))
    flat = x.reshape(1, -1, 20)
    assert abs(float(gaussian_penalty(flat, labels, "pairwise", noise=0.1))) < 0.05
    null = sequence_null(x, labels).reshape(1, -1, 20)
    assert abs(float(gaussian_penalty(null, labels, "pairwise", noise=0.1))) < 0.05
    value, floor = heldout_mi(x, labels, noise=0.1, steps=150, width=32, seed=k)
    assert abs(float(value)) < 0.05 and abs(float(floor)) < 0.05, (value, floor)


# ----------------------------------------------------------------------------------------------
# the Gaussian plug-in on the noisy activity, and the sequence-shuffled null


def test_gaussian_mi_noise_matches_closed_form_and_sampled_noise():
    gen = np.random.default_rng(0)
    d, rho, sigma, m = 3, 0.8, 0.5, 200_000
    x = gen.standard_normal((m, d))
    y = rho * x + math.sqrt(1 - rho**2) * gen.standard_normal((m, d))
    xt, yt = torch.tensor(x), torch.tensor(y)
    got = float(gaussian_mi(xt, yt, noise=sigma))
    assert got == pytest.approx(_mi_closed_form(rho, d, sigma), abs=0.01)
    sampled = float(gaussian_mi(xt + sigma * torch.randn_like(xt),
                                yt + sigma * torch.randn_like(yt)))
    assert got == pytest.approx(sampled, abs=0.01)
    assert got < float(gaussian_mi(xt, yt)) - 0.5  # noise lowers the MI a lot at ρ = 0.8
    # the penalty form agrees at K = 2
    labels = np.repeat([0, 1], d)
    assert float(gaussian_penalty(torch.cat([xt, yt], 1), labels, "pairwise", noise=sigma)
                 ) == pytest.approx(got, abs=1e-9)


def test_sequence_null_pairs_each_group_with_other_sequences():
    t, b, n = 5, 6, 7
    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    x = torch.arange(t * b * n, dtype=torch.float32).reshape(1, t, b, n)
    null = sequence_null(x, labels)
    assert null.shape == x.shape
    for seq in range(b):
        for unit in range(n):
            src = (seq + labels[unit]) % b
            assert torch.equal(null[0, :, seq, unit], x[0, :, src, unit])
    # each group is a permutation of its own sequences (marginals kept), groups never share one
    assert sequence_null(x[:, :, :2], labels) is None  # B = 2 < K = 3


def test_sequence_null_removes_dependence_but_keeps_each_group():
    # y = x exactly: huge MI; the null pairing of the same data reads ~0, and each group's
    # own covariance is untouched
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 100, 30, 2, generator=gen)
    z = torch.cat([x, x], -1)  # (1, T, B, 4): G2 copies G1
    labels = np.array([0, 0, 1, 1])
    flat = z.reshape(1, -1, 4)
    null = sequence_null(z, labels).reshape(1, -1, 4)
    assert float(gaussian_penalty(flat, labels, "pairwise", noise=0.1)) == pytest.approx(
        _mi_closed_form(1.0, 2, 0.1), abs=0.05)  # ρ = 1 seen through σ = 0.1: 3.9 nats
    assert abs(float(gaussian_penalty(null, labels, "pairwise", noise=0.1))) < 0.01
    torch.testing.assert_close(null.var(1), flat.var(1), rtol=1e-5, atol=1e-6)


def test_split_sequences_is_by_sequence_and_disjoint():
    gen = torch.Generator().manual_seed(0)
    train, test = split_sequences(40, 0.25, gen)
    assert len(test) == 10 and len(train) == 30
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert set(train.tolist()) | set(test.tolist()) == set(range(40))
    assert split_sequences(3, 0.25, gen) is None  # needs 2 + 2
    assert len(split_sequences(4, 0.1, gen)[1]) == 2


# ----------------------------------------------------------------------------------------------
# the held-out estimate against closed forms


def _gaussian_sequences(gen, s, t, b, d, rhos):
    """(S, T, B, 2d) i.i.d. rows; seed i has I(G1; G2) = −(d/2) ln(1 − rhos[i]²)."""
    x = gen.standard_normal((s, t, b, d))
    r = np.asarray(rhos)[:, None, None, None]
    y = r * x + np.sqrt(1 - r**2) * gen.standard_normal((s, t, b, d))
    return torch.tensor(np.concatenate([x, y], -1), dtype=torch.float32)


@pytest.mark.slow
def test_heldout_recovers_gaussian_mi_with_the_penalty_noise():
    d, sigma = 4, 0.3
    targets = (0.0, 0.5, 1.0, 2.0)  # MI of the noise-free pair, one seed each
    rhos = [_rho_for(m, d) for m in targets]
    x = _gaussian_sequences(np.random.default_rng(0), 4, 100, 40, d, rhos)
    labels = np.repeat([0, 1], d)
    value, null = heldout_mi(x, labels, noise=sigma, seed=3)
    want = torch.tensor([_mi_closed_form(r, d, sigma) for r in rhos])
    # a held-out DV lower bound: at most sampling error above, a critic gap below
    assert (value <= want + 0.05).all(), (value, want)
    assert (value >= 0.85 * want - 0.05).all(), (value, want)
    assert (null.abs() < 0.05).all(), null


@pytest.mark.slow
def test_heldout_total_correlation_of_three_groups():
    # K = 3, sizes 3-3-2: G1 and G2 correlated coordinate-wise (ρ), G3 independent.
    # TC = I(G1; G2) + I(G1,G2; G3) = I(G1; G2) + 0 (G3 ⟂ (G1, G2))
    gen = np.random.default_rng(1)
    rho, s, t, b = 0.8, 2, 100, 40
    g1 = gen.standard_normal((s, t, b, 3))
    g2 = rho * g1 + math.sqrt(1 - rho**2) * gen.standard_normal((s, t, b, 3))
    g3 = gen.standard_normal((s, t, b, 2))
    x = torch.tensor(np.concatenate([g1, g2, g3], -1), dtype=torch.float32)
    labels = groups(8, 3, (3, 3, 2))
    value, null = heldout_mi(x, labels, penalty="total_correlation", noise=0.0, seed=0)
    want = _mi_closed_form(rho, 3)
    assert ((value <= want + 0.06) & (value >= 0.85 * want - 0.05)).all(), (value, want)
    assert (null.abs() < 0.06).all(), null


def _ar1_pair(gen, s, t, b, d, rho, phi):
    """(S, T, B, 2d) stationary vector AR(1) sequences with instantaneous coupling ρ.

    z_t = φ z_{t−1} + √(1 − φ²) ε_t, ε_t ~ N(0, C), C = [[I, ρI], [ρI, I]], z_0 ~ N(0, C).
    The stationary covariance Σ solves Σ = φ²Σ + (1 − φ²)C, so Σ = C: at every step
    (x_t, y_t) is jointly Gaussian with unit variances and per-coordinate correlation ρ, and
    I(x_t; y_t) = −(d/2)·ln(1 − ρ²) whatever φ is. Rows of one sequence are autocorrelated,
    corr(z_t, z_{t+k}) = φ^k (time constant τ = −1/ln φ steps): a row split would leak.
    """
    def eps(shape):
        e1 = gen.standard_normal(shape)
        return np.concatenate([e1, rho * e1 + math.sqrt(1 - rho**2) * gen.standard_normal(shape)],
                              -1)

    z = np.empty((s, t, b, 2 * d))
    z[:, 0] = eps((s, b, d))
    for i in range(1, t):
        z[:, i] = phi * z[:, i - 1] + math.sqrt(1 - phi**2) * eps((s, b, d))
    return torch.tensor(z, dtype=torch.float32)


@pytest.mark.slow
def test_heldout_recovers_ar1_pair_mi():
    d, rho, phi, sigma = 3, 0.7, math.exp(-1 / 10), 0.1  # τ = 10 steps
    x = _ar1_pair(np.random.default_rng(2), 2, 400, 40, d, rho, phi)
    labels = np.repeat([0, 1], d)
    value, null = heldout_mi(x, labels, noise=sigma, seed=5)
    want = _mi_closed_form(rho, d, sigma)
    assert ((value <= want + 0.06) & (value >= 0.85 * want - 0.05)).all(), (value, want)
    assert (null.abs() < 0.06).all(), null


def test_autocorrelation_bias_of_the_plug_in_is_removed_by_its_null():
    # independent AR(1) halves of 20 units, τ = 50 steps, cpu-wm evaluation size (40 × 400):
    # the plug-in reads far above 0 (issue 8 measured 0.56 nats), its null reads the same floor.
    # The held-out DV bound reads *below* 0 here: with ~8 independent samples per sequence the
    # critic overfits, and on held-out independent data E[T] − ln E[e^T] ≤ 0 by Jensen, lower
    # the more T varies. Its null sits at the same floor, so the excess is ~0 and never positive.
    x = _ar1_pair(np.random.default_rng(3), 2, 400, 40, 20, 0.0, math.exp(-1 / 50))
    labels = np.repeat([0, 1], 20)
    flat = x.reshape(2, -1, 40)
    plug_in = gaussian_penalty(flat, labels, "pairwise", noise=0.1)
    floor = gaussian_penalty(sequence_null(x, labels).reshape(2, -1, 40), labels, "pairwise",
                             noise=0.1)
    assert (plug_in > 0.2).all(), plug_in
    assert ((plug_in - floor).abs() < 0.1).all(), (plug_in, floor)
    value, null = heldout_mi(x, labels, noise=0.1, steps=150, seed=0)
    assert (value < 0.05).all() and (null < 0.05).all(), (value, null)
    assert ((value - null).abs() < 0.1).all(), (value, null)


def test_heldout_needs_four_sequences():
    x = torch.randn(2, 50, 3, 4)
    value, null = heldout_mi(x, np.array([0, 0, 1, 1]), steps=2)
    assert torch.isnan(value).all() and torch.isnan(null).all()
    value, null = heldout_mi(torch.randn(2, 50, 4, 6), np.array([0, 0, 1, 1, 2, 2]), steps=2)
    assert torch.isfinite(value).all()  # 2 + 2 sequences: value defined
    assert torch.isnan(null).all()  # but 2 sequences per split cannot pair 3 groups apart


def test_heldout_is_deterministic_given_its_seed():
    x = torch.randn(2, 30, 8, 4, generator=torch.Generator().manual_seed(0))
    labels = np.array([0, 0, 1, 1])
    a = heldout_mi(x, labels, steps=20, seed=7)
    b = heldout_mi(x, labels, steps=20, seed=7)
    c = heldout_mi(x, labels, steps=20, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


# ----------------------------------------------------------------------------------------------
# the metrics in the training loop, and the clean_partner warning

TINY = {
    "task.batch": 4, "task.wm.transient": 20, "task.wm.segment": 40, "network.hidden": 12,
    "partition.groups": 3, "task.wm.n_bits": 3, "critic.width": 16, "critic.steps": 1,
    "critic.pretrain_steps": 2, "mi.pairs": 0, "mi.heldout.steps": 5, "mi.heldout.width": 8,
    "train.epochs": 4, "train.eval_every": 1, "train.eval_batch": 12,
    "train.heldout_mi_every": 2, "train.snapshot_every": 0, "train.threads": 1, "seeds": 2,
    "train.device": "cpu",
}


def _curves(**over):
    from study.contract.names import MI_METRICS
    from study.spec import load_trial_config
    from study.training import train

    res = train(load_trial_config(overrides={**TINY, **over}))
    assert res.status == "finished"
    assert set(MI_METRICS) <= set(res.history[0].metrics)
    return res


def test_trainer_logs_every_mi_metric_and_heldout_on_schedule():
    res = _curves()
    assert [r.epoch for r in res.history] == [0, 1, 2, 3, 4]
    for i, rec in enumerate(res.history):
        m = {k: np.array(v) for k, v in rec.metrics.items()}
        for k in ("mi", "mi_gauss", "mi_gauss_null"):
            assert np.isfinite(m[k]).all(), (i, k)
        due = i % 2 == 0  # evaluations 0, 2 and 4 (the last)
        assert np.isfinite(m["mi_heldout"]).all() == due, i
        assert np.isfinite(m["mi_heldout_null"]).all() == due, i
    assert "eval.mi.heldout" in res.timings
    # the plug-in sees the penalty's noise: never above the noise-free plug-in
    assert all(g >= 0 for r in res.history for g in r.metrics["mi_gauss"])


def test_heldout_estimate_changes_no_other_metric_and_can_be_off():
    on, off = _curves(), _curves(**{"train.heldout_mi_every": 0})
    for a, b in zip(on.history, off.history):
        for k in a.metrics:
            if k.startswith("mi_heldout"):
                assert np.isnan(b.metrics[k]).all()
            else:
                assert np.array_equal(a.metrics[k], b.metrics[k], equal_nan=True), k
    assert "eval.mi.heldout" not in off.timings


def _spec(tmp_path, mode, search):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "trial": {"mi": {"noise_mode": mode}}, "search": search,
        "sampler": {"name": "grid", "seed": 0},
        "objectives": [{"metric": "final.q_func", "direction": "maximize"}]}))
    return path


@pytest.mark.parametrize("key", ["partition.groups", "network.hidden"])
def test_load_study_warns_when_sweeping_k_or_n_with_clean_partner(tmp_path, key):
    from study.spec import CleanPartnerWarning, load_study

    values = [2, 3] if key == "partition.groups" else [20, 40]
    with pytest.warns(CleanPartnerWarning, match=f"sweeps {key} with mi.noise_mode"):
        load_study(_spec(tmp_path, "clean_partner", {key: {"values": values}}))


def test_load_study_is_quiet_for_noisy_partner_or_no_k_n_sweep(tmp_path, recwarn):
    from pathlib import Path

    from study.spec import CleanPartnerWarning, load_study

    load_study(_spec(tmp_path, "noisy_partner", {"partition.groups": {"values": [2, 3]}}))
    load_study(_spec(tmp_path, "clean_partner", {"mi.weight": {"values": [0.0, 0.1]}}))
    root = Path(__file__).resolve().parents[2] / "search_spaces"
    for name in ("phase-wm", "demo", "pareto-wm"):  # not paper reproductions: noisy_partner
        load_study(root / f"{name}.yaml")
    assert not [w for w in recwarn if issubclass(w.category, CleanPartnerWarning)]


@pytest.mark.slow
def test_swap_test_shows_the_clean_partner_asymmetry():
    # independent groups, G1 = tanh(z) and G2 = tanh(0.2 z) (low variance): clean_partner reads
    # ~0.15 nats (the KL(p_{b+ε} ‖ p_b) term, large when b's spread is comparable to σ) and
    # ~0 with the roles swapped; noisy_partner reads ~0 both ways (README, "What mi is")
    labels = np.repeat([0, 1], 10)

    def run(mode, gain_1, gain_2):
        est = SubgroupMI(1, labels, noise_mode=mode, input_noise=0.1, critic={"width": 64},
                         optim={"kind": "adam", "lr": 1e-2}, seed=0)
        gen = torch.Generator().manual_seed(1)

        def data(m):
            z = torch.randn(1, m, 20, generator=gen)
            return torch.cat([torch.tanh(gain_1 * z[..., :10]),
                              torch.tanh(gain_2 * z[..., 10:])], -1)

        for _ in range(200):
            est.critic_step(data(1024), gen)
        return float(torch.stack([est.measure(data(8192), gen) for _ in range(4)]).mean())

    assert run("clean_partner", 1.0, 0.2) > 0.08
    assert abs(run("clean_partner", 0.2, 1.0)) < 0.03
    assert abs(run("noisy_partner", 1.0, 0.2)) < 0.03
    assert abs(run("noisy_partner", 0.2, 1.0)) < 0.03
