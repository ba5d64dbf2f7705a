"""Size limits of configs and specs, and the study-name rule.

Bounds checked after the schema (by `check_limits` in `study.spec._keys`): values beyond them are
typos or attacks, not studies. The tables sit apart from the schema classes, so that adding a key
never has to touch them. Torch-free, like all of `study.spec`.
"""

from __future__ import annotations

import re

from study.spec._errors import ConfigError, short_repr
from study.spec._keys import SEED_MAX

__all__ = ["NAME_PATTERN", "MAX_NAME", "MAX_GRID", "check_name", "TRIAL_LIMITS", "SPEC_LIMITS"]

# Study names (spec `name`, `study train --name`): one path component of STUDY_HOME and an MLflow
# experiment name. Short enough that `<name>-smoke` or `<name>-YYYYmmdd-HHMMSS` (--fresh) stays
# far below the 255-byte file-name limit, and no '/', '..' or leading '.'/'-'.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_NAME = 100
MAX_GRID = 100_000  # grid points of one study (and values of one searched key)


def check_name(name: str, *, source: str, key: str = "name") -> str:
    """The study-name rule (NAME_PATTERN, at most MAX_NAME characters); ConfigError if broken."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name) or len(name) > MAX_NAME:
        raise ConfigError(
            f"key '{key}': a study name is 1-{MAX_NAME} letters, digits, '_', '.' "
            f"or '-', starting with a letter or digit, but got {short_repr(name)}",
            source=source,
            key=key,
        )
    return name


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
    "train.dense_until": (0, 100_000_000),
    "train.dense_every": (1, 100_000_000),
    "train.lesion_every": (0, 100_000_000),
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
