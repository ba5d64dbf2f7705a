"""Ray Tune side of the service, driver half: spec → OptunaSearch/ASHA/Tuner wiring, resume.

`run_study(study)` takes a spec validated by `config.load_study` (and `check_search`), sets up
everything that can fail (search space, sampler, scheduler, Optuna storage, Ray: a cluster when
RAY_ADDRESS / --address is given, else embedded) and only then opens the MLflow study run, which
it closes on every exit path. Each step is a function of its own below, in the order
`run_study` calls them. The trial-process half (the trainable) is `study.service.worker`; its
public names are re-exported here. Ray API names follow docs/stack.md §0.1 (ray.tune.* only inside
trainables). Ray and Optuna are imported inside the steps that use them: `python -m study
validate` imports this module for `check_search` and must stay light.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.contract import settings
from study.contract.params import PARAM_ARM
from study.contract.tags import TAG_ARMS
from study.contract.text import redact_url
from study.core.tasks import task_metric
from study.service.tracking import (
    TAG_COMMIT,
    TAG_OBJECTIVES,
    TAG_STATUS,
    TAG_SWEPT,
    TAG_TASK,
    TAG_TRIAL,
    TAG_VERSIONS,
    TRIALS_VIEW,
    StudyTracker,
    default_optuna_storage,
    default_tracking_uri,
    git_commit,
    secure_store,
    study_home,
    versions,
)
from study.service.worker import (
    StudyContext,
    objective_keys,
    objective_values,
    sweep_work_dirs,
    trial,
)
from study.spec import ConfigError, Study, TrialConfig, parse_constraint

__all__ = [
    "StudyContext",
    "trial",
    "objective_values",
    "run_study",
    "study_paths",
    "check_search",
    "sweep_work_dirs",
    "best_trials",
    "format_outcome",
    "StudyOutcome",
]

log = logging.getLogger("study.service.driver")


def study_paths(name: str, home: Path | None = None) -> dict[str, Path]:
    """Where a study's files live under STUDY_HOME."""
    home = home or study_home()
    return {
        "home": home,
        "ray": home / "ray",
        "experiment": home / "ray" / name,
        "artifacts": home / "mlartifacts",
        "reports": home / "reports" / name,
        "trials": home / "trials" / name,
    }


# ----------------------------------------------------------------------------------------------
# Search


def check_search(study: Study) -> tuple[dict[str, Any], Any]:
    """The Optuna search space and sampler of a study, built without a storage or a study, so
    that `validate` refuses what Optuna would refuse at run time.

    Raises:
        ConfigError: naming the spec and the searched key Optuna rejected.
    """
    space = {}
    if study.spec.arms:  # the arm is one more categorical dimension (a grid: validated)
        import optuna

        space[PARAM_ARM] = optuna.distributions.CategoricalDistribution(list(study.spec.arms))
    for key, p in study.spec.search.items():
        try:
            space[key] = _distribution(p)
        except ValueError as e:
            raise ConfigError(
                f"key 'search.{key}': {' '.join(str(e).split())}",
                source=str(study.path),
                key=f"search.{key}",
            ) from None
    try:
        sampler = _sampler(study)
    except ValueError as e:
        raise ConfigError(
            f"key 'sampler': {' '.join(str(e).split())}", source=str(study.path), key="sampler"
        ) from None
    return space, sampler


def _distribution(p):
    import optuna

    if p.type == "categorical":
        return optuna.distributions.CategoricalDistribution(list(p.values))
    if p.type == "int":
        return optuna.distributions.IntDistribution(
            int(p.low), int(p.high), log=p.log, step=int(p.step or 1)
        )
    return optuna.distributions.FloatDistribution(p.low, p.high, log=p.log, step=p.step)


