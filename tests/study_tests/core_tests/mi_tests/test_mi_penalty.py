"""Tests for study/core/mi/penalty.py: the index sets of the penalty's terms, the contiguous fast
path against the gather path, trained SubgroupMI penalties against closed forms (K = 3
equicorrelated Gaussian groups), the frozen-critic penalty and the critic step, the checkpoint
state, and the input-noise policy: no fake MI from padded columns, the clean_partner asymmetry.
"""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from gaussian_truth import _equicorrelated_groups, _pairwise_truth, _tc_truth

from study.core.mi import SubgroupMI, penalty_terms
from study.core.partition import groups

# ----------------------------------------------------------------------------------------------
# penalty index sets


def _groups_of(labels):
    return [np.flatnonzero(labels == g).tolist() for g in range(labels.max() + 1)]


def _unpadded(index, n):
    return [[int(i) for i in row if i != n] for row in index]


@pytest.mark.parametrize("sizes", [(2, 3), (3, 1, 2), (2, 2, 1, 3)])
def test_penalty_terms_pairwise_index_sets(sizes):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n, members = labels.size, _groups_of(labels)
    terms = penalty_terms(labels, "pairwise")
    pairs = list(itertools.combinations(range(len(sizes)), 2))  # K(K − 1)/2 terms, i < j
    assert terms.names == tuple(f"G{i + 1};G{j + 1}" for i, j in pairs)
    assert _unpadded(terms.a_index, n) == [members[i] for i, _ in pairs]
    assert _unpadded(terms.b_index, n) == [members[j] for _, j in pairs]
    assert terms.a_index.shape == (len(pairs), max(sizes[i] for i, _ in pairs))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    assert terms.a_ranges == tuple((bounds[i], bounds[i + 1]) for i, _ in pairs)
    assert terms.b_ranges == tuple((bounds[j], bounds[j + 1]) for _, j in pairs)


@pytest.mark.parametrize("sizes", [(2, 3), (3, 1, 2), (2, 2, 1, 3)])
def test_penalty_terms_total_correlation_index_sets(sizes):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n, members, k = labels.size, _groups_of(labels), len(sizes)
    terms = penalty_terms(labels, "total_correlation")
    # I(G1..G_{i−1}; G_i) for i = 2..K: K − 1 terms that chain to the total correlation
    assert terms.names == tuple(["G1;G2"] + [f"G1..G{i};G{i + 1}" for i in range(2, k)])
    assert _unpadded(terms.a_index, n) == [sum(members[:i], []) for i in range(1, k)]
    assert _unpadded(terms.b_index, n) == [members[i] for i in range(1, k)]
    assert terms.a_ranges == tuple((0, sum(sizes[:i])) for i in range(1, k))


def test_penalty_terms_non_contiguous_has_no_ranges():
    labels = np.array([0, 1, 0, 1, 2, 2])
    terms = penalty_terms(labels, "pairwise")
    assert terms.a_ranges is None and terms.b_ranges is None
    assert _unpadded(terms.a_index, 6) == [[0, 2], [0, 2], [1, 3]]
    assert terms.a_index[0].tolist() == [0, 2]


@pytest.mark.parametrize(
    "labels, kind, match",
    [
        (np.zeros(5, int), "pairwise", r"penalty_terms\(\): need at least 2 groups, but got 1"),
        (np.array([0, 1]), "chain", r"penalty_terms\(\): kind must be one of .*, but got 'chain'"),
    ],
)
def test_penalty_terms_rejects_bad_arguments(labels, kind, match):
    with pytest.raises(ValueError, match=match):
        penalty_terms(labels, kind)


# regression: an empty group (a skipped label) used to raise IndexError from ranges()
def test_penalty_terms_rejects_empty_group():
    with pytest.raises(ValueError, match="group"):
        penalty_terms(np.array([0, 0, 2, 2]), "pairwise")


# ----------------------------------------------------------------------------------------------
# contiguous fast path == gather path


