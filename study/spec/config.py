"""Typed trial config: reference defaults, YAML loading, dotted overrides, strict validation.

Defaults are the official working-memory settings (method.md §5.1); presets in `search_spaces/`
override them. Every bad input raises `ConfigError`, which names the file, the dotted key, what was
expected and the value given (and, for an unknown key, the closest valid one). This module imports
neither torch nor Ray, so validating a spec is fast.

This module holds the schemas and the study spec. The machinery they use lives in private
modules that never import this one: dotted keys and overrides in `study.spec._keys`, pydantic error
formatting in `study.spec._validation`, the bounded YAML reader in `study.spec._yaml`, `ConfigError` in
`study.spec._errors`. Callers import the public names (`ConfigError`, `flatten`, `read_yaml`, ...)
from here.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from study.contract.outcomes import DEFAULT_RUN, DEFAULT_Z
from study.spec import _keys, _validation
from study.contract import names
from study.spec._errors import ConfigError, short_repr
from study.spec._keys import SEED_MAX, check_limits, closest_key, flatten, parse_assignment, valid_keys
from study.spec._yaml import read_yaml, read_yaml_text

__all__ = [
    "ConfigError",
    "TrialConfig",
    "TaskConfig",
    "WorkingMemoryConfig",
    "ChaosConfig",
    "NetworkConfig",
    "PartitionConfig",
    "MIConfig",
    "HeldoutConfig",
    "CriticConfig",
    "OptimizerConfig",
    "NetOptimConfig",
    "TrainConfig",
    "load_trial_config",
    "trial_config_from_dict",
    "apply_overrides",
    "parse_assignment",
    "flatten",
    "format_validation_error",
    "StudySpec",
    "Study",
    "load_study",
    "CleanPartnerWarning",
    "parse_constraint",
    "SUMMARY_METRICS",
    "check_name",
    "check_storage_url",
    "check_limits",
    "redact_url",
    "short_repr",
]


# Study names (spec `name`, `study train --name`): one path component of STUDY_HOME and an MLflow
# experiment name. Short enough that `<name>-smoke` or `<name>-YYYYmmdd-HHMMSS` (--fresh) stays
# far below the 255-byte file-name limit, and no '/', '..' or leading '.'/'-'.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_NAME = 100
MAX_GRID = 100_000  # grid points of one study (and values of one searched key)


def check_name(name: str, *, source: str, key: str = "name") -> str:
    """The study-name rule (NAME_PATTERN, at most MAX_NAME characters); ConfigError if broken."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name) or len(name) > MAX_NAME:
        raise ConfigError(f"key '{key}': a study name is 1-{MAX_NAME} letters, digits, '_', '.' "
                          f"or '-', starting with a letter or digit, but got {short_repr(name)}",
                          source=source, key=key)
    return name



class _Strict(BaseModel):
    # allow_inf_nan=False: `lr: .inf` or `mi.weight=1e999` is an input error, not a diverged run
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------------------------
# Task


class TaskSettings(_Strict):
    """Base of one task's own section under `task` (`task.wm`, `task.chaos`, ...).

    Each task validates its own constraints in `check`, so a new task gets its own checks and
    never another task's; the checks that hold for every task stay in TrialConfig._cross_checks.
    """

    def check(self, trial: TrialConfig) -> int:
        """Raise ValueError for a constraint of this task that `trial` breaks; return the
        (batch x time) rows one MI estimate can draw from a training batch (for `mi.pairs`)."""
        raise NotImplementedError(f"{type(self).__name__} must define check()")


class WorkingMemoryConfig(TaskSettings):
    """n-bit flip-flop working memory (method.md §2)."""

    n_bits: Annotated[int, Field(ge=1)] | Literal["groups"] = 2  # memories; "groups" = K
    p_onset: float = Field(1 / 500, gt=0, lt=1)  # pulse onset probability per step and line
    pulse_len: int = Field(40, ge=1)  # steps a pulse stays at 1
    slope: float = Field(0.1, gt=0, le=2)  # target ramp per step
    transient: int = Field(1000, ge=0)  # no-grad steps before the scored segment
    segment: int = Field(2000, ge=1)  # scored steps (loss, MI, metrics)
    off_cue: bool = False  # force an "off" onset at t = 0 on every line pair (feasibility.md §5.3)
    target_lead: Literal[0, 1] = 1  # 1 = reference quirk: target at t is y_{t+1} (method.md §2.3)
    washout: int = Field(0, ge=0)  # scored steps excluded from the loss

    def check(self, trial: TrialConfig) -> int:
        """The washout leaves scored steps; rows = batch x segment."""
        if self.washout >= self.segment:
            raise ValueError(
                f"task.wm.washout must be shorter than task.wm.segment, but got "
                f"washout={self.washout}, segment={self.segment}"
            )
        return trial.task.batch * self.segment


