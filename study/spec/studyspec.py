"""The study spec (search_spaces/*.yaml): what is searched, how it is sampled, the objectives,
the budget, the arms; and `load_study`, which validates a spec and every point of its search
space before anything starts.

Arms: a study may declare named arms, each a set of dotted trial config overrides (e.g. an
intervention), and the control arm the others are compared with. The arm is one more dimension
of the grid (Tune config key, trial param and tag `arm`), so every cell of the other searched
keys runs every arm with the same seeds, and analysis pairs the arms of a cell by seed.

Every bad spec raises `ConfigError` naming the spec file and the key. Callers import from
`study.spec`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import Field, model_validator

from study.contract import names
from study.contract.params import PARAM_ARM
from study.spec._errors import ConfigError, short_repr
from study.spec._keys import (
    check_limits,
    closest_key,
    deep_merge,
    flatten,
    lists_to_tuples,
    tuples_to_lists,
)
from study.spec._validation import Strict
from study.spec._yaml import read_yaml, read_yaml_text
from study.spec.limits import MAX_GRID, MAX_NAME, NAME_PATTERN, SPEC_LIMITS
from study.spec.storage import check_storage_url
from study.spec.trial import (
    VALID_KEYS,
    TrialConfig,
    apply_overrides,
    fork_checkpoint,
    format_validation_error,
    trial_config_from_dict,
)

__all__ = [
    "ARM_PATTERN",
    "point_tree",
    "ParamSpec",
    "SamplerSpec",
    "ObjectiveSpec",
    "SchedulerSpec",
    "ResourcesSpec",
    "SUMMARY_METRICS",
    "StudySpec",
    "parse_constraint",
    "Study",
    "load_study",
    "CleanPartnerWarning",
]


class ParamSpec(Strict):
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
            raise ValueError(
                f"a {self.type} range needs low < high, but got low={self.low}, high={self.high}"
            )
        if self.log and self.low <= 0:
            raise ValueError(
                f"a log range needs low > 0, but got low={self.low}; "
                f"to include 0, list the values instead"
            )
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


class SamplerSpec(Strict):
    name: Literal["grid", "qmc", "tpe", "gp", "nsga2", "random"] = "tpe"
    seed: int = 0
    n_startup_trials: int | None = Field(None, ge=0)  # tpe / gp
    population_size: int | None = Field(None, ge=2)  # nsga2


class ObjectiveSpec(Strict):
    metric: str  # a trial summary metric, e.g. final.q_func
    direction: Literal["maximize", "minimize"] = "maximize"


class SchedulerSpec(Strict):
    name: Literal["asha"] = "asha"
    grace_period: int = Field(4, ge=1)  # evaluations before a trial may be stopped
    reduction_factor: float = Field(3, gt=1)
    metric: str | None = None  # default: the first objective's metric, with its direction


class ResourcesSpec(Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


# what objectives and constraints may name; derived from the one list of metric names
SUMMARY_METRICS = names.SUMMARY_METRICS

# trial config keys that are sections (`mi`, `task.wm`): a study searches leaves only
_SECTIONS = tuple(k for k in VALID_KEYS if any(v.startswith(k + ".") for v in VALID_KEYS))

# an arm's name: a short identifier (a param value, a tag value, a label in the report)
ARM_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
MAX_ARM_NAME = 40
# what arms may not set: the seeds they are paired by
_NOT_IN_ARMS = ("seed", "seeds")
# a trial config key that holds a path, resolved against the spec file's folder
_PATH_KEY = "train.init_from"


class StudySpec(Strict):
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
    # named arms: dotted trial config overrides each; a grid dimension, paired by seed per cell
    arms: dict[str, dict[str, Any]] = {}
    control_arm: str | None = None  # the arm the others are compared with (with `arms`)

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if not 1 <= len(self.objectives) <= 2:
            raise ValueError(
                f"objectives must list 1 or 2 metrics, but got {len(self.objectives)}"
            )
        for o in self.objectives:
            if o.metric not in SUMMARY_METRICS:
                guess = closest_key(o.metric, SUMMARY_METRICS)
                hint = f" (did you mean '{guess}'?)" if guess else ""
                raise ValueError(
                    f"objectives: '{o.metric}' is not a trial summary metric"
                    f"{hint}; allowed: {', '.join(SUMMARY_METRICS)}"
                )
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
                raise ValueError(
                    f"sampler 'grid' needs a finite list (values, or int ranges or "
                    f"a step) for every searched key, but these are continuous: "
                    f"{', '.join(bad)}"
                )
            if self.grid_size() > MAX_GRID:
                sizes = {k: p.grid_len() for k, p in self.search.items()}
                raise ValueError(
                    f"search: the grid has {math.prod(sizes.values())} points "
                    f"({', '.join(f'{k}: {n} values' for k, n in sizes.items())}), "
                    f"more than the {MAX_GRID} allowed"
                )
        if (
            self.scheduler is not None
            and len(self.objectives) > 1
            and self.scheduler.metric is None
        ):
            raise ValueError(
                "scheduler.metric must name the objective ASHA uses when there are two objectives"
            )
        if self.scheduler is not None and self.scheduler.metric is not None:
            allowed = [o.metric for o in self.objectives]
            if self.scheduler.metric not in allowed:
                raise ValueError(
                    f"scheduler.metric must be one of the objectives' metrics "
                    f"({', '.join(allowed)}), which every trial reports at every "
                    f"evaluation, but got {self.scheduler.metric!r}"
                )
        self._check_arms()
        return self

    def _check_arms(self) -> None:
        """Arms come with a control arm among them, have short names and run on a grid."""
        if not self.arms:
            if self.control_arm is not None:
                raise ValueError(
                    f"control_arm names an arm, but the spec declares no arms (got "
                    f"control_arm={self.control_arm!r}); declare them under 'arms'"
                )
            return
        bad = [a for a in self.arms if not re.fullmatch(ARM_PATTERN, a) or len(a) > MAX_ARM_NAME]
        if bad:
            raise ValueError(
                f"arms: an arm's name is 1-{MAX_ARM_NAME} letters, digits or '_', starting "
                f"with a letter, but got {bad[0]!r}"
            )
        if len(self.arms) < 2:
            raise ValueError(
                f"arms: a study with arms needs at least two (the control and one to compare "
                f"with it), but got {list(self.arms)}"
            )
        if self.control_arm is None or self.control_arm not in self.arms:
            raise ValueError(
                f"control_arm must name one of the arms ({', '.join(self.arms)}), the one the "
                f"others are compared with, but got {self.control_arm!r}"
            )
        if self.sampler.name != "grid":
            raise ValueError(
                f"arms: a study with arms must use sampler 'grid' (every arm in every cell, "
                f"paired by seed), but got sampler {self.sampler.name!r}"
            )

    def grid_size(self) -> int:
        """Points of the full grid, arms included, computed without building it (saturates
        above MAX_GRID)."""
        size = max(1, len(self.arms))
        for p in self.search.values():
            size = min(size * (p.grid_len() or 0), MAX_GRID + 1)
        return size

    def grid_values(self) -> dict[str, list[Any]]:
        """Each grid dimension's values: every searched key's, then `arm` (with arms)."""
        grid = {k: p.grid() for k, p in self.search.items()}
        if self.arms:
            grid[PARAM_ARM] = list(self.arms)
        return grid

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
        raise ValueError(
            f"constraint must look like '<summary metric> >= <number>' (or <=), but got {text!r}"
        )
    return m.group(1), m.group(2), float(m.group(3))


class Study:
    """A validated study: the spec, the resolved base trial config and where it came from."""

    def __init__(self, spec: StudySpec, base: dict[str, Any], path: Path, text: str):
        self.spec, self.base, self.path, self.text = spec, base, path, text
        self.points: list[dict[str, Any]] = []  # the search points load_study validated

    @property
    def name(self) -> str:
        return self.spec.name

    def trial_config(self, params: Mapping[str, Any]) -> TrialConfig:
        """The trial config for one point of the search space (dotted keys, and `arm` in a
        study with arms: that arm's overrides, then the searched values)."""
        return trial_config_from_dict(self.trial_tree(params), source=str(self.path))

    def base_config(self) -> TrialConfig:
        """The base trial config, without a search point (its intervention may be incomplete:
        the searched keys or the arms complete it)."""
        return trial_config_from_dict(self.base, source=str(self.path), partial=True)

    def trial_tree(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The nested trial config of one point (not validated): base, arm, searched values."""
        return point_tree(self.base, self.spec.arms, params, source=str(self.path))


def point_tree(
    base: Mapping[str, Any],
    arms: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
    *,
    source: str,
) -> dict[str, Any]:
    """The nested trial config of a search point: BASE, then the overrides of the point's arm
    (`params["arm"]`, when ARMS are declared; none without one), then its other dotted keys."""
    params = dict(params)
    overrides: dict[str, Any] = {}
    if arms and PARAM_ARM in params:
        arm = params.pop(PARAM_ARM)
        if arm not in arms:
            raise ConfigError(
                f"key '{PARAM_ARM}': expected one of the arms ({', '.join(arms)}), but got "
                f"{short_repr(arm)}",
                source=source,
                key=PARAM_ARM,
            )
        overrides.update(arms[arm])
    overrides.update(params)
    return apply_overrides(base, overrides, source=source)


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
    spec = _resolve_paths(spec, path.parent)
    tree = _trial_tree(spec, path)
    _check_search_keys(spec, source)
    _check_arm_keys(spec, source)
    fork_checkpoint(
        trial_config_from_dict(tree, source=source, partial=True), source=source, prefix="trial."
    )
    study = Study(spec, json.loads(json.dumps(tree)), path, text)
    points = _check_points(study, source)
    study.points = points
    _warn_clean_partner_sweep(study, points, source)
    return study


def _read_spec(path: Path) -> tuple[StudySpec, str]:
    """The spec file validated against StudySpec, its size limits and storage URL; and its text."""
    source = str(path)
    raw, text = read_yaml_text(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"a study spec must be a mapping, but got {type(raw).__name__}", source=source
        )
    try:
        spec = StudySpec.model_validate(lists_to_tuples(raw))
    except pydantic.ValidationError as e:
        raise format_validation_error(e, model=StudySpec, source=source) from None
    check_limits(flatten(spec.model_dump()), SPEC_LIMITS, source=source)
    if spec.storage is not None:
        check_storage_url(spec.storage, source=source, key="storage")
    return spec, text


def _absolute(value: Any, root: Path) -> Any:
    """A path value made absolute against ROOT (None and absolute paths as they are)."""
    if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return str((root / value).resolve())
    if isinstance(value, str) and value:
        return str(Path(value).expanduser())
    return value


def _resolve_paths(spec: StudySpec, root: Path) -> StudySpec:
    """The spec with every `train.init_from` it gives (its trial overrides, arms and searched
    values) made absolute against the spec file's folder, as the trials run elsewhere."""
    trial = json.loads(json.dumps(tuples_to_lists(spec.trial)))
    if isinstance(trial.get("train"), dict) and "init_from" in trial["train"]:
        trial["train"]["init_from"] = _absolute(trial["train"]["init_from"], root)
    arms = {
        name: {k: (_absolute(v, root) if k == _PATH_KEY else v) for k, v in over.items()}
        for name, over in spec.arms.items()
    }
    search = dict(spec.search)
    if _PATH_KEY in search and search[_PATH_KEY].values is not None:
        p = search[_PATH_KEY]
        search[_PATH_KEY] = p.model_copy(
            update={"values": tuple(_absolute(v, root) for v in p.values)}
        )
    return spec.model_copy(
        update={"trial": lists_to_tuples(trial), "arms": arms, "search": search}
    )


def _trial_tree(spec: StudySpec, path: Path) -> dict[str, Any]:
    """The study's base trial config (nested): the `base` file (validated on its own), then the
    spec's `trial` overrides and `seeds`, validated together under the `trial.` prefix."""
    source = str(path)
    base: dict[str, Any] = {}
    if spec.base is not None:
        base_path = (path.parent / spec.base).resolve()
        if not base_path.is_file():
            raise ConfigError(
                f"key 'base': no such trial config file {spec.base!r} (looked in {path.parent})",
                source=source,
                key="base",
            )
        base = read_yaml(base_path)
        if not isinstance(base, Mapping):
            raise ConfigError(
                "key 'base': the base file must hold a mapping of sections",
                source=source,
                key="base",
            )
        trial_config_from_dict(base, source=str(base_path), partial=True)  # on its own
        train = base.get("train")
        if isinstance(train, Mapping) and train.get("init_from") is not None:
            base = deep_merge(
                base, {"train": {"init_from": _absolute(train["init_from"], path.parent)}}
            )
    tree = deep_merge(base, tuples_to_lists(spec.trial))
    if spec.seeds is not None:
        tree = deep_merge(tree, {"seeds": spec.seeds})
    trial_config_from_dict(tree, source=source, prefix="trial.", partial=True)
    return tree


def _check_search_keys(spec: StudySpec, source: str) -> None:
    """At least one searched key (or arms), and each a dotted trial config leaf (not a
    section)."""
    if not spec.search and not spec.arms:
        raise ConfigError(
            "key 'search': a study needs at least one searched key (e.g. "
            "search: {mi.weight: {values: [0.0, 0.1]}}); to train one config, use "
            "`python -m study train`",
            source=source,
            key="search",
        )
    for key in spec.search:
        if key not in VALID_KEYS or key in _SECTIONS:
            guess = closest_key(key, [k for k in VALID_KEYS if k not in _SECTIONS])
            hint = f" (did you mean '{guess}'?)" if guess else ""
            raise ConfigError(
                f"unknown key 'search.{key}'{hint}: searched keys are dotted trial "
                f"config keys such as mi.weight, partition.groups, network.hidden",
                source=source,
                key=f"search.{key}",
            )


def _check_arm_keys(spec: StudySpec, source: str) -> None:
    """Each arm's overrides are dotted trial config leaves, none of them searched or a seed."""
    leaves = [k for k in VALID_KEYS if k not in _SECTIONS]
    for arm, overrides in spec.arms.items():
        for key in overrides:
            where = f"arms.{arm}.{key}"
            if key not in leaves:
                guess = closest_key(key, leaves)
                hint = f" (did you mean '{guess}'?)" if guess else ""
                raise ConfigError(
                    f"unknown key '{where}'{hint}: an arm's overrides are dotted trial config "
                    f"keys such as intervention.at, intervention.mi_weight, mi.weight",
                    source=source,
                    key=where,
                )
            if key in _NOT_IN_ARMS:
                raise ConfigError(
                    f"key '{where}': arms are paired by seed, so they cannot set {key}; set it "
                    f"in the base trial or under 'seeds'",
                    source=source,
                    key=where,
                )
            if key in spec.search:
                raise ConfigError(
                    f"key '{where}': {key} is also searched; a key is either an arm's or a "
                    f"searched one",
                    source=source,
                    key=where,
                )


def _check_points(study: Study, source: str) -> list[dict[str, Any]]:
    """Validate the trial config of every point the search can take, and return the points:
    the whole grid (up to 5000 points), else each listed value or range end of one key at a time.
    """
    spec = study.spec
    points: list[dict[str, Any]]
    if spec.sampler.name == "grid" and spec.grid_size() <= 5000:
        grid = spec.grid_values()
        keys = list(grid)
        points = [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]
    else:
        points = [{k: v} for k, p in spec.search.items() for v in p.corners()]
    for point in points:
        try:
            fork_checkpoint(study.trial_config(point), source=source)
        except ConfigError as e:
            arm = point.get(PARAM_ARM) if spec.arms else None
            if arm is not None and (e.key in spec.arms[arm] or len(point) == 1):
                key = f"arms.{arm}.{e.key}" if e.key in spec.arms[arm] else f"arms.{arm}"
            else:
                key = f"search.{next(iter(point))}" if len(point) == 1 else "search"
            raise ConfigError(
                f"key '{key}': search point {short_repr(point)} gives an invalid "
                f"trial config: {e.detail}",
                source=source,
                key=key,
            ) from None
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
    swept = [
        k
        for k in ("partition.groups", "partition.sizes", "network.hidden")
        if k in study.spec.search
    ]
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
            CleanPartnerWarning,
            stacklevel=3,
        )
