"""The spec layer: typed trial configs and study specs, read from YAML and validated up front.

Every bad input raises `ConfigError` (exit status 2 at the command line), naming the file, the
dotted key, what was expected and what was given. Torch- and Ray-free, so validating is fast.

Import from here, not from the modules, which split the layer by job:

    trial       the task sections, TrialConfig and its cross-field checks, loading and --set
    sections    the other trial config sections (network, partition, mi, critic, optim, ...)
    studyspec   the study spec (search, sampler, objectives, budget) and `load_study`
    design      what a design can conclude: the timing power warning
    limits      size limits of configs and specs, the study-name rule
    storage     checking an Optuna storage URL without connecting
    _keys, _validation, _yaml, _errors   dotted keys, pydantic errors, the bounded YAML reader
"""

from __future__ import annotations

from study.spec._errors import ConfigError, short_repr
from study.spec._keys import check_limits, deep_merge, flatten, parse_assignment
from study.spec._yaml import read_yaml
from study.spec.design import timing_power_warning
from study.spec.limits import (
    MAX_GRID,
    MAX_NAME,
    NAME_PATTERN,
    SPEC_LIMITS,
    TRIAL_LIMITS,
    check_name,
)
from study.spec.sections import (
    CriticConfig,
    EmergenceConfig,
    HeldoutConfig,
    InterventionConfig,
    MIConfig,
    NetOptimConfig,
    NetworkConfig,
    OptimizerConfig,
    PartitionConfig,
    StructurePenaltyConfig,
    TrainConfig,
)
from study.spec.storage import check_storage_url
from study.spec.studyspec import (
    SUMMARY_METRICS,
    CleanPartnerWarning,
    ObjectiveSpec,
    ParamSpec,
    ResourcesSpec,
    SamplerSpec,
    SchedulerSpec,
    Study,
    StudySpec,
    load_study,
    parse_constraint,
    point_tree,
)
from study.spec.trial import (
    TASK_SECTIONS,
    VALID_KEYS,
    ChaosConfig,
    TaskConfig,
    TaskSettings,
    TrialConfig,
    WorkingMemoryConfig,
    apply_overrides,
    checkpoint_file,
    fork_checkpoint,
    format_validation_error,
    load_trial_config,
    trial_config_from_dict,
)

__all__ = [
    # errors and the machinery callers use
    "ConfigError",
    "short_repr",
    "flatten",
    "parse_assignment",
    "apply_overrides",
    "deep_merge",
    "read_yaml",
    "format_validation_error",
    "check_limits",
    # the trial config
    "TrialConfig",
    "TaskConfig",
    "TaskSettings",
    "TASK_SECTIONS",
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
    "EmergenceConfig",
    "InterventionConfig",
    "StructurePenaltyConfig",
    "VALID_KEYS",
    "load_trial_config",
    "trial_config_from_dict",
    "checkpoint_file",
    "fork_checkpoint",
    # the study spec
    "StudySpec",
    "ParamSpec",
    "SamplerSpec",
    "ObjectiveSpec",
    "SchedulerSpec",
    "ResourcesSpec",
    "Study",
    "load_study",
    "parse_constraint",
    "point_tree",
    "CleanPartnerWarning",
    "SUMMARY_METRICS",
    # limits, names, storage
    "TRIAL_LIMITS",
    "SPEC_LIMITS",
    "NAME_PATTERN",
    "MAX_NAME",
    "MAX_GRID",
    "check_name",
    "check_storage_url",
    "timing_power_warning",
]