class ChaosConfig(TaskSettings):
    """Lorenz + Rössler signal separation (method.md §6)."""

    n_train: int = Field(5000, ge=1)  # sequences in the training pool
    n_test: int = Field(50, ge=1)  # sequences in the fixed test pool
    n_samples: int = Field(14000, ge=2)  # samples per integrated trajectory
    drop: int = Field(4000, ge=0)  # leading samples dropped after min-max scaling
    lorenz_t_end: float = Field(100.0, gt=0)  # integration horizon (time units)
    rossler_t_end: float = Field(700.0, gt=0)
    washout: int = Field(200, ge=0)  # leading steps excluded from the loss
    data_seed: int = Field(0, ge=0)  # seed of the generated pools (shared by all trials)

    def check(self, trial: TrialConfig) -> int:
        """The sequence outlasts drop and washout, and the pools hold the training and
        evaluation batches; rows = batch x (n_samples - drop)."""
        t = trial.task
        if self.drop >= self.n_samples:
            raise ValueError(
                f"task.chaos.drop must be less than task.chaos.n_samples, but got "
                f"drop={self.drop}, n_samples={self.n_samples}"
            )
        if self.washout >= self.n_samples - self.drop:
            raise ValueError(
                f"task.chaos.washout must be shorter than the sequence "
                f"(n_samples - drop = {self.n_samples - self.drop}), but got "
                f"washout={self.washout}"
            )
        if t.batch > self.n_train:
            raise ValueError(
                f"task.batch must be at most task.chaos.n_train, but got "
                f"batch={t.batch}, n_train={self.n_train}"
            )
        if trial.train.eval_batch > self.n_test:
            raise ValueError(
                f"train.eval_batch must be at most task.chaos.n_test (the fixed test pool), "
                f"but got eval_batch={trial.train.eval_batch}, n_test={self.n_test}"
            )
        return t.batch * (self.n_samples - self.drop)


# task name -> the key of its section under `task`. A new task adds its TaskSettings class
# above, its section field to TaskConfig and a line here (and registers its builder in
# study.core.tasks); the Literal of task names is derived from this table.
TASK_SECTIONS = {"working_memory": "wm", "chaos_separation": "chaos"}


class TaskConfig(_Strict):
    """Which task, its batch size, and every task's own section (only the named one is used)."""

    name: Literal[tuple(TASK_SECTIONS)] = "working_memory"  # type: ignore[valid-type]
    batch: int = Field(20, ge=1)  # sequences per training batch
    wm: WorkingMemoryConfig = WorkingMemoryConfig()
    chaos: ChaosConfig = ChaosConfig()

    @property
    def settings(self) -> TaskSettings:
        """The section of the named task (e.g. `task.wm` for working_memory)."""
        return getattr(self, TASK_SECTIONS[self.name])


# ----------------------------------------------------------------------------------------------
# Model, partition, MI


class NetworkConfig(_Strict):
    kind: Literal["leaky", "gru"] = "leaky"
    hidden: int = Field(40, ge=2)  # N units
    alpha: float = Field(0.1, gt=0, le=1)  # leak dt/tau (leaky only)
    noise: float = Field(0.1, ge=0)  # std of additive state noise per step
    gain: float = Field(1.0, gt=0)  # W_rec ~ N(0, gain^2 / N) (leaky only)


class PartitionConfig(_Strict):
    groups: int = Field(2, ge=1)  # K contiguous subgroups
    sizes: tuple[int, ...] | None = None  # explicit group sizes (sum = network.hidden)


class HeldoutConfig(_Strict):
    """The held-out MI critic (`study.core.mi.heldout_mi`), run every `train.heldout_mi_every` evals."""

    width: int = Field(64, ge=1)  # hidden units per layer of the fresh critic
    depth: int = Field(2, ge=1)  # hidden layers
    steps: int = Field(300, ge=1)  # Adam updates on the training sequences
    batch: int = Field(512, ge=2)  # rows per update
    lr: float = Field(0.001, gt=0)  # Adam learning rate
    test_fraction: float = Field(0.25, gt=0, lt=1)  # share of evaluation sequences held out


class MIConfig(_Strict):
    weight: float = Field(0.1, ge=0)  # lambda: weight of the MI penalty in the network loss
    # the names live in study.contract.names (one list, shared with study.core.estimators and study.core.mi)
    estimator: Literal[names.ESTIMATOR_NAMES] = "dv"  # type: ignore[valid-type]
    penalty: Literal[names.PENALTIES] = "pairwise"  # type: ignore[valid-type]  # K > 2 groups
    pairs: int = Field(0, ge=0)  # (time x batch) rows sampled per estimate; 0 = all
    input_noise: float = Field(0.1, ge=0)  # std of Gaussian noise added to critic inputs
    noise_mode: Literal["clean_partner", "noisy_partner"] = "clean_partner"  # method.md §4.2
    ema_rate: float = Field(0.01, gt=0, le=1)  # MINE moving-average rate
    nce_block: int = Field(128, ge=2)  # InfoNCE: rows per block of negatives
    heldout: HeldoutConfig = HeldoutConfig()  # the held-out estimate `mi_heldout`