def _sampler(study: Study):
    import optuna

    s = study.spec.sampler
    if s.name == "grid":
        return optuna.samplers.GridSampler(study.spec.grid_values(), seed=s.seed)
    if s.name == "qmc":
        return optuna.samplers.QMCSampler(seed=s.seed, scramble=True)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.name == "gp":
        kw = {"n_startup_trials": s.n_startup_trials} if s.n_startup_trials is not None else {}
        return optuna.samplers.GPSampler(seed=s.seed, **kw)
    if s.name == "nsga2":
        kw = {"population_size": s.population_size} if s.population_size else {}
        return optuna.samplers.NSGAIISampler(seed=s.seed, **kw)
    kw = {"n_startup_trials": s.n_startup_trials} if s.n_startup_trials is not None else {}
    return optuna.samplers.TPESampler(seed=s.seed, **kw)


@dataclass
class StudyOutcome:
    """What `run_study` returns: where the study lives, how its trials went, the best ones."""

    name: str
    experiment_path: Path
    tracking_uri: str
    optuna_storage: str
    n_trials: int
    n_errors: int
    best: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False
    experiment_id: str = ""


def run_study(
    study: Study,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    fresh: bool = False,
    verbose: int = 1,
) -> StudyOutcome:
    """Run (or resume) a study with Ray Tune + OptunaSearch, tracked in MLflow.

    Args:
        study: a validated study (config.load_study).
        address: a Ray cluster address; default RAY_ADDRESS, else an embedded local Ray.
        num_cpus, num_gpus: resources of an embedded Ray (ignored when connecting).
        fresh: start over under a new name instead of resuming a study of the same name.
    """
    spec = study.spec
    name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}" if fresh else spec.name
    home = study_home()
    paths = study_paths(name, home)
    base_cfg = study.base_config()
    storage_url = spec.storage or default_optuna_storage(home)
    # -- set-up: everything that can fail, before the MLflow study run exists -------------------
    space, sampler = check_search(study)
    scheduler = _scheduler(study, base_cfg)
    for key in ("home", "ray", "artifacts"):
        paths[key].mkdir(parents=True, exist_ok=True)
    storage = _open_storage(storage_url)
    _init_ray(address, num_cpus, num_gpus, verbose)
    # -- the study run: opened now, closed on every path below ---------------------------------
    tracker = StudyTracker(default_tracking_uri(home), name, artifact_root=paths["artifacts"])
    parent = _start_study_run(tracker, study, name, base_cfg)
    ctx = _study_context(study, name, home, tracker, parent, base_cfg)
    status, message, reasons = "finished", "", {}
    try:
        fn = _trainable(study, ctx)

        def new_tuner():  # only when there is nothing to resume
            return _tuner(
                study,
                fn,
                _search(study, name, space, sampler, storage),
                scheduler,
                _run_config(study, name, paths, _progress(study, base_cfg), verbose),
            )

        tuner, resumed = _restore_or_new(paths["experiment"], fn, new_tuner)
        grid = tuner.fit()
        reasons = _stop_reasons(grid, base_cfg.train.epochs)
    except KeyboardInterrupt:
        status, message = "stopped", "stopped: interrupted (Ctrl-C)"
        raise
    except BaseException as e:
        status, message = "failed", redact_url(f"{type(e).__name__}: {e}")
        raise
    finally:
        _close_study(tracker, paths["trials"], reasons, status, message)
    outcome = StudyOutcome(
        name,
        paths["experiment"],
        ctx.tracking_uri,
        storage_url,
        n_trials=len(grid),
        n_errors=grid.num_errors,
        resumed=resumed,
        experiment_id=tracker.experiment_id,
    )
    outcome.best = best_trials(tracker, _swept(study), ctx.objectives, spec.constraints)
    return outcome


def _swept(study: Study) -> list[str]:
    """The dimensions of the search: the searched keys, and `arm` in a study with arms."""
    return [*study.spec.search, *([PARAM_ARM] if study.spec.arms else [])]


def _objectives(study: Study) -> tuple[tuple[str, str], ...]:
    """(metric, direction) of each objective of the spec."""
    return tuple((o.metric, o.direction) for o in study.spec.objectives)