def _interleaved(sizes, seed):
    """Contiguous labels, and a non-contiguous layout keeping each group's unit order.

    Returns labels_c, labels_n and pos with unit u of the contiguous layout at column pos[u].
    """
    labels_c = np.repeat(np.arange(len(sizes)), sizes)
    n = labels_c.size
    slots = np.random.default_rng(seed).permutation(n)
    pos = np.empty(n, int)
    for g in range(len(sizes)):  # the g-th group's slots, sorted so order within it is kept
        pos[labels_c == g] = np.sort(slots[labels_c == g])
    labels_n = np.empty(n, int)
    labels_n[pos] = labels_c
    return labels_c, labels_n, pos


@pytest.mark.parametrize("penalty", ["pairwise", "total_correlation"])
@pytest.mark.parametrize("estimator", ["dv", "mine", "infonce"])
def test_contiguous_fast_path_equals_gather_path(penalty, estimator):
    sizes = (3, 2, 4)
    labels_c, labels_n, pos = _interleaved(sizes, seed=1)
    kw = dict(
        penalty=penalty,
        estimator=estimator,
        input_noise=0.1,
        nce_block=16,
        pairs=48,
        critic={"width": 16, "depth": 2},
        seed=4,
    )
    fast, slow = SubgroupMI(2, labels_c, **kw), SubgroupMI(2, labels_n, **kw)
    assert fast.a_ranges is not None and slow.a_ranges is None
    for p, q in zip(fast.critic.parameters(), slow.critic.parameters()):
        assert torch.equal(p, q)

    act_c = torch.randn(2, 64, 9, generator=torch.Generator().manual_seed(2))
    act_n = torch.empty_like(act_c)
    act_n[..., pos] = act_c  # the same units, in the interleaved columns

    def run(est, act):
        act = act.clone().requires_grad_()
        gen = torch.Generator().manual_seed(9)
        measured = est.measure(act, gen)
        step = est.critic_step(act, gen, transform=torch.tanh)
        pen, _ = est.penalty(act, gen, transform=torch.tanh)
        pen.sum().backward()
        return measured, step, pen.detach(), act.grad

    got_c, got_n = run(fast, act_c), run(slow, act_n)
    for a, b in zip(got_c[:3], got_n[:3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_n[3][..., pos], got_c[3], rtol=1e-4, atol=1e-7)
    for p, q in zip(fast.critic.parameters(), slow.critic.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# trained SubgroupMI penalties against closed forms (K = 3 equicorrelated Gaussian groups)


@pytest.mark.slow
@pytest.mark.parametrize(
    "penalty, truth", [("pairwise", _pairwise_truth), ("total_correlation", _tc_truth)]
)
def test_trained_penalty_matches_closed_form(penalty, truth):
    d, rhos = 2, (0.3, 0.6)  # one population member per correlation
    labels = np.repeat(np.arange(3), d)
    est = SubgroupMI(
        len(rhos),
        labels,
        penalty=penalty,
        estimator="dv",
        input_noise=0.0,
        critic={"width": 64, "depth": 2},
        optim={"kind": "adam", "lr": 2e-3},
        seed=0,
    )
    gen = torch.Generator().manual_seed(1)
    for _ in range(800):  # fresh samples each step, so no overfitting
        est.critic_step(_equicorrelated_groups(gen, 512, d, rhos), gen)
    test = _equicorrelated_groups(gen, 20000, d, rhos)
    got = torch.stack([est.measure(test, gen) for _ in range(4)]).mean(0)
    want = torch.tensor([truth(r, d) for r in rhos])
    # sum of lower bounds: above the truth only by sampling error (±0.03 on 20 000 rows at
    # these MIs); below by the critics' gap (measured ≤ 8 %)
    assert (got <= want + 0.04).all(), (got, want)
    assert (got >= 0.85 * want - 0.03).all(), (got, want)


def test_closed_forms_agree_with_gaussian_block_formula():
    # sanity of the test's own closed forms: ½[ln det Σ_A + ln det Σ_B − ln det Σ]
    d, rho = 2, 0.4
    cov1 = np.full((3, 3), rho) + (1 - rho) * np.eye(3)
    cov = np.kron(cov1, np.eye(d))  # unit order: group-major, coordinate-minor

    def mi(a, b):
        ld = lambda idx: np.linalg.slogdet(cov[np.ix_(idx, idx)])[1]  # noqa: E731
        return 0.5 * (ld(a) + ld(b) - ld(a + b))

    g = [list(range(i * d, (i + 1) * d)) for i in range(3)]
    pairwise = mi(g[0], g[1]) + mi(g[0], g[2]) + mi(g[1], g[2])
    chained = mi(g[0], g[1]) + mi(g[0] + g[1], g[2])
    assert pairwise == pytest.approx(_pairwise_truth(rho, d), rel=1e-12)
    assert chained == pytest.approx(_tc_truth(rho, d), rel=1e-12)


# ----------------------------------------------------------------------------------------------
# the frozen-critic penalty, the critic step, the checkpoint state


@pytest.mark.parametrize("estimator", ["dv", "mine", "infonce"])
def test_penalty_freezes_critic_and_grads_only_activity(estimator):
    labels = np.array([0, 0, 0, 1, 1])
    est = SubgroupMI(
        2, labels, estimator=estimator, nce_block=8, critic={"width": 16, "depth": 2}, seed=1
    )
    gen = torch.Generator().manual_seed(3)
    est.critic_step(torch.randn(2, 64, 5, generator=gen), gen)  # a non-trivial EMA for mine
    est.optimizer.zero_grad()
    before = {k: v.clone() for k, v in est.critic.state_dict().items()}
    act = torch.randn(2, 64, 5, generator=gen, requires_grad=True)

    gen_a, gen_b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    pen, value = est.penalty(act, gen_a, transform=torch.tanh)
    measured = est.measure(act.detach(), gen_b, transform=torch.tanh)
    assert pen.shape == value.shape == (2,)
    torch.testing.assert_close(value, measured)  # same draws: the same estimate
    torch.testing.assert_close(pen.detach(), value)  # the value is the bound (also for MINE)

    pen.sum().backward()
    assert act.grad is not None and act.grad.abs().sum() > 0
    for name, p in est.critic.named_parameters():
        assert p.grad is None, name
        assert p.requires_grad, name  # restored for the next critic step
        assert torch.equal(p, before[name]), name
    # member 1's penalty does not depend on member 0's activity
    act.grad = None
    pen, _ = est.penalty(act, torch.Generator().manual_seed(7), transform=torch.tanh)
    pen[1].backward()
    assert act.grad[0].abs().sum() == 0 and act.grad[1].abs().sum() > 0


def test_critic_step_returns_penalty_before_update_and_changes_critic():
    labels = np.array([0, 0, 1, 1])
    est = SubgroupMI(1, labels, critic={"width": 8, "depth": 1}, input_noise=0.0, seed=2)
    act = torch.randn(1, 128, 4, generator=torch.Generator().manual_seed(0))
    measured = est.measure(act, torch.Generator().manual_seed(5))
    before = est.critic.w_a.detach().clone()
    stepped = est.critic_step(act, torch.Generator().manual_seed(5))
    torch.testing.assert_close(stepped, measured)
    assert not torch.equal(est.critic.w_a, before)


def test_state_round_trip_restores_critic_optimizer_and_ema():
    labels = np.array([0, 0, 1, 1])
    kw = dict(estimator="mine", critic={"width": 8, "depth": 1}, seed=3)
    est = SubgroupMI(1, labels, **kw)
    gen = torch.Generator().manual_seed(0)
    data = [torch.randn(1, 64, 4, generator=gen) for _ in range(6)]
    for x in data[:3]:
        est.critic_step(x, torch.Generator().manual_seed(1))
    saved = est.state()
    copy = SubgroupMI(1, labels, **kw)
    copy.load_state(
        {
            "module": {k: v.clone() for k, v in saved["module"].items()},
            "optimizer": saved["optimizer"],
            "estimator": saved["estimator"],
        }
    )
    for x in data[3:]:
        a = est.critic_step(x, torch.Generator().manual_seed(2))
        b = copy.critic_step(x, torch.Generator().manual_seed(2))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(est.estimator.log_ema, copy.estimator.log_ema)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"estimator": "nwj"}, r"SubgroupMI: estimator must be one of .*, but got 'nwj'"),
        (
            {"noise_mode": "both"},
            r"noise_mode must be 'clean_partner' or 'noisy_partner', but got 'both'",
        ),
        ({"penalty": "sum"}, r"kind must be one of .*, but got 'sum'"),
        ({"critic": {"activation": "tanh"}}, r"Critic: activation must be 'relu' or 'leaky_relu'"),
        ({"critic": {"depth": 0}}, r"Critic: depth and width must be >= 1, got depth=0"),
    ],
)
def test_subgroup_mi_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SubgroupMI(1, np.array([0, 0, 1, 1]), **kwargs)