class OptimizerConfig(_Strict):
    kind: Literal["rmsprop", "adam"] = "rmsprop"  # Keras semantics (study/optim.py)
    lr: float = Field(0.003, gt=0)
    rho: float = Field(0.9, gt=0, lt=1)  # RMSprop decay
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: float = Field(1e-7, gt=0)
    clip_norm: float | None = Field(4.0, gt=0)  # per-tensor (and per-seed) norm clip
    clip_value: float | None = Field(None, gt=0)  # element-wise clip


class CriticConfig(_Strict):
    width: int = Field(512, ge=1)  # hidden units per layer
    depth: int = Field(2, ge=1)  # hidden layers
    activation: Literal["relu", "leaky_relu"] = "relu"
    leaky_slope: float = Field(0.25, ge=0, lt=1)
    out_bias: bool = True
    precision: Literal["float32", "bfloat16"] = "float32"  # matmuls; bf16 keeps fp32 accum
    steps: int = Field(10, ge=0)  # critic updates per network update
    pretrain_steps: int = Field(100, ge=0)
    reuse_batch: bool = False  # one no-grad batch for all `steps` updates (cheap preset trick)
    optim: OptimizerConfig = OptimizerConfig()


class NetOptimConfig(OptimizerConfig):
    lr: float = Field(0.002, gt=0)
    reg: Literal["l2", "l1"] = "l2"  # explicit penalty added to the loss, c * sum(w^2) or c * sum|w|
    reg_in: float = Field(0.01, ge=0)
    reg_rec: float = Field(0.01, ge=0)
    reg_out: float = Field(0.01, ge=0)


class TrainConfig(_Strict):
    epochs: int = Field(1000, ge=0)
    updates_per_epoch: int = Field(1, ge=1)  # (critic steps + network step) rounds per epoch
    eval_every: int = Field(25, ge=1)  # epochs between evaluations (and Tune reports)
    eval_batch: int = Field(20, ge=1)  # sequences per evaluation batch
    final_window: int = Field(3, ge=1)  # evaluations averaged into a seed's final value
    checkpoint_every: int = Field(25, ge=1)  # epochs; a multiple of eval_every
    snapshot_every: int = Field(25, ge=0)  # epochs between weight snapshots; 0 = none
    corr_pooling: Literal["pooled", "per_sequence"] = "pooled"  # method.md §17.6
    x0_std: float = Field(1.0, ge=0)  # initial state ~ N(0, x0_std^2) for network steps and evals
    critic_x0_zero: bool = True  # reference: critic batches start from x0 = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0)  # torch intra-op threads; 0 = leave as set by the environment
    # evaluations between held-out MI estimates (mi_heldout; also at the last); 0 = never
    heldout_mi_every: int = Field(10, ge=0)
    # null-referenced modularity (issue 9): R random partitions with the designed group sizes,
    # drawn once per trial, score q_*_z; Leiden communities give q_*_found and nmi_*
    null_partitions: int = Field(200, ge=2)
    communities: bool = True
    # evaluate every time on one fixed batch (inputs, x0, noise drawn from their own seed):
    # q_func then changes only when the weights do, like q_struct, instead of carrying the
    # sampling jitter of a fresh batch (bench/bench_modularity.py measures both)
    eval_fixed: bool = False


class EmergenceConfig(_Strict):
    """The onset rule (analysis/outcomes.py owns it; docs/run-data.md, "Onsets").

    A metric's onset is the first evaluation from which its z-score stays >= `z` for `run`
    consecutive evaluations. The defaults come from the calibration (analysis.emergence.calibrate):
    false "function first" <= alpha and false emergence of null curves <= 5 %.
    """

    z: float = Field(DEFAULT_Z, gt=0)  # z-score an onset stretch must reach
    run: int = Field(DEFAULT_RUN, ge=1)  # consecutive evaluations that must reach it