def _modes(study: Study) -> list[str]:
    """Tune's mode ("max"/"min") of each objective, in the order of `objective_keys`."""
    return ["max" if d == "maximize" else "min" for _, d in _objectives(study)]


def _scheduler(study: Study, base_cfg: TrialConfig):
    """The spec's ASHA scheduler (None without one), on the always-present result key of the
    objective it names (default: the first)."""
    from ray.tune.schedulers import ASHAScheduler

    sch = study.spec.scheduler
    if sch is None:
        return None
    # each evaluation is one Tune result, the dense ones too (the training layer loads torch,
    # so it is imported here, on the way to running, not when a spec is checked)
    from study.training.schedule import EvalSchedule

    metrics = [m for m, _ in _objectives(study)]
    i = metrics.index(sch.metric) if sch.metric is not None else 0  # validated: an objective
    t = base_cfg.train
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=objective_keys(len(metrics))[i],
        mode=_modes(study)[i],
        max_t=t.epochs // t.eval_every + 2 + EvalSchedule.of(t).dense_extra(),
        grace_period=sch.grace_period,
        reduction_factor=sch.reduction_factor,
    )


def _open_storage(url: str):
    """The Optuna RDB storage at URL (made private when it is a SQLite file).

    Raises:
        RuntimeError: naming the (redacted) URL when it cannot be opened.
    """
    import optuna

    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception as e:
        raise RuntimeError(
            f"cannot open the Optuna storage {redact_url(url)}: "
            f"{redact_url(' '.join(str(e).split())[:300])}"
        ) from None
    secure_store(url)
    return storage


def _init_ray(
    address: str | None, num_cpus: int | None, num_gpus: int | None, verbose: int
) -> None:
    """Connect to the cluster at ADDRESS (default RAY_ADDRESS), else start an embedded Ray;
    nothing when Ray is already initialised (tests, notebooks)."""
    import ray

    # the legacy output engine honours CLIReporter's columns (trial, params, epoch, accuracy,
    # q_func, status); the new one prints every result in full
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray starts its worker processes at nice 15, so on a shared machine anything else (even a
    # `nice -n 19` job) takes CPU from the trials; an embedded study runs its trials at the
    # driver's priority instead (measured: 2 trials at nice 15 beside one nice-19 pytest got
    # ~45-50 % of a core each). Set RAY_worker_niceness yourself to keep Ray's default.
    os.environ.setdefault("RAY_worker_niceness", "0")
    address = address or settings.ray_address()
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=verbose > 0)
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
            log_to_driver=verbose > 0,
        )


def _start_study_run(tracker: StudyTracker, study: Study, name: str, base_cfg: TrialConfig) -> str:
    """Open (or, on resume, reopen) the study's parent run; returns its id."""
    spec = study.spec
    arms = {TAG_ARMS: json.dumps({"control": spec.control_arm, "arms": spec.arms})}
    return tracker.start(
        tags={
            TAG_SWEPT: json.dumps(_swept(study)),
            TAG_TASK: base_cfg.task.name,
            TAG_OBJECTIVES: json.dumps([o.model_dump() for o in spec.objectives]),
            TAG_COMMIT: git_commit(),
            TAG_VERSIONS: json.dumps(versions()),
            **(arms if spec.arms else {}),
        },
        params={
            "spec.name": name,
            "spec.sampler": spec.sampler.name,
            "spec.trials": spec.n_trials(),
            "spec.concurrency": spec.concurrency,
            "spec.cpu": spec.resources.cpu,
            "spec.gpu": spec.resources.gpu,
        },
        spec_text=study.text,
    )


