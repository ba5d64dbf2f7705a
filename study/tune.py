"""Ray Tune side of the service: the trainable, the spec → OptunaSearch/ASHA/Tuner wiring, resume.

`run_study(study)` takes a spec validated by `config.load_study` (and `check_search`), sets up
everything that can fail (search space, sampler, scheduler, Optuna storage, Ray: a cluster when
RAY_ADDRESS / --address is given, else embedded) and only then opens the MLflow study run, which
it closes on every exit path. Ray API names follow reference/stack.md §0 (ray.tune.* only inside trainables).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from study.config import ConfigError, Study, TrialConfig, parse_constraint, redact_url
from study.tracking import (
    StudyTracker, TrialTracker, default_optuna_storage, default_tracking_uri, git_commit,
    secure_store, study_home, versions, TAG_COMMIT, TAG_OBJECTIVES, TAG_SWEPT, TAG_TASK,
    TAG_VERSIONS,
)
from study.tracking import TRIALS_VIEW, trial_run_name
from study.tasks import task_metric

__all__ = ["StudyContext", "trial", "objective_values", "run_study", "study_paths",
           "check_search", "sweep_work_dirs"]

WORK_PREFIX = "mistudy-"  # a trial's scratch folder: /tmp/mistudy-<trial id>-<pid>-XXXX

log = logging.getLogger("study.tune")

# an objective a trial never reached (diverged, or no evaluation): far below / above any real one
WORST = 1e6
# constraint-violating trials rank below every feasible one: objective ∓ PENALTY·(1 + violation)
PENALTY = 1e3


@dataclass(frozen=True)
class StudyContext:
    """Constants every trial of a study needs, shipped once through the object store."""

    name: str
    base: dict[str, Any]  # the base trial config (nested)
    spec_path: str
    objectives: tuple[tuple[str, str], ...]  # (metric, direction)
    constraints: tuple[str, ...]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    home: str
    cpus_per_trial: float
    task: str


def study_paths(name: str, home: Path | None = None) -> dict[str, Path]:
    home = home or study_home()
    return {"home": home, "ray": home / "ray", "experiment": home / "ray" / name,
            "artifacts": home / "mlartifacts", "reports": home / "reports" / name,
            "trials": home / "trials" / name}


# ----------------------------------------------------------------------------------------------
# Objectives


def objective_values(summary: Mapping[str, float], objectives, constraints, *,
                     diverged: bool = False) -> list[float]:
    """The value(s) reported to Optuna: the objective metrics, penalised when a constraint fails.

    Always finite (Optuna cannot `tell` NaN, stack.md §3.8): a missing metric or a diverged trial
    gets the worst value for its direction.
    """
    violation = 0.0
    for text in constraints:
        metric, op, bound = parse_constraint(text)
        value = summary.get(metric, math.nan)
        if not math.isfinite(value):
            violation += 1.0
        elif op == ">=" and value < bound:
            violation += bound - value
        elif op == "<=" and value > bound:
            violation += value - bound
    out = []
    for metric, direction in objectives:
        sign = 1.0 if direction == "maximize" else -1.0
        value = summary.get(metric, math.nan)
        if diverged or not math.isfinite(value):
            out.append(-sign * WORST)
            continue
        if violation > 0:
            value -= sign * PENALTY * (1.0 + violation)
        out.append(float(value))
    return out


def objective_keys(n: int) -> list[str]:
    return ["objective"] if n == 1 else [f"objective_{i}" for i in range(n)]


# ----------------------------------------------------------------------------------------------
# Trainable


class _TuneReporter:
    """Forwards each evaluation to MLflow and to Tune (with the checkpoint when one was written)."""

    def __init__(self, ctx: StudyContext, cfg: TrialConfig, tracker: TrialTracker,
                 out_dir: Path, history: list, seed_values: list[int]):
        self.ctx, self.cfg, self.tracker, self.out_dir = ctx, cfg, tracker, out_dir
        self.history = history  # full history, including what a resumed checkpoint held
        self.seed_values = seed_values

    def on_epoch(self, epoch: int) -> None:
        pass

    def snapshot(self, epoch: int, weights) -> None:
        from study.summary import write_snapshot

        path = write_snapshot(self.out_dir, epoch, weights)
        self.tracker.log_artifact(path, "weights")  # logged at once: survives a killed trial

    def report(self, record, checkpoint: Path | None) -> None:
        from ray import tune

        from study.summary import summarize

        self.history.append(record)
        means = {k: record.mean(k) for k in record.metrics}
        self.tracker.log_eval(record.epoch, means)
        summary = summarize(self.cfg, self.history, self.seed_values)
        if checkpoint is not None:
            # keep MLflow as current as the checkpoint: a trial that a scheduler stops (its
            # process is killed, no `finally` runs) still has its curves and provisional summary
            from study.summary import write_outputs

            outputs = write_outputs(self.out_dir, self.cfg, summary)
            self.tracker.log_progress(record.epoch, summary.metrics, outputs, self.out_dir)
        result = _tune_result(self.ctx, record.epoch, means, summary.metrics, diverged=False)
        result["node_id"] = _node_id()  # which Ray node ran this evaluation (result.json)
        ckpt = tune.Checkpoint.from_directory(str(checkpoint.parent)) if checkpoint else None
        tune.report(result, checkpoint=ckpt)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _tune_result(ctx: StudyContext, epoch: int, means: Mapping[str, float],
                 summary: Mapping[str, float], *, diverged: bool) -> dict[str, float]:
    result: dict[str, float] = {"epoch": epoch, "diverged": float(diverged)}
    result.update({k: (v if math.isfinite(v) else float("nan")) for k, v in means.items()})
    result.update({k: v for k, v in summary.items() if math.isfinite(v)})
    values = objective_values(summary, ctx.objectives, ctx.constraints, diverged=diverged)
    result.update(zip(objective_keys(len(values)), values))
    return result


def trial(config: dict[str, Any], ctx: StudyContext) -> None:
    """One trial: searched values (dotted keys) on top of the study's base config.

    Converts the Tune config once, strictly; opens (or, on resume, finds) the trial's MLflow run;
    trains; logs summary and artifacts; ends the run with the right status on every path.
    Exceptions are not swallowed, so Ray marks the trial ERROR (and retries it from its
    checkpoint up to `max_failures`).
    """
    import torch
    from ray import tune

    from study.config import apply_overrides, trial_config_from_dict
    from study.summary import summarize, write_outputs
    from study.train import CHECKPOINT_FILE, read_checkpoint, records_from_state, train

    for noisy in ("ray.tune", "ray.train"):  # per-checkpoint INFO lines drown the live table
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.umask(0o077)  # trial outputs and checkpoints: 0600 files, 0700 folders
    sweep_work_dirs()  # scratch folders of trials killed on this node (no `finally` ran)
    params = {k: v for k, v in config.items()}
    cfg = trial_config_from_dict(apply_overrides(ctx.base, params, source=ctx.spec_path),
                                 source=ctx.spec_path)
    if cfg.train.threads == 0:
        torch.set_num_threads(max(1, int(ctx.cpus_per_trial)))  # the CPUs Ray gave this trial
    trial_id = tune.get_context().get_trial_id()
    out_dir = Path(ctx.home) / "trials" / ctx.name / trial_id
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = TrialTracker(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id, trial_id,
                           study_name=ctx.name, task=ctx.task, params=cfg.flat(),
                           run_name=trial_run_name(trial_id, params))

    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{trial_id}-{os.getpid()}-"))
    resume_from = None
    history: list = []
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            resume_from = work / "resume" / CHECKPOINT_FILE
            resume_from.parent.mkdir(parents=True)
            shutil.copy(Path(d) / CHECKPOINT_FILE, resume_from)
    seed_values = [cfg.seed + i for i in range(cfg.seeds)]
    reporter = _TuneReporter(ctx, cfg, tracker, out_dir, history, seed_values)
    if resume_from is not None:
        history.extend(records_from_state(read_checkpoint(resume_from)))
    status, message = "failed", ""
    try:
        result = train(cfg, reporter=reporter, checkpoint_dir=work / "ckpt",
                       resume_from=resume_from)
        status, message = result.status, result.message
        summary = summarize(cfg, result.history, result.seed_values)
        if result.status == "diverged":
            means = ({k: result.history[-1].mean(k) for k in result.history[-1].metrics}
                     if result.history else {})
            tune.report(_tune_result(ctx, result.epochs_done, means, summary.metrics,
                                     diverged=True))
        outputs = write_outputs(out_dir, cfg, summary)
        tracker.finish(status, summary=summary.metrics, step=result.epochs_done,
                       outputs=outputs, root=out_dir, message=message)
        status = "done"
    except BaseException as e:  # noqa: BLE001 - re-raised; we only record how the run ended
        message = redact_url(f"{type(e).__name__}: {e}")
        raise
    finally:
        if status != "done":
            # crashed or interrupted: keep what exists. (A trial a scheduler stops is killed
            # without reaching this; the driver closes its run as `stopped`, and its curves are
            # in MLflow from the last checkpoint.)
            try:
                summary = summarize(cfg, history, seed_values) if history else None
                outputs = write_outputs(out_dir, cfg, summary) if summary else []
                tracker.finish("failed", summary=summary.metrics if summary else {},
                               step=history[-1].epoch if history else 0, outputs=outputs,
                               root=out_dir, message=message)
            except Exception:  # noqa: BLE001 - never hide the original error
                log.exception("could not close the MLflow run of trial %s", trial_id)
        shutil.rmtree(work, ignore_errors=True)


def sweep_work_dirs(tmp: str | Path | None = None) -> list[Path]:
    """Remove the scratch folders (TMP/mistudy-<trial>-<pid>-*) of trial processes that are gone:
    a trial killed by a scheduler or a crash never reaches its `finally`. Folders of live
    processes are left alone. Returns the folders removed."""
    removed = []
    for d in Path(tmp or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*-*-*"):
        m = re.fullmatch(rf"{WORK_PREFIX}(.+)-(\d+)-[A-Za-z0-9_]+", d.name)
        if m is None or not d.is_dir() or d.is_symlink() or d.owner() != _user():
            continue
        pid = int(m.group(2))
        try:
            os.kill(pid, 0)
            continue  # alive (or not ours to signal): keep
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _user() -> str:
    import getpass

    return getpass.getuser()


# ----------------------------------------------------------------------------------------------
# Search


def check_search(study: Study) -> tuple[dict[str, Any], Any]:
    """The Optuna search space and sampler of a study, built without a storage or a study, so
    that `validate` refuses what Optuna would refuse at run time.

    Raises:
        ConfigError: naming the spec and the searched key Optuna rejected.
    """
    space = {}
    for key, p in study.spec.search.items():
        try:
            space[key] = _distribution(p)
        except ValueError as e:
            raise ConfigError(f"key 'search.{key}': {' '.join(str(e).split())}",
                              source=str(study.path), key=f"search.{key}") from None
    try:
        sampler = _sampler(study)
    except ValueError as e:
        raise ConfigError(f"key 'sampler': {' '.join(str(e).split())}", source=str(study.path),
                          key="sampler") from None
    return space, sampler


def _distribution(p):
    import optuna

    if p.type == "categorical":
        return optuna.distributions.CategoricalDistribution(list(p.values))
    if p.type == "int":
        return optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log,
                                                    step=int(p.step or 1))
    return optuna.distributions.FloatDistribution(p.low, p.high, log=p.log, step=p.step)


def _sampler(study: Study):
    import optuna

    s = study.spec.sampler
    if s.name == "grid":
        return optuna.samplers.GridSampler({k: p.grid() for k, p in study.spec.search.items()},
                                           seed=s.seed)
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
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    spec = study.spec
    name = spec.name
    if fresh:
        name = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    home = study_home()
    paths = study_paths(name, home)
    tracking_uri = default_tracking_uri(home)
    storage_url = spec.storage or default_optuna_storage(home)
    objectives = tuple((o.metric, o.direction) for o in spec.objectives)
    base_cfg = study.trial_config({})
    swept = list(spec.search)

    # -- set-up: everything that can fail, before the MLflow study run exists -------------------
    space, sampler = check_search(study)
    metric_keys = objective_keys(len(objectives))
    modes = ["max" if d == "maximize" else "min" for _, d in objectives]
    scheduler = None
    if spec.scheduler is not None:
        sch = spec.scheduler
        s_metric, s_mode = metric_keys[0], modes[0]
        if sch.metric is not None:  # one of the objectives (validated): its always-present key
            i = [m for m, _ in objectives].index(sch.metric)
            s_metric, s_mode = metric_keys[i], modes[i]
        scheduler = ASHAScheduler(time_attr="training_iteration", metric=s_metric, mode=s_mode,
                                  max_t=base_cfg.train.epochs // base_cfg.train.eval_every + 2,
                                  grace_period=sch.grace_period,
                                  reduction_factor=sch.reduction_factor)
    for key in ("home", "ray", "artifacts"):
        paths[key].mkdir(parents=True, exist_ok=True)
    try:
        storage = optuna.storages.RDBStorage(storage_url)
    except Exception as e:  # noqa: BLE001 - a storage that cannot be opened: say which, redacted
        raise RuntimeError(f"cannot open the Optuna storage {redact_url(storage_url)}: "
                           f"{redact_url(' '.join(str(e).split())[:300])}") from None
    secure_store(storage_url)

    # the legacy output engine honours CLIReporter's columns (trial, params, epoch, accuracy,
    # q_func, status); the new one prints every result in full
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=verbose > 0)
        else:
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus,
                     include_dashboard=False, log_to_driver=verbose > 0)

    # -- the study run: opened now, closed on every path below ---------------------------------
    tracker = StudyTracker(tracking_uri, name, artifact_root=paths["artifacts"])
    parent = tracker.start(
        tags={TAG_SWEPT: json.dumps(swept), TAG_TASK: base_cfg.task.name,
              TAG_OBJECTIVES: json.dumps([o.model_dump() for o in spec.objectives]),
              TAG_COMMIT: git_commit(), TAG_VERSIONS: json.dumps(versions())},
        params={"spec.name": name, "spec.sampler": spec.sampler.name,
                "spec.trials": spec.n_trials(), "spec.concurrency": spec.concurrency,
                "spec.cpu": spec.resources.cpu, "spec.gpu": spec.resources.gpu},
        spec_text=study.text,
    )
    status, message = "finished", ""
    reasons: dict[str, str] = {}
    experiment = paths["experiment"]
    try:
        ctx = StudyContext(
            name=name, base=study.base, spec_path=str(study.path), objectives=objectives,
            constraints=tuple(spec.constraints), tracking_uri=tracking_uri,
            experiment_id=tracker.experiment_id, parent_run_id=parent, home=str(home),
            cpus_per_trial=spec.resources.cpu, task=base_cfg.task.name,
        )
        fn = tune.with_resources(tune.with_parameters(trial, ctx=ctx),
                                 {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        search = OptunaSearch(
            space=space,
            metric=metric_keys[0] if len(metric_keys) == 1 else metric_keys,
            mode=modes[0] if len(modes) == 1 else modes,
            sampler=sampler,
            study_name=name,
            storage=storage,
        )
        scored = task_metric(base_cfg)
        shown = {"epoch": "epoch", scored: scored[:3], "mi": "mi", "q_func": "q_func",
                 "q_struct": "q_struct"}
        for metric, _ in objectives:  # the objective itself, not its constraint-penalised value
            shown.setdefault(metric, metric)
        reporter = tune.CLIReporter(
            metric_columns=shown,
            parameter_columns={k: k for k in swept},
            max_report_frequency=15, sort_by_metric=False,
        )
        run_config = tune.RunConfig(
            name=name, storage_path=str(paths["ray"]),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            progress_reporter=reporter, verbose=verbose,
        )
        resumed = tune.Tuner.can_restore(str(experiment))
        if resumed:
            log.info("resuming study %s from %s", name, experiment)
            try:
                tuner = tune.Tuner.restore(str(experiment), trainable=fn, resume_errored=True)
            except ValueError as e:  # e.g. written by an incompatible version of mistudy
                raise ConfigError(f"cannot resume study '{name}' ({e}); run it with --fresh to "
                                  f"start over under a new name", source=str(experiment)) from e
        else:
            tuner = tune.Tuner(
                fn,
                tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler,
                                            num_samples=spec.n_trials(),
                                            max_concurrent_trials=spec.concurrency),
                run_config=run_config,
            )
        grid = tuner.fit()
        for res in grid:
            m = res.metrics or {}
            if res.error is None and m.get("epoch", 0) < base_cfg.train.epochs \
                    and not m.get("diverged"):
                reasons[m.get("trial_id", "")] = (
                    f"stopped by the scheduler after epoch {m.get('epoch')}")
    except BaseException as e:
        status, message = "failed", redact_url(f"{type(e).__name__}: {e}")
        raise
    finally:
        try:
            tracker.close_orphans(reasons=reasons)
            tracker.complete_summaries(paths["trials"])
            sweep_work_dirs()
        finally:
            tracker.finish(status, message)
    outcome = StudyOutcome(name, experiment, tracking_uri, storage_url,
                           n_trials=len(grid), n_errors=grid.num_errors, resumed=resumed,
                           experiment_id=tracker.experiment_id)
    outcome.best = best_trials(tracker, swept, objectives, spec.constraints)
    return outcome


def best_trials(tracker: StudyTracker, swept, objectives, constraints, k: int = 5) -> list[dict]:
    """The top trials by their raw summary metrics in MLflow (feasible ones first); for two
    objectives, the Pareto front of the feasible trials."""
    from study.config import parse_constraint

    rows = []
    for run in tracker.trial_runs():
        m, params = run.data.metrics, run.data.params
        row = {"trial": run.data.tags.get("study.trial_id", run.info.run_name),
               **{key: params.get(key) for key in swept},
               **{metric: m.get(metric, math.nan) for metric, _ in objectives},
               "status": run.data.tags.get("study.status", "")}
        feasible = all(
            math.isfinite(m.get(c, math.nan)) and (m[c] >= b if op == ">=" else m[c] <= b)
            for c, op, b in map(parse_constraint, constraints))
        row["feasible"] = feasible
        rows.append(row)
    signs = [1.0 if d == "maximize" else -1.0 for _, d in objectives]

    def key(r):
        vals = [s * r[metric] if math.isfinite(r[metric]) else -math.inf
                for s, (metric, _) in zip(signs, objectives)]
        return (r["feasible"], *vals)

    rows.sort(key=key, reverse=True)
    chosen = rows[:k]
    if len(objectives) > 1:
        front = []
        for r in (r for r in rows if r["feasible"]):
            v = [s * r[metric] for s, (metric, _) in zip(signs, objectives)]
            dominated = any(all(a >= b for a, b in zip(w, v)) and w != v for w in
                            ([s * f[metric] for s, (metric, _) in zip(signs, objectives)]
                             for f in rows if f["feasible"]))
            if not dominated:
                front.append(r)
        chosen = front
    if not constraints:
        for r in chosen:
            r.pop("feasible")
    return chosen


def format_outcome(outcome: StudyOutcome) -> str:
    lines = [f"study {outcome.name}: {outcome.n_trials} trials"
             + (f", {outcome.n_errors} errored" if outcome.n_errors else "")
             + (" (resumed)" if outcome.resumed else "")]
    if outcome.best:
        keys = list(outcome.best[0])
        widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in outcome.best)) for k in keys}
        lines.append("best trials:")
        lines.append("  " + "  ".join(k.ljust(widths[k]) for k in keys))
        for r in outcome.best:
            lines.append("  " + "  ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys))
    uri = redact_url(outcome.tracking_uri)
    # MLflow 3.17 opens experiments in its GenAI view unless the link asks for the training one
    trials = (f"/#/experiments/{outcome.experiment_id}/runs?workflowType=machine_learning"
              f"&viewStateShareKey={TRIALS_VIEW}")
    lines += [
        f"browse runs:   mlflow ui --backend-store-uri {uri}, then open "
        f"http://127.0.0.1:5000{trials}"
        if uri.startswith("sqlite") else f"browse runs:   open {uri.rstrip('/')}{trials}",
        f"make a report: python -m analysis report {outcome.name}",
        f"optuna study:  {redact_url(outcome.optuna_storage)} (study '{outcome.name}')",
    ]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