class TrialConfig(_Strict):
    """Everything one trial needs; defaults are the reference working-memory settings."""

    task: TaskConfig = TaskConfig()
    network: NetworkConfig = NetworkConfig()
    partition: PartitionConfig = PartitionConfig()
    mi: MIConfig = MIConfig()
    critic: CriticConfig = CriticConfig()
    optim: NetOptimConfig = NetOptimConfig()
    train: TrainConfig = TrainConfig()
    emergence: EmergenceConfig = EmergenceConfig()
    seeds: int = Field(1, ge=1)  # S networks trained together (population axis)
    seed: int = Field(0, ge=0)  # member i is initialised from seed + i

    @model_validator(mode="after")
    def _cross_checks(self) -> TrialConfig:
        n, k = self.network.hidden, self.partition.groups
        if k > n:
            raise ValueError(
                f"partition.groups must be at most network.hidden, but got "
                f"network.hidden={n}, partition.groups={k}"
            )
        sizes = self.partition.sizes
        if sizes is not None:
            if len(sizes) != k or sum(sizes) != n or min(sizes) < 1:
                raise ValueError(
                    f"partition.sizes must be {k} positive sizes summing to network.hidden={n}, "
                    f"but got {list(sizes)}"
                )
        if self.mi.weight > 0 and k < 2:
            raise ValueError(f"mi.weight > 0 needs partition.groups >= 2, but got {k}")
        rows = self.task.settings.check(self)  # the named task's own constraints
        if self.mi.pairs > rows:
            raise ValueError(
                f"mi.pairs must be at most the (batch x time) rows available ({rows}), "
                f"but got mi.pairs={self.mi.pairs}; use 0 for all rows"
            )
        if self.mi.estimator == "infonce" and self.mi.nce_block > (self.mi.pairs or rows):
            raise ValueError(
                f"mi.nce_block must be at most the rows per estimate ({self.mi.pairs or rows}), "
                f"but got {self.mi.nce_block}"
            )
        tr = self.train
        if tr.checkpoint_every % tr.eval_every:
            raise ValueError(
                f"train.checkpoint_every must be a multiple of train.eval_every, but got "
                f"checkpoint_every={tr.checkpoint_every}, eval_every={tr.eval_every}"
            )
        if tr.snapshot_every and tr.snapshot_every % tr.eval_every:
            raise ValueError(
                f"train.snapshot_every must be 0 or a multiple of train.eval_every, but got "
                f"snapshot_every={tr.snapshot_every}, eval_every={tr.eval_every}"
            )
        return self

    # -- derived values -------------------------------------------------------------------------
    @property
    def n_bits(self) -> int:
        b = self.task.wm.n_bits
        return self.partition.groups if b == "groups" else b

    def flat(self) -> dict[str, Any]:
        """Dotted-key dict of every field (the MLflow params, DESIGN.md §6)."""
        return flatten(self.model_dump(mode="json"))


# ----------------------------------------------------------------------------------------------
# Dotted keys, validation errors and YAML: the machinery lives in study.spec._keys, study.spec._validation
# and study.spec._yaml; here it is bound to TrialConfig (and re-exported for the callers).

VALID_KEYS: tuple[str, ...] = tuple(valid_keys(TrialConfig))


def apply_overrides(
    tree: Mapping[str, Any], overrides: Mapping[str, Any], *, source: str = "--set"
) -> dict[str, Any]:
    """Set dotted keys in a nested dict (copy); unknown keys raise with the closest valid key."""
    return _keys.apply_overrides(tree, overrides, valid=VALID_KEYS, source=source)


def format_validation_error(
    err: pydantic.ValidationError,
    *,
    model: type[BaseModel] = None,
    source: str | None = None,
    prefix: str = "",
) -> ConfigError:
    """Turn a pydantic error into one ConfigError listing every problem, one line each (for the
    TrialConfig unless `model` says otherwise)."""
    return _validation.format_validation_error(err, model=model or TrialConfig,
                                               is_key=_is_message_key, source=source,
                                               prefix=prefix)


def _is_message_key(name: str) -> bool:
    """Whether a cross-field message's leading name is a key: a trial config key, or a study spec
    field or a dotted key below one (`scheduler.metric must ...`)."""
    return name in VALID_KEYS or name.split(".")[0] in StudySpec.model_fields