def _study_context(
    study: Study, name: str, home: Path, tracker: StudyTracker, parent: str, base_cfg: TrialConfig
) -> StudyContext:
    """The constants every trial of the study needs."""
    spec = study.spec
    return StudyContext(
        name=name,
        base=study.base,
        spec_path=str(study.path),
        objectives=_objectives(study),
        constraints=tuple(spec.constraints),
        tracking_uri=tracker.uri,
        experiment_id=tracker.experiment_id,
        parent_run_id=parent,
        home=str(home),
        cpus_per_trial=spec.resources.cpu,
        task=base_cfg.task.name,
        arms=json.loads(json.dumps(dict(spec.arms))),
    )


def _trainable(study: Study, ctx: StudyContext):
    """`worker.trial` with the study context bound and the spec's resources per trial."""
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(trial, ctx=ctx),
        {"cpu": study.spec.resources.cpu, "gpu": study.spec.resources.gpu},
    )


def _search(study: Study, name: str, space, sampler, storage):
    """OptunaSearch over SPACE with the spec's sampler, persisted in STORAGE as study NAME."""
    from ray.tune.search.optuna import OptunaSearch

    keys, modes = objective_keys(len(study.spec.objectives)), _modes(study)
    return OptunaSearch(
        space=space,
        metric=keys[0] if len(keys) == 1 else keys,
        mode=modes[0] if len(modes) == 1 else modes,
        sampler=sampler,
        study_name=name,
        storage=storage,
    )


def _progress(study: Study, base_cfg: TrialConfig):
    """The driver's live table: swept values, epoch, task metric, MI, q_func, q_struct and
    each objective's raw metric (not its constraint-penalised value)."""
    from ray import tune

    scored = task_metric(base_cfg)
    shown = {
        "epoch": "epoch",
        scored: scored[:3],
        "mi": "mi",
        "q_func": "q_func",
        "q_struct": "q_struct",
    }
    for metric, _ in _objectives(study):
        shown.setdefault(metric, metric)
    return tune.CLIReporter(
        metric_columns=shown,
        parameter_columns={k: k for k in _swept(study)},
        max_report_frequency=15,
        sort_by_metric=False,
    )


def _run_config(study: Study, name: str, paths: dict[str, Path], progress, verbose: int):
    """Tune's RunConfig: results under STUDY_HOME/ray/NAME, retries, two checkpoints kept."""
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=str(paths["ray"]),
        failure_config=tune.FailureConfig(max_failures=study.spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        progress_reporter=progress,
        verbose=verbose,
    )


def _tuner(study: Study, fn, search, scheduler, run_config):
    """A new Tuner for the whole study. Trial processes are reused (`reuse_actors`): a trial
    that ends hands its process, with torch, MLflow and the training stack imported, to the
    next one (docs/stack.md §2.5); a trial that errored takes its process with it."""
    from ray import tune

    spec = study.spec
    return tune.Tuner(
        fn,
        run_config=run_config,
        tune_config=tune.TuneConfig(
            search_alg=search,
            scheduler=scheduler,
            num_samples=spec.n_trials(),
            max_concurrent_trials=spec.concurrency,
            reuse_actors=True,
        ),
    )


def _restore_or_new(experiment: Path, fn, new) -> tuple[Any, bool]:
    """The Tuner restored from EXPERIMENT (errored trials resumed) when Tune can restore it,
    else `new()`; and whether it was restored.

    Raises:
        RuntimeError: the saved state cannot be restored (e.g. written by an incompatible
            version); the message says to start over with --fresh.
    """
    from ray import tune

    if not tune.Tuner.can_restore(str(experiment)):
        return new(), False
    log.info("resuming study %s from %s", experiment.name, experiment)
    try:
        return tune.Tuner.restore(str(experiment), trainable=fn, resume_errored=True), True
    except ValueError as e:  # e.g. written by an incompatible version of mistudy
        raise RuntimeError(
            f"cannot resume study '{experiment.name}' from {experiment} ({e}); "
            f"run it with --fresh to start over under a new name"
        ) from e


