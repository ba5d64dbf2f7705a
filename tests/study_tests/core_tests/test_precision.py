"""Tests for the bfloat16 critic (`critic.precision`, study/core/mi/critic.py): MI estimates on
the Gaussian closed forms within the float32 tests' tolerances (test_mi_estimators.py,
test_mi_penalty.py), float32 and bfloat16 gradients
close on the same critic, float32 weights, scores and optimiser state whatever the precision, the
config key, a bfloat16 trial end to end, and the lazy (once per epoch) finiteness checks the
trainer uses on CUDA, exercised here on the CPU.
"""

import math

import numpy as np
import pytest
import torch
from gaussian_truth import (
    _correlated,
    _equicorrelated_groups,
    _optimal_dv,
    _pairwise_truth,
    _tc_truth,
)

from study.core.mi import Critic, SubgroupMI, compute_dtype
from study.spec import ConfigError, load_trial_config, trial_config_from_dict
from study.training import Diverged, Trainer

TINY = {
    "task.batch": 4,
    "task.wm.transient": 20,
    "task.wm.segment": 60,
    "network.hidden": 8,
    "critic.width": 16,
    "critic.steps": 2,
    "critic.pretrain_steps": 2,
    "train.epochs": 2,
    "train.eval_every": 1,
    "train.checkpoint_every": 1,
    "train.eval_batch": 4,
    "train.threads": 1,
    "seeds": 2,
    "train.device": "cpu",
}


def _copy_critic(dst: SubgroupMI, src: SubgroupMI) -> None:
    with torch.no_grad():
        for p, q in zip(dst.critic.parameters(), src.critic.parameters()):
            p.copy_(q)


# ----------------------------------------------------------------------------------------------
# closed forms, with the float32 tests' tolerances


@pytest.mark.slow
@pytest.mark.parametrize(
    "penalty, truth", [("pairwise", _pairwise_truth), ("total_correlation", _tc_truth)]
)
def test_bf16_trained_penalty_matches_closed_form(penalty, truth):
    # test_mi.test_trained_penalty_matches_closed_form with a bfloat16 critic
    d, rhos = 2, (0.3, 0.6)
    labels = np.repeat(np.arange(3), d)
    est = SubgroupMI(
        len(rhos),
        labels,
        penalty=penalty,
        estimator="dv",
        input_noise=0.0,
        critic={"width": 64, "depth": 2, "precision": "bfloat16"},
        optim={"kind": "adam", "lr": 2e-3},
        seed=0,
    )
    gen = torch.Generator().manual_seed(1)
    for _ in range(800):
        est.critic_step(_equicorrelated_groups(gen, 512, d, rhos), gen)
    test = _equicorrelated_groups(gen, 20000, d, rhos)
    got = torch.stack([est.measure(test, gen) for _ in range(4)]).mean(0)
    want = torch.tensor([truth(r, d) for r in rhos])
    assert (got <= want + 0.04).all(), (got, want)
    assert (got >= 0.85 * want - 0.03).all(), (got, want)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["dv", "mine"])
@pytest.mark.parametrize("mi", [1.0, 3.0])
def test_bf16_gaussian_pair_within_float32_tolerance(estimator, mi):
    # the held-out bound of a critic trained on fresh Gaussian samples, bf16 against the optimal
    # critic's value with the band of test_mi_estimators.test_estimate_mi_recovers_gaussian_mi
    # (≤ target + 4 spreads + 0.01, ≥ 85 % of it − 0.02), and within 0.05 nats of the same run in
    # float32
    d, n_test = 4, 5000
    rng = np.random.default_rng(int(mi * 10))
    got = {}
    for precision in ("float32", "bfloat16"):
        est = SubgroupMI(
            1,
            np.repeat([0, 1], d),
            estimator=estimator,
            input_noise=0.0,
            critic={"width": 64, "depth": 2, "precision": precision},
            optim={"kind": "adam", "lr": 1e-3},
            seed=1,
        )
        data_rng = np.random.default_rng(7)
        gen = torch.Generator().manual_seed(1)
        for _ in range(1000):
            x, y, _ = _correlated(data_rng, 512, d, mi)
            est.critic_step(torch.from_numpy(np.concatenate([x, y], 1))[None], gen)
        x, y, _ = _correlated(data_rng, n_test, d, mi)
        test = torch.from_numpy(np.concatenate([x, y], 1))[None]
        got[precision] = float(torch.stack([est.measure(test, gen) for _ in range(8)]).mean())
    target, spread = _optimal_dv(rng, mi, d, n_test)
    assert got["bfloat16"] <= target + 4 * spread + 0.01, (got, target, spread)
    assert got["bfloat16"] >= 0.85 * target - 0.02, (got, target, spread)
    assert abs(got["bfloat16"] - got["float32"]) <= 0.05, got


