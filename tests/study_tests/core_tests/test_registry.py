"""Tests of the registries: tasks (study.core.tasks + TaskSettings cross-checks in
study.spec), MI estimators (study.core.mi.estimators, SubgroupMI.from_config) and the one list
of metric, penalty and estimator names (study.contract.names)."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import pydantic
import pytest
import torch

import study.core.mi.estimators as estimators
import study.core.tasks as tasks
import study.spec as spec
from study.contract import names
from study.contract.outcomes import SUCCESS_THRESHOLD, TASK_METRIC
from study.core import mi
from study.core.mi import Estimator, SubgroupMI, measure, shuffled_scores
from study.core.partition import groups
from study.spec import (
    ConfigError,
    MIConfig,
    TaskConfig,
    TaskSettings,
    TrainConfig,
    TrialConfig,
    load_trial_config,
)
from study.training import metric_names

TINY = {
    "task.batch": 4,
    "task.wm.transient": 20,
    "task.wm.segment": 40,
    "network.hidden": 12,
    "critic.width": 16,
    "seeds": 2,
}


# ---------------------------------------------------------------------------------------------
# Tasks


def test_task_registry_config_sections_and_analysis_agree():
    assert set(tasks.TASKS) == set(spec.TASK_SECTIONS) == set(TASK_METRIC)
    assert get_args(TaskConfig.model_fields["name"].annotation) == tuple(spec.TASK_SECTIONS)
    for name, entry in tasks.TASKS.items():
        assert entry.metric == TASK_METRIC[name]
        assert entry.threshold == SUCCESS_THRESHOLD[entry.metric]


def test_built_tasks_carry_their_registered_name_and_metric():
    chaos = {
        "task.name": "chaos_separation",
        "task.chaos.n_train": 8,
        "task.chaos.n_test": 4,
        "task.chaos.n_samples": 300,
        "task.chaos.drop": 100,
        "task.chaos.washout": 20,
        "train.eval_batch": 4,
    }
    for over in ({}, chaos):
        cfg = load_trial_config(overrides={**TINY, **over})
        task = tasks.build_task(cfg)
        assert task.name == cfg.task.name
        assert task.metric == tasks.task_metric(cfg) == tasks.get_task(cfg.task.name).metric
        assert isinstance(task.device_sampling, bool) and isinstance(task.fixed_eval_pool, bool)


class ToySettings(TaskSettings):
    """A third task's section: an even number of steps."""

    steps: int = pydantic.Field(10, ge=1)

    def check(self, trial):
        if self.steps % 2:
            raise ValueError(f"task.toy.steps must be even, but got {self.steps}")
        return trial.task.batch * self.steps


class ToyTaskConfig(TaskConfig):
    name: Literal["toy"] = "toy"
    toy: ToySettings = ToySettings()


class ToyTrial(TrialConfig):
    task: ToyTaskConfig = ToyTaskConfig()


class ToyTask:
    name, metric = "toy", "accuracy"

    def __init__(self, cfg):
        self.steps = cfg.task.toy.steps


def _build_toy(cfg):
    return ToyTask(cfg)


@pytest.fixture
def toy_task(monkeypatch):
    monkeypatch.setitem(spec.TASK_SECTIONS, "toy", "toy")
    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))
    return tasks.register_task("toy", f"{__name__}:_build_toy", metric="accuracy", threshold=0.5)


def test_a_third_task_gets_its_own_cross_checks_and_not_chaos(toy_task):
    # an eval batch far beyond the chaos test pool (n_test = 50) is no concern of this task
    cfg = ToyTrial(train=TrainConfig(eval_batch=1000, checkpoint_every=25))
    assert cfg.task.settings is cfg.task.toy
    with pytest.raises(pydantic.ValidationError, match="task.toy.steps must be even, but got 3"):
        ToyTrial(task=ToyTaskConfig(toy=ToySettings(steps=3)))
    # the generic MI check uses the rows the task reports (batch 20 x 10 steps)
    with pytest.raises(pydantic.ValidationError, match=r"rows available \(200\)"):
        ToyTrial(mi=MIConfig(pairs=201))
    built = tasks.build_task(cfg)
    assert isinstance(built, ToyTask) and built.steps == 10
    assert tasks.task_metric(cfg) == "accuracy" and toy_task.threshold == 0.5


def test_unknown_task_name_gives_the_same_error_as_before():
    with pytest.raises(ConfigError) as e:
        load_trial_config(overrides={"task.name": "toy"})
    assert e.value.detail == (
        "key 'task.name': expected 'working_memory' or 'chaos_separation', but got 'toy'"
    )
    with pytest.raises(ValueError, match="unknown task 'toy'; registered tasks: working_memory"):
        tasks.get_task("toy")
    with pytest.raises(ValueError, match="not in study.contract.outcomes.TASK_METRIC"):
        tasks.register_task("toy", "nowhere:build")


# ---------------------------------------------------------------------------------------------
# Estimators


def test_estimator_registry_holds_exactly_the_config_names():
    assert tuple(estimators.ESTIMATORS) == names.ESTIMATOR_NAMES == tuple(mi.ESTIMATORS)
    assert get_args(MIConfig.model_fields["estimator"].annotation) == names.ESTIMATOR_NAMES
    assert get_args(MIConfig.model_fields["penalty"].annotation) == names.PENALTIES
    assert mi.PENALTIES is names.PENALTIES and measure.PENALTIES is names.PENALTIES