def _stop_reasons(grid, epochs: int) -> dict[str, str]:
    """trial id → why it ended early, for the trials a scheduler stopped (no error, not
    diverged, fewer than EPOCHS epochs); the driver writes it on their runs."""
    reasons = {}
    for res in grid:
        m = res.metrics or {}
        if res.error is None and m.get("epoch", 0) < epochs and not m.get("diverged"):
            reasons[m.get("trial_id", "")] = (
                f"stopped by the scheduler after epoch {m.get('epoch')}"
            )
    return reasons


def _close_study(
    tracker: StudyTracker, trials_dir: Path, reasons: dict[str, str], status: str, message: str
) -> None:
    """End the study: close the runs of trials that are gone, log the provisional summaries of
    trials that never finished, sweep stale scratch folders, end the study run as STATUS
    (always, even when one of the others fails)."""
    try:
        tracker.close_orphans(reasons=reasons)
        tracker.complete_summaries(trials_dir)
        sweep_work_dirs()
    finally:
        tracker.finish(status, message)


def best_trials(tracker: StudyTracker, swept, objectives, constraints, k: int = 5) -> list[dict]:
    """The top trials by their raw summary metrics in MLflow (feasible ones first); for two
    objectives, the Pareto front of the feasible trials."""
    rows = []
    for run in tracker.trial_runs():
        m, params = run.data.metrics, run.data.params
        row = {
            "trial": run.data.tags.get(TAG_TRIAL, run.info.run_name),
            **{key: params.get(key) for key in swept},
            **{metric: m.get(metric, math.nan) for metric, _ in objectives},
            "status": run.data.tags.get(TAG_STATUS, ""),
        }
        feasible = all(
            math.isfinite(m.get(c, math.nan)) and (m[c] >= b if op == ">=" else m[c] <= b)
            for c, op, b in map(parse_constraint, constraints)
        )
        row["feasible"] = feasible
        rows.append(row)
    signs = [1.0 if d == "maximize" else -1.0 for _, d in objectives]

    def key(r):
        vals = [
            s * r[metric] if math.isfinite(r[metric]) else -math.inf
            for s, (metric, _) in zip(signs, objectives)
        ]
        return (r["feasible"], *vals)

    rows.sort(key=key, reverse=True)
    chosen = rows[:k]
    if len(objectives) > 1:
        front = []
        for r in (r for r in rows if r["feasible"]):
            v = [s * r[metric] for s, (metric, _) in zip(signs, objectives)]
            dominated = any(
                all(a >= b for a, b in zip(w, v)) and w != v
                for w in (
                    [s * f[metric] for s, (metric, _) in zip(signs, objectives)]
                    for f in rows
                    if f["feasible"]
                )
            )
            if not dominated:
                front.append(r)
        chosen = front
    if not constraints:
        for r in chosen:
            r.pop("feasible")
    return chosen


def format_outcome(outcome: StudyOutcome) -> str:
    lines = [
        f"study {outcome.name}: {outcome.n_trials} trials"
        + (f", {outcome.n_errors} errored" if outcome.n_errors else "")
        + (" (resumed)" if outcome.resumed else "")
    ]
    if outcome.best:
        keys = list(outcome.best[0])
        widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in outcome.best)) for k in keys}
        lines.append("best trials:")
        lines.append("  " + "  ".join(k.ljust(widths[k]) for k in keys))
        for r in outcome.best:
            lines.append("  " + "  ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys))
    uri = redact_url(outcome.tracking_uri)
    # MLflow 3.17 opens experiments in its GenAI view unless the link asks for the training one
    trials = (
        f"/#/experiments/{outcome.experiment_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={TRIALS_VIEW}"
    )
    lines += [
        f"browse runs:   mlflow ui --backend-store-uri {uri}, then open "
        f"http://127.0.0.1:5000{trials}"
        if uri.startswith("sqlite")
        else f"browse runs:   open {uri.rstrip('/')}{trials}",
        f"make a report: python -m analysis report {outcome.name}",
        f"optuna study:  {redact_url(outcome.optuna_storage)} (study '{outcome.name}')",
    ]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