# ----------------------------------------------------------------------------------------------
# the same critic in both precisions


def _trained_pair(estimator: str = "dv"):
    """A float32 critic trained for 100 steps on dependent groups, its bf16 twin, and data."""
    labels = np.repeat([0, 1], 8)
    gen = torch.Generator().manual_seed(0)

    def sample(m):
        act = torch.randn(2, m, 16, generator=gen)
        act[..., 8:] += 0.8 * act[..., :8]
        return act

    kw = dict(
        estimator=estimator,
        input_noise=0.1,
        nce_block=32,
        optim={"kind": "adam", "lr": 2e-3},
        seed=0,
    )
    f32 = SubgroupMI(2, labels, critic={"width": 32}, **kw)
    for _ in range(100):
        f32.critic_step(sample(512), gen)
    bf16 = SubgroupMI(2, labels, critic={"width": 32, "precision": "bfloat16"}, **kw)
    _copy_critic(bf16, f32)
    bf16.estimator.load_state_dict(f32.estimator.state_dict())
    return f32, bf16, sample(2000)


@pytest.mark.parametrize("estimator", ["dv", "mine", "infonce"])
def test_bf16_value_and_gradients_close_to_float32(estimator):
    f32, bf16, act = _trained_pair(estimator)
    out = {}
    for name, est in (("f32", f32), ("bf16", bf16)):
        x = act.clone().requires_grad_(True)
        pen, value = est.penalty(x, torch.Generator().manual_seed(3))
        pen.sum().backward()  # the network's gradient through the frozen critic
        est.critic.zero_grad()
        _, surrogate = est._estimate(act, torch.Generator().manual_seed(3), update_state=False)
        (-surrogate.sum()).backward()  # the critic's own gradient
        out[name] = (value, x.grad, {k: p.grad for k, p in est.critic.named_parameters()})
    (v32, gx32, gp32), (v16, gx16, gp16) = out["f32"], out["bf16"]
    assert v16.dtype == torch.float32 and gx16.dtype == torch.float32
    # same samples, same critic: the bound agrees to rounding (values here are ~1-2 nats)
    torch.testing.assert_close(v16, v32, rtol=0, atol=0.02)
    cos = torch.nn.functional.cosine_similarity(gx16.flatten(), gx32.flatten(), dim=0)
    assert cos >= 0.99, float(cos)
    assert (gx16 - gx32).norm() <= 0.15 * gx32.norm()  # measured 4-8 %
    # bf16 products round each term to 8 bits: measured relative errors 2-9 % (the largest on
    # the biases, whose gradients are sums of many cancelling rows), cosines >= 0.995
    for k, g in gp32.items():
        assert gp16[k].dtype == torch.float32
        if g.norm() < 1e-4:  # dDV/dc_out = 1 − 1 (DV, InfoNCE): zero up to rounding in both
            assert gp16[k].abs().max() <= 1e-3, k
            continue
        cos = torch.nn.functional.cosine_similarity(gp16[k].flatten(), g.flatten(), dim=0)
        assert cos >= 0.99, (k, float(cos))
        assert (gp16[k] - g).norm() <= 0.15 * g.norm(), k


