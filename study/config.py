"""Typed trial config: reference defaults, YAML loading, dotted overrides, strict validation.

Defaults are the official working-memory settings (method.md §5.1); presets in `search_spaces/`
override them. Every bad input raises `ConfigError`, which names the file, the dotted key, what was
expected and the value given (and, for an unknown key, the closest valid one). This module imports
neither torch nor Ray, so validating a spec is fast.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ConfigError",
    "TrialConfig",
    "TaskConfig",
    "WorkingMemoryConfig",
    "ChaosConfig",
    "NetworkConfig",
    "PartitionConfig",
    "MIConfig",
    "CriticConfig",
    "OptimizerConfig",
    "NetOptimConfig",
    "TrainConfig",
    "load_trial_config",
    "trial_config_from_dict",
    "apply_overrides",
    "parse_assignment",
    "flatten",
    "unflatten",
    "format_validation_error",
]


class ConfigError(ValueError):
    """A bad config or spec: says where (file and dotted key), what was expected and what was given."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        super().__init__(f"{source}: {message}" if source else message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ----------------------------------------------------------------------------------------------
# Task


class WorkingMemoryConfig(_Strict):
    """n-bit flip-flop working memory (method.md §2)."""

    n_bits: int | Literal["groups"] = Field(2, ge=1)  # memories; "groups" = partition.groups
    p_onset: float = Field(1 / 500, gt=0, lt=1)  # pulse onset probability per step and line
    pulse_len: int = Field(40, ge=1)  # steps a pulse stays at 1
    slope: float = Field(0.1, gt=0, le=2)  # target ramp per step
    transient: int = Field(1000, ge=0)  # no-grad steps before the scored segment
    segment: int = Field(2000, ge=1)  # scored steps (loss, MI, metrics)
    off_cue: bool = False  # force an "off" onset at t = 0 on every line pair (feasibility.md §5.3)
    target_lead: Literal[0, 1] = 1  # 1 = reference quirk: target at t is y_{t+1} (method.md §2.3)
    washout: int = Field(0, ge=0)  # scored steps excluded from the loss


class ChaosConfig(_Strict):
    """Lorenz + Rössler signal separation (method.md §6)."""

    n_train: int = Field(5000, ge=1)  # sequences in the training pool
    n_test: int = Field(50, ge=1)  # sequences in the fixed test pool
    n_samples: int = Field(14000, ge=2)  # samples per integrated trajectory
    drop: int = Field(4000, ge=0)  # leading samples dropped after min-max scaling
    lorenz_t_end: float = Field(100.0, gt=0)  # integration horizon (time units)
    rossler_t_end: float = Field(700.0, gt=0)
    washout: int = Field(200, ge=0)  # leading steps excluded from the loss
    data_seed: int = Field(0, ge=0)  # seed of the generated pools (shared by all trials)


class TaskConfig(_Strict):
    name: Literal["working_memory", "chaos_separation"] = "working_memory"
    batch: int = Field(20, ge=1)  # sequences per training batch
    wm: WorkingMemoryConfig = WorkingMemoryConfig()
    chaos: ChaosConfig = ChaosConfig()


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


class MIConfig(_Strict):
    weight: float = Field(0.1, ge=0)  # lambda: weight of the MI penalty in the network loss
    estimator: Literal["dv", "mine", "infonce"] = "dv"
    penalty: Literal["pairwise", "total_correlation"] = "pairwise"  # how K > 2 groups combine
    pairs: int = Field(0, ge=0)  # (time x batch) rows sampled per estimate; 0 = all
    input_noise: float = Field(0.1, ge=0)  # std of Gaussian noise added to critic inputs
    noise_mode: Literal["clean_partner", "noisy_partner"] = "clean_partner"  # method.md §4.2
    ema_rate: float = Field(0.01, gt=0, le=1)  # MINE moving-average rate
    nce_block: int = Field(128, ge=2)  # InfoNCE: rows per block of negatives


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