# Upper (and, where the schema has none, lower) bounds on sizes, checked after the schema: values
# beyond them are typos or attacks (a 10^9-unit network, 10^6 seeds), not studies. They sit here,
# apart from the schema classes, so that adding a key never has to touch them.
TRIAL_LIMITS: dict[str, tuple[float, float]] = {
    "seeds": (1, 4096),
    "seed": (0, SEED_MAX),
    "network.hidden": (2, 16384),
    "partition.groups": (1, 4096),
    "task.batch": (1, 100_000),
    "task.wm.n_bits": (1, 4096),
    "task.wm.pulse_len": (1, 10_000_000),
    "task.wm.transient": (0, 10_000_000),
    "task.wm.segment": (1, 10_000_000),
    "task.chaos.n_train": (1, 10_000_000),
    "task.chaos.n_test": (1, 10_000_000),
    "task.chaos.n_samples": (2, 100_000_000),
    "task.chaos.data_seed": (0, SEED_MAX),
    "mi.pairs": (0, 1_000_000_000),
    "mi.nce_block": (2, 1_000_000),
    "critic.width": (1, 65536),
    "critic.depth": (1, 64),
    "critic.steps": (0, 100_000),
    "critic.pretrain_steps": (0, 100_000_000),
    "train.epochs": (0, 100_000_000),
    "train.updates_per_epoch": (1, 100_000),
    "train.eval_every": (1, 100_000_000),
    "train.eval_batch": (1, 100_000),
    "train.final_window": (1, 100_000),
    "train.checkpoint_every": (1, 100_000_000),
    "train.snapshot_every": (0, 100_000_000),
    "train.threads": (0, 4096),
}
SPEC_LIMITS: dict[str, tuple[float, float]] = {
    "sampler.seed": (0, SEED_MAX),
    "sampler.n_startup_trials": (0, 1_000_000),
    "sampler.population_size": (2, 1_000_000),
    "trials": (1, MAX_GRID),
    "concurrency": (1, 100_000),
    "resources.cpu": (1e-3, 4096),
    "resources.gpu": (0, 1024),
    "seeds": (1, 4096),
    "max_failures": (0, 1000),
    "scheduler.grace_period": (1, 100_000_000),
    "scheduler.reduction_factor": (1, 1000),
}


def trial_config_from_dict(
    tree: Mapping[str, Any], *, source: str | None = None, prefix: str = ""
) -> TrialConfig:
    """Validate a nested dict into a TrialConfig; errors become ConfigError."""
    if not isinstance(tree, Mapping):
        raise ConfigError(
            f"a trial config must be a mapping of sections, but got {type(tree).__name__}",
            source=source,
        )
    tree = _lists_to_tuples(tree)
    try:
        cfg = TrialConfig.model_validate(tree)
    except pydantic.ValidationError as e:
        raise format_validation_error(e, source=source, prefix=prefix) from None
    check_limits(cfg.flat(), TRIAL_LIMITS, source=source, prefix=prefix)
    return cfg


def _lists_to_tuples(node: Any) -> Any:
    # strict mode accepts tuples, not lists, for tuple fields (YAML gives lists)
    if isinstance(node, Mapping):
        return {k: _lists_to_tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        return tuple(node)
    return node


def load_trial_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | Iterable[str] = ()
) -> TrialConfig:
    """Read a trial config YAML (or the defaults when path is None) and apply dotted overrides.

    Args:
        path: YAML file with any subset of the sections of TrialConfig.
        overrides: {"mi.weight": 0.3} or ["mi.weight=0.3", ...] (the CLI's --set).

    Raises:
        ConfigError: naming the file (or --set), the dotted key, the expectation and the value.
    """
    tree = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    if not isinstance(tree, Mapping):
        raise ConfigError(f"expected a mapping of sections, got {type(tree).__name__}",
                          source=source)
    if not isinstance(overrides, Mapping):
        overrides = dict(parse_assignment(o) for o in overrides)
    if overrides:
        tree = apply_overrides(tree, overrides)
        source = f"{source} (with --set {', '.join(overrides)})"
    return trial_config_from_dict(tree, source=source)


# ----------------------------------------------------------------------------------------------
# Study spec (search_spaces/*.yaml)