def test_bf16_critic_keeps_float32_weights_scores_and_optimiser_state():
    est = SubgroupMI(1, np.repeat([0, 1], 3), critic={"width": 8, "precision": "bfloat16"}, seed=0)
    gen = torch.Generator().manual_seed(0)
    act = torch.randn(1, 256, 6, generator=gen)
    for _ in range(3):
        value = est.critic_step(act, gen)
    assert value.dtype == torch.float32 and torch.isfinite(value).all()
    assert all(p.dtype == torch.float32 for p in est.critic.parameters())
    state = est.optimizer.state_dict()["state"]
    assert state and all(t.dtype == torch.float32 for st in state for t in st.values())
    critic = est.critic
    a, b = act[..., :3], act[..., 3:]
    assert critic.project_a(a).dtype == torch.bfloat16
    assert critic(a, b).dtype == torch.float32


def test_float32_critic_path_is_unchanged_by_the_precision_code():
    # float32 must run exactly the products it ran before (no casts): scores equal a hand-written
    # float32 forward bit for bit
    critic = Critic(2, 3, 4, width=8, depth=2, seeds=[5, 6])
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 50, 3, generator=gen), torch.randn(2, 50, 4, generator=gen)
    h = torch.relu(torch.baddbmm(critic.b_1, a, critic.w_a) + torch.bmm(b, critic.w_b))
    h = torch.relu(torch.baddbmm(critic.b_h[0], h, critic.w_h[0]))
    want = torch.baddbmm(critic.b_o, h, critic.w_o).squeeze(-1)
    torch.testing.assert_close(critic(a, b), want, rtol=0, atol=0)


def test_precision_names_are_validated():
    assert compute_dtype("float32") is torch.float32
    assert compute_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(
        ValueError,
        match=r"Critic: precision must be one of \('float32', "
        r"'bfloat16'\), but got 'float16'",
    ):
        Critic(1, 2, 2, precision="float16")


# ----------------------------------------------------------------------------------------------
# config and trainer


def test_precision_config_key_default_set_and_rejected():
    assert load_trial_config().critic.precision == "float32"
    for preset in ("paper-wm", "paper-separation", "cpu-wm"):
        path = f"{__file__.rsplit('/tests/', 1)[0]}/search_spaces/{preset}.yaml"
        assert load_trial_config(path).critic.precision == "float32", preset
    cfg = load_trial_config(overrides=["critic.precision=bfloat16"])  # the CLI's --set
    assert cfg.critic.precision == "bfloat16"
    with pytest.raises(
        ConfigError,
        match=r"key 'critic\.precision': expected 'float32' or "
        r"'bfloat16', but got 'fp16'",
    ) as info:
        trial_config_from_dict({"critic": {"precision": "fp16"}}, source="spec.yaml")
    assert info.value.key == "critic.precision"


def test_bf16_trial_trains_and_evaluates():
    cfg = load_trial_config(overrides={**TINY, "critic.precision": "bfloat16"})
    tr = Trainer(cfg)
    assert tr.mi.critic.compute_dtype == torch.bfloat16
    tr.pretrain_critic()
    tr.train_epoch()
    values = tr.evaluate()
    assert all(np.isfinite(values[k]).all() for k in ("task_loss", "accuracy", "mi"))


# ----------------------------------------------------------------------------------------------
# lazy finiteness checks (the CUDA path, forced on the CPU)


def test_lazy_checks_raise_once_per_epoch_with_the_eager_message():
    eager = Trainer(load_trial_config(overrides=TINY))
    lazy = Trainer(load_trial_config(overrides=TINY))
    assert not eager.lazy_checks  # the CPU checks every step, as before
    lazy.lazy_checks = True
    for tr in (eager, lazy):
        with torch.no_grad():
            tr.net.w_rec[1].fill_(float("nan"))
    msgs = []
    for tr in (eager, lazy):
        with pytest.raises(Diverged) as info:
            tr.train_epoch()
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1]
    assert "MI estimate (critic step) is not finite at epoch 1 for seed(s) [1] of 2" in msgs[1]
    assert not lazy._pending  # cleared after raising


def test_lazy_checks_match_eager_training_exactly():
    runs = []
    for lazy in (False, True):
        tr = Trainer(load_trial_config(overrides=TINY))
        tr.lazy_checks = lazy
        tr.pretrain_critic()
        tr.train_epoch()
        runs.append(tr.net.w_rec.detach().clone())
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert math.isfinite(float(runs[0].sum()))