class TrialConfig(_Strict):
    """Everything one trial needs; defaults are the reference working-memory settings."""

    task: TaskConfig = TaskConfig()
    network: NetworkConfig = NetworkConfig()
    partition: PartitionConfig = PartitionConfig()
    mi: MIConfig = MIConfig()
    critic: CriticConfig = CriticConfig()
    optim: NetOptimConfig = NetOptimConfig()
    train: TrainConfig = TrainConfig()
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
        t = self.task
        if t.name == "working_memory":
            if t.wm.washout >= t.wm.segment:
                raise ValueError(
                    f"task.wm.washout must be shorter than task.wm.segment, but got "
                    f"washout={t.wm.washout}, segment={t.wm.segment}"
                )
            rows = t.batch * t.wm.segment
        else:
            c = t.chaos
            if c.drop >= c.n_samples:
                raise ValueError(
                    f"task.chaos.drop must be less than task.chaos.n_samples, but got "
                    f"drop={c.drop}, n_samples={c.n_samples}"
                )
            if c.washout >= c.n_samples - c.drop:
                raise ValueError(
                    f"task.chaos.washout must be shorter than the sequence "
                    f"(n_samples - drop = {c.n_samples - c.drop}), but got washout={c.washout}"
                )
            if t.batch > c.n_train:
                raise ValueError(
                    f"task.batch must be at most task.chaos.n_train, but got "
                    f"batch={t.batch}, n_train={c.n_train}"
                )
            if self.train.eval_batch > c.n_test:
                raise ValueError(
                    f"train.eval_batch must be at most task.chaos.n_test (the fixed test pool), "
                    f"but got eval_batch={self.train.eval_batch}, n_test={c.n_test}"
                )
            rows = t.batch * (c.n_samples - c.drop)
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
# Dotted keys


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {"a.b.c": leaf}. Lists stay leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}."""
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"key '{dotted}' sets a field inside a value", key=dotted)
        node[leaf] = value
    return tree


def _valid_keys(model: type[BaseModel] = None, prefix: str = "") -> list[str]:
    model = model or TrialConfig
    keys: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.append(prefix + name)
            keys.extend(_valid_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


VALID_KEYS: tuple[str, ...] = tuple(_valid_keys())


def closest_key(key: str, candidates: Iterable[str]) -> str | None:
    candidates = list(candidates)
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if match:
        return match[0]
    # fall back to the leaf name alone (e.g. 'hiden' -> 'network.hidden')
    leaf = key.rsplit(".", 1)[-1]
    leaves = {c.rsplit(".", 1)[-1]: c for c in candidates}
    match = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.7)
    return leaves[match[0]] if match else None


def _dotted(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    """Keep the field names of a pydantic error location, drop union-branch labels."""
    parts: list[str] = []
    node: Any = model
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        fields = getattr(node, "model_fields", None)
        if fields is None:
            continue  # inside a union or a leaf: branch labels such as 'int'
        parts.append(str(item))  # a field, or an unknown key of this section
        ann = fields[item].annotation if item in fields else None
        node = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return ".".join(parts).replace(".[", "[")


def format_validation_error(
    err: pydantic.ValidationError,
    *,
    model: type[BaseModel] = None,
    source: str | None = None,
    prefix: str = "",
) -> ConfigError:
    """Turn a pydantic error into one ConfigError listing every problem, one line each."""
    model = model or TrialConfig
    lines: list[str] = []
    first_key: str | None = None
    by_key: dict[str, list[dict]] = {}
    for e in err.errors():
        key = prefix + _dotted(tuple(e["loc"]), model)
        by_key.setdefault(key, []).append(e)
    for key, errs in by_key.items():
        first_key = first_key or key
        e = errs[0]
        if e["type"] == "extra_forbidden":
            parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
            siblings = [
                k[len(parent):] for k in (prefix + v for v in VALID_KEYS)
                if k.startswith(parent) and "." not in k[len(parent):]
            ] if model is TrialConfig else []
            guess = closest_key(key, [prefix + k for k in VALID_KEYS]) if model is TrialConfig else None
            hint = f" (did you mean '{guess}'?)" if guess else ""
            allowed = f"; allowed here: {', '.join(siblings)}" if siblings else ""
            lines.append(f"unknown key '{key}'{hint}{allowed}")
        elif e["type"] == "value_error":
            msg = str(e["msg"]).removeprefix("Value error, ")
            lines.append(msg if not key else f"{msg}")
        else:
            expected = " or ".join(dict.fromkeys(_expectation(x) for x in errs))
            lines.append(f"key '{key}': expected {expected}, but got {e.get('input')!r}")
    message = lines[0] if len(lines) == 1 else "invalid config:\n  - " + "\n  - ".join(lines)
    return ConfigError(message, source=source, key=first_key)


def _expectation(e: Mapping[str, Any]) -> str:
    msg = str(e["msg"])
    return msg[len("Input should be "):] if msg.startswith("Input should be ") else msg


# ----------------------------------------------------------------------------------------------
# Loading


def parse_assignment(text: str) -> tuple[str, Any]:
    """'mi.weight=0.3' -> ('mi.weight', 0.3); the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override must look like key=value, but got '{text}'", source="--set")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"value of '{key}' is not valid YAML: {raw!r}", source="--set") from e
    return key, value


def apply_overrides(
    tree: Mapping[str, Any], overrides: Mapping[str, Any], *, source: str = "--set"
) -> dict[str, Any]:
    """Set dotted keys in a nested dict (copy); unknown keys raise with the closest valid key."""
    out = json.loads(json.dumps(tree))  # deep copy of plain data
    for dotted, value in overrides.items():
        if dotted not in VALID_KEYS:
            guess = closest_key(dotted, VALID_KEYS)
            hint = f" (did you mean '{guess}'?)" if guess else ""
            raise ConfigError(f"unknown key '{dotted}'{hint}", source=source, key=dotted)
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


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
        return TrialConfig.model_validate(tree)
    except pydantic.ValidationError as e:
        raise format_validation_error(e, source=source, prefix=prefix) from None


def _lists_to_tuples(node: Any) -> Any:
    # strict mode accepts tuples, not lists, for tuple fields (YAML gives lists)
    if isinstance(node, Mapping):
        return {k: _lists_to_tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        return tuple(node)
    return node


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such file: {path}", source=str(path))
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", source=str(path)) from e


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
        raise ConfigError(f"expected a mapping of sections, got {type(tree).__name__}", source=source)
    if not isinstance(overrides, Mapping):
        overrides = dict(parse_assignment(o) for o in overrides)
    if overrides:
        tree = apply_overrides(tree, overrides)
        source = f"{source} (with --set {', '.join(overrides)})"
    return trial_config_from_dict(tree, source=source)