class Toy(Estimator):
    """Mean joint minus mean shuffled score; the network follows twice the value."""

    name = "toy"

    def bound(self, critic, noise, a, b, gen, *, update_state):
        joint, shuffled = shuffled_scores(critic, noise, a, b, gen)
        value = joint.mean(dim=1) - shuffled.mean(dim=1)
        return value, value

    def network_penalty(self, value, surrogate):
        return 2 * value


def test_a_registered_toy_estimator_is_built_by_from_config(monkeypatch):
    monkeypatch.setitem(estimators.ESTIMATORS, "toy", Toy)
    estimators.register_estimator(Toy)
    cfg = load_trial_config(overrides=TINY)
    cfg = cfg.model_copy(update={"mi": cfg.mi.model_copy(update={"estimator": "toy"})})
    labels = groups(12, 2)
    est = SubgroupMI.from_config(cfg, labels)
    assert isinstance(est.estimator, Toy)
    act = torch.randn(2, 64, 12, generator=torch.Generator().manual_seed(0))
    value = est.critic_step(act, torch.Generator().manual_seed(1))
    assert value.shape == (2,) and torch.isfinite(value).all()
    penalty, measured = est.penalty(act.requires_grad_(), torch.Generator().manual_seed(2))
    torch.testing.assert_close(penalty.detach(), 2 * measured, rtol=0, atol=0)


@pytest.mark.parametrize("estimator", names.ESTIMATOR_NAMES)
def test_from_config_is_the_keyword_construction(estimator):
    cfg = load_trial_config(
        overrides={**TINY, "mi.estimator": estimator, "mi.nce_block": 16, "mi.ema_rate": 0.05}
    )
    labels = groups(12, 2)
    c = cfg.critic
    by_hand = SubgroupMI(
        2,
        labels,
        penalty=cfg.mi.penalty,
        estimator=estimator,
        pairs=cfg.mi.pairs,
        input_noise=cfg.mi.input_noise,
        noise_mode=cfg.mi.noise_mode,
        ema_rate=0.05,
        nce_block=16,
        critic={
            "width": c.width,
            "depth": c.depth,
            "activation": c.activation,
            "leaky_slope": c.leaky_slope,
            "out_bias": c.out_bias,
            "precision": c.precision,
        },
        optim=c.optim.model_dump(),
        seed=cfg.seed,
    )
    built = SubgroupMI.from_config(cfg, labels)
    assert type(built.estimator) is type(by_hand.estimator)
    assert {k: getattr(built.estimator, k) for k in built.estimator.options} == {
        k: getattr(by_hand.estimator, k) for k in by_hand.estimator.options
    }
    for (k, v), (k2, v2) in zip(
        built.estimator.state_dict().items(), by_hand.estimator.state_dict().items()
    ):
        assert k == k2 and torch.equal(v.nan_to_num(), v2.nan_to_num()), k
    for (k, v), (k2, v2) in zip(built.state_dict().items(), by_hand.state_dict().items()):
        assert k == k2 and torch.equal(v.nan_to_num(), v2.nan_to_num()), k
    act = torch.randn(2, 64, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(
        built.critic_step(act, torch.Generator().manual_seed(1)),
        by_hand.critic_step(act, torch.Generator().manual_seed(1)),
    )


def test_estimator_options_of_no_estimator_are_refused():
    with pytest.raises(TypeError, match="unexpected estimator option"):
        SubgroupMI(1, np.array([0, 0, 1, 1]), nce_blok=8)


# ---------------------------------------------------------------------------------------------
# Metric names


def test_summary_metrics_derive_from_the_curve_metric_list():
    assert spec.SUMMARY_METRICS is names.SUMMARY_METRICS
    # the list objectives are checked against, in the order error messages print it
    assert spec.SUMMARY_METRICS == (
        "final.task_loss",
        "final.accuracy",
        "final.r2",
        "final.mi",
        "final.mi_gauss",
        "final.q_func",
        "final.q_struct",
        "final.q_func_norm",
        "final.q_struct_norm",
        "final.d_in",
        "final.d_out",
        "final.d_corr",
        "final.success_rate",
        "final.differentiated_rate",
        "t_func",
        "t_struct",
        "lag",
        "t_func_half",
        "t_struct_half",
        "n_func_first",
        "n_struct_first",
        "n_tie",
        "n_neither",
        "final.mi_gauss_null",
        "final.mi_heldout",
        "final.mi_heldout_null",
    )
    curves = {m for score in names.TASK_SCORES for m in names.curve_metrics(score)}
    finals = [m[len("final.") :] for m in spec.SUMMARY_METRICS if m.startswith("final.")]
    assert set(finals) - {"success_rate", "differentiated_rate"} <= curves
    assert set(names.TASK_SCORES) == set(TASK_METRIC.values())


def test_metric_names_are_the_curve_metrics_of_the_task():
    for task, score in TASK_METRIC.items():
        cfg = load_trial_config(overrides={"task.name": task})
        assert metric_names(cfg) == names.curve_metrics(score)
