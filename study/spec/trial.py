"""The typed trial config: the task sections, TrialConfig with its cross-field checks, and
loading it from YAML, a dict or dotted `--set` overrides.

Defaults are the working-memory reference (docs/method.md §5.1); presets in `search_spaces/`
override them. Every bad input raises `ConfigError`, which names the file, the dotted key, what
was expected and the value given (and, for an unknown key, the closest valid one). Nothing in
`study.spec` imports torch or Ray, so validating a spec is fast.

The sections beside the task live in `study.spec.sections`, the size limits in
`study.spec.limits`; the machinery (dotted keys, pydantic errors, YAML) in the private modules
`_keys`, `_validation`, `_yaml`, bound here to TrialConfig. Callers import from `study.spec`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, Field, ValidationInfo, model_validator

from study.contract.artifacts import CHECKPOINT_DIR, CHECKPOINT_FILE
from study.contract.names import FUNC_ONSET
from study.spec import _keys, _validation
from study.spec._errors import ConfigError
from study.spec._keys import check_limits, flatten, lists_to_tuples, parse_assignment, valid_keys
from study.spec._validation import Strict
from study.spec._yaml import read_yaml
from study.spec.limits import TRIAL_LIMITS
from study.spec.sections import (
    CriticConfig,
    EmergenceConfig,
    InterventionConfig,
    MIConfig,
    NetOptimConfig,
    NetworkConfig,
    PartitionConfig,
    StructurePenaltyConfig,
    TrainConfig,
)

__all__ = [
    "TaskSettings",
    "WorkingMemoryConfig",
    "ChaosConfig",
    "TASK_SECTIONS",
    "TaskConfig",
    "TrialConfig",
    "VALID_KEYS",
    "apply_overrides",
    "format_validation_error",
    "trial_config_from_dict",
    "load_trial_config",
    "checkpoint_file",
    "fork_checkpoint",
]


# ----------------------------------------------------------------------------------------------
# Task


class TaskSettings(Strict):
    """Base of one task's own section under `task` (`task.wm`, `task.chaos`, ...).

    Each task validates its own constraints in `check`, so a new task gets its own checks and
    never another task's; the checks that hold for every task stay in TrialConfig._cross_checks.
    """

    def check(self, trial: TrialConfig) -> int:
        """Raise ValueError for a constraint of this task that `trial` breaks; return the
        (batch x time) rows one MI estimate can draw from a training batch (for `mi.pairs`)."""
        raise NotImplementedError(f"{type(self).__name__} must define check()")


class WorkingMemoryConfig(TaskSettings):
    """n-bit flip-flop working memory (docs/method.md §2)."""

    n_bits: Annotated[int, Field(ge=1)] | Literal["groups"] = 2  # memories; "groups" = K
    p_onset: float = Field(1 / 500, gt=0, lt=1)  # pulse onset probability per step and line
    pulse_len: int = Field(40, ge=1)  # steps a pulse stays at 1
    slope: float = Field(0.1, gt=0, le=2)  # target ramp per step
    transient: int = Field(1000, ge=0)  # no-grad steps before the scored segment
    segment: int = Field(2000, ge=1)  # scored steps (loss, MI, metrics)
    off_cue: bool = False  # force an "off" onset at t = 0 on every bit (docs/feasibility.md §5.3)
    target_lead: Literal[0, 1] = 1  # 1 = reference quirk: target(t) = y(t+1) (docs/method.md §2.3)
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
    """Lorenz + Rössler signal separation (docs/method.md §6)."""

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


class TaskConfig(Strict):
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
# Trial


class TrialConfig(Strict):
    """Everything one trial needs; defaults are the reference working-memory settings."""

    task: TaskConfig = TaskConfig()
    network: NetworkConfig = NetworkConfig()
    partition: PartitionConfig = PartitionConfig()
    mi: MIConfig = MIConfig()
    critic: CriticConfig = CriticConfig()
    optim: NetOptimConfig = NetOptimConfig()
    train: TrainConfig = TrainConfig()
    emergence: EmergenceConfig = EmergenceConfig()
    intervention: InterventionConfig = InterventionConfig()
    structure_penalty: StructurePenaltyConfig = StructurePenaltyConfig()
    seeds: int = Field(1, ge=1)  # S networks trained together (population axis)
    seed: int = Field(0, ge=0)  # member i is initialised from seed + i

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> TrialConfig:
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
        if tr.dense_until and tr.dense_every > tr.eval_every:
            raise ValueError(
                f"train.dense_every must be at most train.eval_every when "
                f"train.dense_until > 0 (the dense start evaluates more often), but got "
                f"dense_every={tr.dense_every}, eval_every={tr.eval_every}"
            )
        _check_kept_checkpoints(self)
        if self.structure_penalty.weight > 0 and k < 2:
            raise ValueError(
                f"structure_penalty.weight > 0 needs partition.groups >= 2 (it acts on the "
                f"between-group entries of W_rec), but got partition.groups={k}"
            )
        _check_intervention(self, complete=not (info.context or {}).get("partial", False))
        return self

    # -- derived values -------------------------------------------------------------------------
    @property
    def n_bits(self) -> int:
        b = self.task.wm.n_bits
        return self.partition.groups if b == "groups" else b

    def flat(self) -> dict[str, Any]:
        """Dotted-key dict of every field (the MLflow params, docs/run-data.md, "Params")."""
        return flatten(self.model_dump(mode="json"))


def _check_kept_checkpoints(cfg: TrialConfig) -> None:
    """`train.keep_checkpoints` lists distinct evaluation epochs of the run."""
    tr = cfg.train
    kept = list(tr.keep_checkpoints)
    bad = [e for e in kept if e > tr.epochs or (e % tr.eval_every and e != tr.epochs)]
    if bad:
        raise ValueError(
            f"train.keep_checkpoints must list evaluation epochs (multiples of "
            f"train.eval_every={tr.eval_every} up to train.epochs={tr.epochs}, or the last), "
            f"but got {bad}"
        )
    if len(set(kept)) != len(kept):
        raise ValueError(f"train.keep_checkpoints lists an epoch twice: {kept}")


def _check_intervention(cfg: TrialConfig, *, complete: bool = True) -> None:
    """The `intervention` section: it starts somewhere, does something, and can do it here.

    Not `complete` (a study's base, whose intervention its searched keys or arms may complete):
    an intervention without a start or without an effect is let through; each search point is
    checked in full."""
    iv, k, n = cfg.intervention, cfg.partition.groups, cfg.network.hidden
    given = [
        name
        for name, on in (
            ("mi_weight", iv.mi_weight is not None),
            ("freeze", bool(iv.freeze)),
            ("swap_partition", iv.swap_partition),
        )
        if on
    ]
    if iv.at is None:
        if given and complete:
            raise ValueError(
                f"intervention.at is required with intervention.{given[0]}: give the epoch "
                f"the intervention starts at, or {FUNC_ONSET!r}"
            )
        return
    if not given:
        if not complete:
            return
        raise ValueError(
            "intervention.at is set but the intervention does nothing: give "
            "intervention.mi_weight, intervention.freeze or intervention.swap_partition"
        )
    if complete and given == ["mi_weight"] and iv.mi_weight == cfg.mi.weight:
        raise ValueError(
            f"intervention.mi_weight equals mi.weight ({cfg.mi.weight}) and nothing else is "
            f"set, so the intervention does nothing"
        )
    if isinstance(iv.at, int) and iv.at >= cfg.train.epochs:
        raise ValueError(
            f"intervention.at must be before the last epoch (train.epochs="
            f"{cfg.train.epochs}): it acts on the updates after epoch `at`, but got {iv.at}"
        )
    if iv.at == FUNC_ONSET:
        if k < 2:
            raise ValueError(
                f"intervention.at: {FUNC_ONSET} needs q_func_z, which needs "
                f"partition.groups >= 2, but got {k}"
            )
        if cfg.train.init_from is not None:
            raise ValueError(
                f"intervention.at: {FUNC_ONSET} cannot start from train.init_from: a seed "
                f"whose onset the parent's history already confirmed would switch at the "
                f"fork, later than it does without one; train the arm from scratch (it is "
                f"its control's network, bit for bit, until each seed's onset)"
            )
    if iv.mi_weight is not None and iv.mi_weight > 0 and k < 2:
        raise ValueError(f"intervention.mi_weight > 0 needs partition.groups >= 2, but got {k}")
    if len(set(iv.freeze)) != len(iv.freeze):
        raise ValueError(f"intervention.freeze lists a role twice: {list(iv.freeze)}")
    if "w_rec_between" in iv.freeze and k < 2:
        raise ValueError(
            f"intervention.freeze: w_rec_between needs partition.groups >= 2 (with one group "
            f"W_rec has no between-group entries), but got {k}"
        )
    if iv.swap_partition:
        if k < 2 or k == n:
            raise ValueError(
                f"intervention.swap_partition needs 2 <= partition.groups < network.hidden "
                f"(with {'one group' if k < 2 else 'one unit per group'} every partition of "
                f"these sizes is the same one), but got partition.groups={k}, "
                f"network.hidden={n}"
            )
        if iv.at == FUNC_ONSET and cfg.seeds > 1:
            raise ValueError(
                f"intervention.swap_partition cannot start at {FUNC_ONSET} with seeds > 1: the "
                f"S seeds of a trial share one partition (the critics' terms, the null "
                f"partitions, the metrics), so seeds that reach their onsets at different "
                f"evaluations cannot each move to their own; use an epoch, or seeds: 1"
            )


# ----------------------------------------------------------------------------------------------
# Dotted keys, validation errors and loading: the machinery of study.spec._keys,
# study.spec._validation and study.spec._yaml bound to TrialConfig.

VALID_KEYS: tuple[str, ...] = tuple(valid_keys(TrialConfig))


def apply_overrides(
    tree: Mapping[str, Any], overrides: Mapping[str, Any], *, source: str = "--set"
) -> dict[str, Any]:
    """Set dotted keys in a nested dict (copy); unknown keys raise with the closest valid key."""
    return _keys.apply_overrides(tree, overrides, valid=VALID_KEYS, source=source)


def format_validation_error(
    err: pydantic.ValidationError,
    *,
    model: type[BaseModel] | None = None,
    source: str | None = None,
    prefix: str = "",
) -> ConfigError:
    """Turn a pydantic error into one ConfigError listing every problem, one line each (for the
    TrialConfig unless `model` says otherwise, e.g. StudySpec)."""
    model = model or TrialConfig

    def is_key(name: str) -> bool:
        # a cross-field message's leading name is a key: a trial config key, or a field of
        # `model` or a dotted key below one (`scheduler.metric must ...`)
        return name in VALID_KEYS or name.split(".")[0] in model.model_fields

    return _validation.format_validation_error(
        err, model=model, is_key=is_key, source=source, prefix=prefix
    )


def trial_config_from_dict(
    tree: Mapping[str, Any], *, source: str | None = None, prefix: str = "", partial: bool = False
) -> TrialConfig:
    """Validate a nested dict into a TrialConfig; errors become ConfigError. `partial`: a study's
    base, which need not be a whole intervention yet (`_check_intervention`)."""
    if not isinstance(tree, Mapping):
        raise ConfigError(
            f"a trial config must be a mapping of sections, but got {type(tree).__name__}",
            source=source,
        )
    tree = lists_to_tuples(tree)
    try:
        cfg = TrialConfig.model_validate(tree, context={"partial": partial})
    except pydantic.ValidationError as e:
        raise format_validation_error(e, source=source, prefix=prefix) from None
    check_limits(cfg.flat(), TRIAL_LIMITS, source=source, prefix=prefix)
    return cfg


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
        raise ConfigError(
            f"expected a mapping of sections, got {type(tree).__name__}", source=source
        )
    if not isinstance(overrides, Mapping):
        overrides = dict(parse_assignment(o) for o in overrides)
    if overrides:
        tree = apply_overrides(tree, overrides)
        source = f"{source} (with --set {', '.join(overrides)})"
    return trial_config_from_dict(tree, source=source)


def checkpoint_file(path: str | Path) -> Path | None:
    """The checkpoint file PATH names: PATH itself when it is a file, else PATH/checkpoint.pt or
    PATH/checkpoint/checkpoint.pt (a trial's output folder), whichever exists; None if none."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / CHECKPOINT_FILE, path / CHECKPOINT_DIR / CHECKPOINT_FILE):
        if candidate.is_file():
            return candidate
    return None


def fork_checkpoint(cfg: TrialConfig, *, source: str | None, prefix: str = "") -> Path | None:
    """The checkpoint file `train.init_from` forks from (None without one).

    Raises:
        ConfigError: naming `train.init_from` when it names no checkpoint.
    """
    given = cfg.train.init_from
    if given is None:
        return None
    found = checkpoint_file(given)
    if found is None:
        raise ConfigError(
            f"key '{prefix}train.init_from': no checkpoint at {given!r} (expected a "
            f"checkpoint file, or a folder holding {CHECKPOINT_FILE} or "
            f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE})",
            source=source,
            key=prefix + "train.init_from",
        )
    return found