class ParamSpec(_Strict):
    """One searched hyperparameter: a list of values, or a float/int range."""

    type: Literal["categorical", "float", "int"] = "categorical"
    values: tuple[Any, ...] | None = None  # categorical (and grid) values
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None  # int (or float) grid step

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.values:
                raise ValueError("a categorical parameter needs a non-empty 'values' list")
            if self.low is not None or self.high is not None:
                raise ValueError("give either 'values' or 'low'/'high', not both")
            return self
        if self.values is not None:
            raise ValueError(f"a {self.type} range takes 'low'/'high', not 'values'")
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} range needs low < high, but got "
                             f"low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, but got low={self.low}; "
                             f"to include 0, list the values instead")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int range needs integer bounds, got {self.low}, {self.high}")
        if self.step is not None:
            if not self.step > 0:
                raise ValueError(f"a grid step must be > 0, but got step={self.step}")
            if self.type == "int" and self.step != int(self.step):
                raise ValueError(f"an int range needs an integer step, but got {self.step}")
            if self.log:
                raise ValueError("a range takes either 'log: true' or a 'step', not both")
        return self

    def grid_len(self) -> int | None:
        """How many values grid() has, computed without building the list (None if continuous)."""
        if self.values is not None:
            return len(self.values)
        if self.type == "int":
            return len(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step:
            return int(round((self.high - self.low) / self.step)) + 1
        return None

    def grid(self) -> list[Any] | None:
        """The finite list of values this parameter takes on a grid, or None if continuous.
        Refuses (ValueError) to build more than MAX_GRID values."""
        n = self.grid_len()
        if n is not None and n > MAX_GRID:
            raise ValueError(f"a grid of {n} values is more than the {MAX_GRID} allowed")
        if self.values is not None:
            return list(self.values)
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.step:
            n = int(round((self.high - self.low) / self.step))
            return [self.low + i * self.step for i in range(n + 1)]
        return None

    def corners(self) -> list[Any]:
        """Values that exercise validation: every listed value, or both ends of a range."""
        if self.values is not None:
            return list(self.values)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


class SamplerSpec(_Strict):
    name: Literal["grid", "qmc", "tpe", "gp", "nsga2", "random"] = "tpe"
    seed: int = 0
    n_startup_trials: int | None = Field(None, ge=0)  # tpe / gp
    population_size: int | None = Field(None, ge=2)  # nsga2


class ObjectiveSpec(_Strict):
    metric: str  # a trial summary metric, e.g. final.q_func
    direction: Literal["maximize", "minimize"] = "maximize"


class SchedulerSpec(_Strict):
    name: Literal["asha"] = "asha"
    grace_period: int = Field(4, ge=1)  # evaluations before a trial may be stopped
    reduction_factor: float = Field(3, gt=1)
    metric: str | None = None  # default: the first objective's metric, with its direction


class ResourcesSpec(_Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


# what objectives and constraints may name; derived from the one list of metric names
SUMMARY_METRICS = names.SUMMARY_METRICS


class StudySpec(_Strict):
    """A study: base trial config, searched hyperparameters, sampler, objective(s), budget."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME)
    description: str = ""
    base: str | None = None  # a trial config YAML, relative to the spec file
    trial: dict[str, Any] = {}  # nested overrides of the base config
    search: dict[str, ParamSpec] = {}
    sampler: SamplerSpec = SamplerSpec()
    objectives: tuple[ObjectiveSpec, ...] = (ObjectiveSpec(metric="final.q_func"),)
    constraints: tuple[str, ...] = ()  # "metric >= value" / "metric <= value"
    trials: int | None = Field(None, ge=1)  # grid: defaults to the grid size
    concurrency: int = Field(1, ge=1)
    resources: ResourcesSpec = ResourcesSpec()
    scheduler: SchedulerSpec | None = None
    seeds: int | None = Field(None, ge=1)  # seeds per trial (overrides trial.seeds)
    storage: str | None = None  # Optuna RDB URL; default sqlite under STUDY_HOME
    max_failures: int = Field(1, ge=0)  # retries of a crashed trial from its checkpoint

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if not 1 <= len(self.objectives) <= 2:
            raise ValueError(f"objectives must list 1 or 2 metrics, but got {len(self.objectives)}")
        for o in self.objectives:
            if o.metric not in SUMMARY_METRICS:
                guess = closest_key(o.metric, SUMMARY_METRICS)
                hint = f" (did you mean '{guess}'?)" if guess else ""
                raise ValueError(f"objectives: '{o.metric}' is not a trial summary metric"
                                 f"{hint}; allowed: {', '.join(SUMMARY_METRICS)}")
        for c in self.constraints:
            try:
                parse_constraint(c)
            except ValueError as e:
                raise ValueError(f"constraints: {e}") from None
        if self.sampler.name == "nsga2" and len(self.objectives) < 2:
            raise ValueError("sampler 'nsga2' needs two objectives")
        if self.sampler.name == "grid":
            bad = [k for k, p in self.search.items() if p.grid_len() is None]
            if bad:
                raise ValueError(f"sampler 'grid' needs a finite list (values, or int ranges or "
                                 f"a step) for every searched key, but these are continuous: "
                                 f"{', '.join(bad)}")
            if self.grid_size() > MAX_GRID:
                sizes = {k: p.grid_len() for k, p in self.search.items()}
                raise ValueError(f"search: the grid has {math.prod(sizes.values())} points "
                                 f"({', '.join(f'{k}: {n} values' for k, n in sizes.items())}), "
                                 f"more than the {MAX_GRID} allowed")
        if (self.scheduler is not None and len(self.objectives) > 1
                and self.scheduler.metric is None):
            raise ValueError("scheduler.metric must name the objective ASHA uses when there are "
                             "two objectives")
        if self.scheduler is not None and self.scheduler.metric is not None:
            allowed = [o.metric for o in self.objectives]
            if self.scheduler.metric not in allowed:
                raise ValueError(f"scheduler.metric must be one of the objectives' metrics "
                                 f"({', '.join(allowed)}), which every trial reports at every "
                                 f"evaluation, but got {self.scheduler.metric!r}")
        return self

    def grid_size(self) -> int:
        """Points of the full grid, computed without building it (saturates above MAX_GRID)."""
        size = 1
        for p in self.search.values():
            size = min(size * (p.grid_len() or 0), MAX_GRID + 1)
        return size

    def n_trials(self) -> int:
        if self.trials is not None:
            return self.trials
        if self.sampler.name == "grid":
            return self.grid_size()
        return 10


def parse_constraint(text: str) -> tuple[str, str, float]:
    """'final.success_rate >= 0.9' -> ('final.success_rate', '>=', 0.9)."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*(>=|<=)\s*(-?[\d.eE+-]+)\s*", text)
    if not m or m.group(1) not in SUMMARY_METRICS:
        raise ValueError(f"constraint must look like '<summary metric> >= <number>' (or <=), "
                         f"but got {text!r}")
    return m.group(1), m.group(2), float(m.group(3))




class Study:
    """A validated study: the spec, the resolved base trial config and where it came from."""

    def __init__(self, spec: StudySpec, base: dict[str, Any], path: Path, text: str):
        self.spec, self.base, self.path, self.text = spec, base, path, text

    @property
    def name(self) -> str:
        return self.spec.name

    def trial_config(self, params: Mapping[str, Any]) -> TrialConfig:
        """The trial config for one point of the search space (dotted keys)."""
        tree = apply_overrides(self.base, dict(params), source=str(self.path))
        return trial_config_from_dict(tree, source=str(self.path))


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` merged in, section by section (a copy; `over` wins at the leaves)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), Mapping) else v
    return out


def load_study(path: str | Path) -> Study:
    """Read and fully validate a study spec before anything starts.

    Checks the spec's own keys, the base config, every searched key (it must be a trial config
    key) and every value the search can take (all grid points; the listed values or both ends of
    each range otherwise), so a bad spec fails here with the file and key, not inside a trial.

    Raises:
        ConfigError: naming the spec file, the key, what was expected and what was given.
    """
    path = Path(path)
    source = str(path)
    spec, text = _read_spec(path)
    tree = _trial_tree(spec, path)
    _check_search_keys(spec, source)
    study = Study(spec, json.loads(json.dumps(tree)), path, text)
    points = _check_points(study, source)
    _warn_clean_partner_sweep(study, points, source)
    return study


def _read_spec(path: Path) -> tuple[StudySpec, str]:
    """The spec file validated against StudySpec, its size limits and storage URL; and its text."""
    source = str(path)
    raw, text = read_yaml_text(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a study spec must be a mapping, but got {type(raw).__name__}",
                          source=source)
    try:
        spec = StudySpec.model_validate(_lists_to_tuples(raw))
    except pydantic.ValidationError as e:
        raise format_validation_error(e, model=StudySpec, source=source) from None
    check_limits(flatten(spec.model_dump()), SPEC_LIMITS, source=source)
    if spec.storage is not None:
        check_storage_url(spec.storage, source=source, key="storage")
    return spec, text


def _trial_tree(spec: StudySpec, path: Path) -> dict[str, Any]:
    """The study's base trial config (nested): the `base` file (validated on its own), then the
    spec's `trial` overrides and `seeds`, validated together under the `trial.` prefix."""
    source = str(path)
    base: dict[str, Any] = {}
    if spec.base is not None:
        base_path = (path.parent / spec.base).resolve()
        if not base_path.is_file():
            raise ConfigError(f"key 'base': no such trial config file {spec.base!r} "
                              f"(looked in {path.parent})", source=source, key="base")
        base = read_yaml(base_path)
        if not isinstance(base, Mapping):
            raise ConfigError("key 'base': the base file must hold a mapping of sections",
                              source=source, key="base")
        trial_config_from_dict(base, source=str(base_path))  # the base file on its own
    tree = _deep_merge(base, _tuples_to_lists(spec.trial))
    if spec.seeds is not None:
        tree = _deep_merge(tree, {"seeds": spec.seeds})
    trial_config_from_dict(tree, source=source, prefix="trial.")
    return tree


def _check_search_keys(spec: StudySpec, source: str) -> None:
    """At least one searched key, and each a dotted trial config leaf (not a section)."""
    if not spec.search:
        raise ConfigError("key 'search': a study needs at least one searched key (e.g. "
                          "search: {mi.weight: {values: [0.0, 0.1]}}); to train one config, use "
                          "`python -m study train`", source=source, key="search")
    for key in spec.search:
        if key not in VALID_KEYS or key in _SECTIONS:
            guess = closest_key(key, [k for k in VALID_KEYS if k not in _SECTIONS])
            hint = f" (did you mean '{guess}'?)" if guess else ""
            raise ConfigError(f"unknown key 'search.{key}'{hint}: searched keys are dotted trial "
                              f"config keys such as mi.weight, partition.groups, network.hidden",
                              source=source, key=f"search.{key}")


def _check_points(study: Study, source: str) -> list[dict[str, Any]]:
    """Validate the trial config of every point the search can take, and return the points:
    the whole grid (up to 5000 points), else each listed value or range end of one key at a time.
    """
    spec = study.spec
    points: list[dict[str, Any]]
    if spec.sampler.name == "grid" and spec.grid_size() <= 5000:
        keys = list(spec.search)
        points = [dict(zip(keys, combo))
                  for combo in itertools.product(*(spec.search[k].grid() for k in keys))]
    else:
        points = [{k: v} for k, p in spec.search.items() for v in p.corners()]
    for point in points:
        try:
            study.trial_config(point)
        except ConfigError as e:
            key = f"search.{next(iter(point))}" if len(point) == 1 else "search"
            raise ConfigError(f"key '{key}': search point {short_repr(point)} gives an invalid "
                              f"trial config: {e.detail}", source=source, key=key) from None
    return points


class CleanPartnerWarning(UserWarning):
    """A study compares group counts or sizes under `mi.noise_mode: clean_partner`."""


def _warn_clean_partner_sweep(study: Study, points: list[dict[str, Any]], source: str) -> None:
    """Warn when a study sweeps K or N while some trial uses `mi.noise_mode: clean_partner`.

    In clean_partner mode the critic's shuffled partner is the noise-free b, so the critic
    objective is I(a+ε; b+ε′) + KL(p_{b+ε} ‖ p_b): the KL term depends on each group's size and
    activity scale (0.006 to 2.8 nats on independent data), so the penalty and `mi` are not
    comparable across K or N. noisy_partner estimates the MI alone.
    """
    swept = [k for k in ("partition.groups", "partition.sizes", "network.hidden")
             if k in study.spec.search]
    if not swept:
        return
    if "mi.noise_mode" in study.spec.search:
        modes = {p["mi.noise_mode"] for p in points if "mi.noise_mode" in p}
    else:  # one mode for the whole study: the first point's (already validated)
        modes = {study.trial_config(points[0] if points else {}).mi.noise_mode}
    if "clean_partner" in modes:
        warnings.warn(
            f"{source}: the study sweeps {', '.join(swept)} with mi.noise_mode: clean_partner; "
            f"that critic objective includes a KL term that depends on group size and activity "
            f"scale, so the MI penalty and mi are not comparable across the sweep. Set "
            f"mi.noise_mode: noisy_partner unless this is a paper reproduction",
            CleanPartnerWarning, stacklevel=3)


_SECTIONS = tuple(k for k in VALID_KEYS if any(v.startswith(k + ".") for v in VALID_KEYS))


def check_storage_url(url: str, *, source: str, key: str = "storage") -> str:
    """An Optuna RDB URL that SQLAlchemy can parse, with a known dialect and an installed driver,
    checked without connecting; for SQLite, the database's folder must exist. Returns the URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise ConfigError(f"key '{key}': not a database URL such as sqlite:////abs/optuna.db or "
                          f"postgresql+psycopg://user:pass@host:5432/db, but got "
                          f"{short_repr(redact_url(str(url)))}", source=source, key=key) from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(f"key '{key}': unknown database kind '{parsed.drivername}' in {shown} "
                          f"(use sqlite, postgresql or mysql)", source=source, key=key) from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise ConfigError(f"key '{key}': the driver for {parsed.drivername} is not installed "
                          f"({e}); install the cluster extra (pip install -e '.[cluster]')",
                          source=source, key=key) from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:") or db.startswith("file:"):
            raise ConfigError(f"key '{key}': a SQLite storage needs a file path "
                              f"(sqlite:////abs/path/optuna.db), but got {shown}",
                              source=source, key=key)
        if not Path(db).expanduser().resolve().parent.is_dir():
            raise ConfigError(f"key '{key}': the folder of the SQLite file {db} does not exist",
                              source=source, key=key)
    return url


_CREDENTIALS = re.compile(r"(\b[A-Za-z][\w+.-]*://[^:/@\s]*:)[^\s/]*@")


def redact_url(text: str) -> str:
    """A URL (or any text holding URLs) with each password replaced by ***:
    postgresql://u:secret@h/db -> postgresql://u:***@h/db. Everything printed or logged that
    may hold a storage or tracking URL goes through this."""
    return _CREDENTIALS.sub(r"\1***@", str(text))


def _tuples_to_lists(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _tuples_to_lists(v) for k, v in node.items()}
    if isinstance(node, tuple):
        return [_tuples_to_lists(v) for v in node]
    return node