# ----------------------------------------------------------------------------------------------
# no fake MI from padded columns


def _train_on_independent(labels, estimator, noise_mode, steps=100, seed=0):
    """A training critic on independent tanh(N(0, 1)) units; its estimate on fresh rows.

    Adam at 1e-2 is an aggressive critic: before the fix, 100 such steps read 24 nats of fake
    MI in the 7-7-6 case (0.5 nats at width 32 on 256 rows).
    """
    n = len(labels)
    est = SubgroupMI(
        1,
        labels,
        estimator=estimator,
        noise_mode=noise_mode,
        input_noise=0.1,
        nce_block=64,
        critic={"width": 64},
        optim={"kind": "adam", "lr": 1e-2},
        seed=seed,
    )
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        est.critic_step(torch.tanh(torch.randn(1, 512, n, generator=gen)), gen)
    test = torch.tanh(torch.randn(1, 8192, n, generator=gen))
    return float(torch.stack([est.measure(test, gen) for _ in range(4)]).mean())


@pytest.mark.parametrize("noise_mode", ["clean_partner", "noisy_partner"])
def test_unequal_groups_7_7_6_read_zero_on_independent_units(noise_mode):
    # a past regression: N = 20, K = 3 pads the 6-unit group to 7 columns; in
    # clean_partner mode the padded column was noisy in the joint branch and exactly 0 in the
    # shuffled one, and the critic read 2.3 nats (and growing) on independent units
    labels = groups(20, 3, None)
    assert np.bincount(labels).tolist() == [7, 7, 6]
    got = _train_on_independent(labels, "dv", noise_mode)
    assert abs(got) < 0.05, got


def test_padded_columns_carry_no_noise():
    labels = groups(20, 3, None)  # pairs (G1, G3), (G2, G3): b side padded to 7 columns
    est = SubgroupMI(2, labels, input_noise=0.5, critic={"width": 8})
    assert est.noise.a_mask is None and est.noise.b_mask is not None
    gen = torch.Generator().manual_seed(0)
    a, b = est._sides(torch.randn(2, 64, 20, generator=gen), gen)
    padded = est.noise.b_mask[:, 0] == 0  # (R, 7)
    assert padded.sum() == 2 * 2  # two padded terms per seed, one column each
    noisy = b + est.noise.draw(b, "b", gen)
    assert (noisy.permute(0, 2, 1)[padded] == 0).all()  # padded columns stay exactly 0
    assert (noisy.permute(0, 2, 1)[~padded] != 0).all()


_SIZES = [
    (2, None),
    (2, (12, 8)),
    (3, None),
    (3, (9, 6, 5)),
    (4, None),
    (4, (8, 5, 4, 3)),
    (5, None),
    (5, (6, 5, 4, 3, 2)),
]
# DV at every K and layout; MINE (same sampling and noise code) at the unequal ones; InfoNCE at
# the unequal K = 2, 3 only: its K = 4, 5 cases cost ~110 s of CI and exercise the same masking
# code as MINE and DV there
_CASES = (
    [(k, sz, "dv") for k, sz in _SIZES]
    + [(k, sz, "mine") for k, sz in _SIZES if sz is not None]
    + [(k, sz, "infonce") for k, sz in _SIZES if sz is not None and k <= 3]
)


@pytest.mark.slow
@pytest.mark.parametrize("noise_mode", ["clean_partner", "noisy_partner"])
@pytest.mark.parametrize("k, sizes, estimator", _CASES)
def test_no_fake_mi_any_k_and_sizes(k, sizes, estimator, noise_mode):
    labels = groups(20, k, sizes)
    got = _train_on_independent(labels, estimator, noise_mode)
    assert abs(got) < 0.05, got


@pytest.mark.slow
def test_swap_test_shows_the_clean_partner_asymmetry():
    # independent groups, G1 = tanh(z) and G2 = tanh(0.2 z) (low variance): clean_partner reads
    # ~0.15 nats (the KL(p_{b+ε} ‖ p_b) term, large when b's spread is comparable to σ) and
    # ~0 with the roles swapped; noisy_partner reads ~0 both ways (README, "What mi is")
    labels = np.repeat([0, 1], 10)

    def run(mode, gain_1, gain_2):
        est = SubgroupMI(
            1,
            labels,
            noise_mode=mode,
            input_noise=0.1,
            critic={"width": 64},
            optim={"kind": "adam", "lr": 1e-2},
            seed=0,
        )
        gen = torch.Generator().manual_seed(1)

        def data(m):
            z = torch.randn(1, m, 20, generator=gen)
            return torch.cat(
                [torch.tanh(gain_1 * z[..., :10]), torch.tanh(gain_2 * z[..., 10:])], -1
            )

        for _ in range(200):
            est.critic_step(data(1024), gen)
        return float(torch.stack([est.measure(data(8192), gen) for _ in range(4)]).mean())

    assert run("clean_partner", 1.0, 0.2) > 0.08
    assert abs(run("clean_partner", 0.2, 1.0)) < 0.03
    assert abs(run("noisy_partner", 1.0, 0.2)) < 0.03
    assert abs(run("noisy_partner", 0.2, 1.0)) < 0.03


# ----------------------------------------------------------------------------------------------
# checkpoints written before the estimators kept their own state

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
# what checkpoints/make_before_estimator_state.py built its penalties with
_BEFORE_LABELS = np.array([0, 0, 0, 1, 1])
_BEFORE_KW = dict(
    critic={"width": 8, "depth": 1},
    optim={"kind": "adam", "lr": 1e-2},
    ema_rate=0.2,
    input_noise=0.1,
    seed=3,
)


def _continue(est, data_state):
    """What the fixture recorded after its state: 3 critic steps, a penalty and its gradient,
    a measurement, MINE's moving average and a critic kernel."""
    data = torch.Generator()
    data.set_state(data_state)
    gen = torch.Generator().manual_seed(1)
    steps = torch.stack(
        [est.critic_step(torch.randn(2, 64, 5, generator=data), gen) for _ in range(3)]
    )
    act = torch.randn(2, 64, 5, generator=data, requires_grad=True)
    penalty, _ = est.penalty(act, gen)
    penalty.sum().backward()
    log_ema = getattr(est.estimator, "log_ema", None)
    return {
        "steps": steps,
        "penalty": penalty.detach(),
        "grad": act.grad,
        "measure": est.measure(act.detach(), gen),
        "w_a": est.critic.w_a.detach().clone(),
        **({"log_ema": log_ema.clone()} if log_ema is not None else {}),
    }


@pytest.mark.parametrize("estimator", ["mine", "dv"])
def test_a_state_in_the_older_layout_continues_as_the_code_that_wrote_it(estimator):
    saved = torch.load(CHECKPOINTS / "mi_state_before_estimator_state.pth", weights_only=True)[
        estimator
    ]
    assert "log_ema" in saved["state"]["module"] and "estimator" not in saved["state"]
    old = SubgroupMI(2, _BEFORE_LABELS, estimator=estimator, **_BEFORE_KW)
    old.load_state(saved["state"])
    # the same state as this code writes it: MINE's average moves into the estimator entry
    new_state = old.state()
    assert "log_ema" not in new_state["module"]
    assert set(new_state["estimator"]) == ({"log_ema"} if estimator == "mine" else set())
    new = SubgroupMI(2, _BEFORE_LABELS, estimator=estimator, **_BEFORE_KW)
    new.load_state(new_state)
    got_old, got_new = _continue(old, saved["data"]), _continue(new, saved["data"])
    for key in ("steps", "penalty", "grad", "measure", "w_a"):
        assert torch.equal(got_old[key], saved[key]), key  # bit for bit as the older code ran
        assert torch.equal(got_new[key], saved[key]), key
    if estimator == "mine":
        assert torch.equal(got_old["log_ema"], saved["log_ema"])
        assert torch.equal(got_new["log_ema"], saved["log_ema"])
    else:
        assert torch.isnan(saved["log_ema"]).all()  # the older layout's unused buffer


def _mine_state(**over):
    est = SubgroupMI(2, _BEFORE_LABELS, estimator="mine", **{**_BEFORE_KW, **over})
    est.critic_step(
        torch.randn(2, 64, 5, generator=torch.Generator().manual_seed(0)),
        torch.Generator().manual_seed(1),
    )
    return est.state()


def _without(mapping, key):
    return {k: v for k, v in mapping.items() if k != key}


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda s: [s], r"the MI state must hold 'module' and 'optimizer', but got list"),
        (
            lambda s: _without(s, "optimizer"),
            r"the MI state must hold 'module' and 'optimizer', but got \['estimator', 'module'\]",
        ),
        (
            lambda s: {**s, "module": _without(s["module"], "critic.w_a")},
            r"the critic state does not fit this penalty \(missing \['critic.w_a'\], unexpected "
            r"nothing\)",
        ),
        (
            lambda s: {**s, "module": {**s["module"], "critic.w_x": torch.zeros(1)}},
            r"\(missing nothing, unexpected \['critic.w_x'\]\)",
        ),
        (
            lambda s: {**s, "module": _mine_state(critic={"width": 16, "depth": 1})["module"]},
            r"critic.w_a \(2, 3, 16\) \(expected \(2, 3, 8\)\)",
        ),
        (
            lambda s: {**s, "module": {**s["module"], "log_ema": s["estimator"]["log_ema"]}},
            r"holds both an 'estimator' entry and the older module buffer 'log_ema'",
        ),
        (
            lambda s: _without(s, "estimator"),
            r"the state holds no moving average for estimator 'mine'",
        ),
        (
            lambda s: {**s, "estimator": {"log_ema": torch.zeros(3)}},
            r"estimator 'mine': log_ema must have shape \(2,\), but got \(3,\)",
        ),
        (
            lambda s: {**s, "estimator": {"ema": torch.zeros(2)}},
            r"estimator 'mine' expects its state to be \{'log_ema': \(R,\) tensor\}, but got keys "
            r"\['ema'\]",
        ),
        (
            lambda s: {**s, "optimizer": {"step_count": 3}},
            r"the critic optimiser state does not fit \(KeyError: 'state'\)",
        ),
    ],
)
def test_load_state_refuses_what_does_not_fit_in_one_line(bad, match):
    est = SubgroupMI(2, _BEFORE_LABELS, estimator="mine", **_BEFORE_KW)
    with pytest.raises(ValueError, match=match) as e:
        est.load_state(bad(_mine_state()))
    assert "\n" not in str(e.value)


def test_load_state_refuses_estimator_state_for_an_estimator_without_one():
    est = SubgroupMI(2, _BEFORE_LABELS, estimator="dv", **_BEFORE_KW)
    state = est.state()
    with pytest.raises(
        ValueError,
        match=r"estimator 'dv' keeps no state, but the saved state "
        r"holds log_ema",
    ):
        est.load_state({**state, "estimator": {"log_ema": torch.zeros(2)}})
