"""Timestamps of where a study's trials spend their fixed time (bench/bench_service.py --overhead).

Run as the study's driver (`python bench/_overhead_trace.py SPEC`, with this folder and the code
tree under test on PYTHONPATH and MISTUDY_TRACE_DIR set). It wraps, by name, the functions of the
driver, of Ray Tune's controller and of the trial process that make up a trial's life, and writes
one JSON line per call to MISTUDY_TRACE_DIR/<pid>.jsonl: name, start, end, the time spent in
nested traced calls, the trial it belongs to. Names that a code tree lacks are skipped, so the
same probes time the old code and the new one.

The trial processes get the probes through the trainable: the driver's `trial` is replaced by
`trial` below (pickled by reference, so Ray workers import this module), which installs the
worker probes once per process and then calls the real one.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import threading
import time
from pathlib import Path

TRACE_ENV = "MISTUDY_TRACE_DIR"

_lock = threading.Lock()
_local = threading.local()
_state = {"file": None, "trial": None, "worker": False}


def _emit(event: dict) -> None:
    """Append EVENT (with this process's id) to the process's trace file."""
    trace = os.environ.get(TRACE_ENV)
    if not trace:
        return
    with _lock:
        if _state["file"] is None:
            _state["file"] = open(Path(trace) / f"{os.getpid()}.jsonl", "a", buffering=1)
        _state["file"].write(json.dumps({"pid": os.getpid(), **event}) + "\n")


def _stack() -> list:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def _traced(fn, name: str, trial_of=None):
    """FN timed as NAME: inclusive time, time in nested traced calls, the enclosing traced call,
    and the trial (TRIAL_OF(args) in the driver, the running trial in a worker)."""
    if getattr(fn, "_overhead_traced", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        stack = _stack()
        frame = {"child": 0.0}
        parent = stack[-1]["name"] if stack else None
        frame["name"] = name
        stack.append(frame)
        t0 = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            t1 = time.time()
            stack.pop()
            if stack:
                stack[-1]["child"] += t1 - t0
            trial = None
            if trial_of is not None:
                try:
                    trial = trial_of(args)
                except Exception:
                    trial = None
            _emit(
                {
                    "ev": name,
                    "t0": t0,
                    "t1": t1,
                    "excl": t1 - t0 - frame["child"],
                    "parent": parent,
                    "trial": trial or _state["trial"],
                }
            )

    wrapper._overhead_traced = True
    return wrapper


def _patch(owner, attr: str, name: str, trial_of=None) -> bool:
    """Replace OWNER.ATTR by its traced version (a class's own function, a module's function)
    everywhere in the loaded `study` modules that hold the same object. False if absent."""
    raw = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
    if raw is None:
        return False
    if isinstance(raw, (staticmethod, classmethod)):
        return False
    if not callable(raw):
        return False
    wrapped = _traced(raw, name, trial_of)
    setattr(owner, attr, wrapped)
    if not isinstance(owner, type):
        for mod in list(sys.modules.values()):
            if (
                getattr(mod, "__name__", "").startswith("study")
                and getattr(mod, attr, None) is raw
            ):
                setattr(mod, attr, wrapped)
    return True


def _patch_class(cls, prefix: str, only=None) -> None:
    """Every function defined on CLS (or those in ONLY), traced as PREFIX.<name>."""
    for attr, value in list(vars(cls).items()):
        if only is not None and attr not in only:
            continue
        if inspect.isfunction(value) and (only is not None or not attr.startswith("_")):
            _patch(cls, attr, f"{prefix}.{attr}")


def _process_start_time() -> float | None:
    """When this process started (epoch seconds), from /proc; None elsewhere."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


# ----------------------------------------------------------------------------------------------
# Trial processes


def install_worker() -> None:
    """The probes of a trial process (once per process)."""
    if _state["worker"]:
        return
    _state["worker"] = True
    from mlflow.tracking import MlflowClient
    from ray.train._internal import session as train_session
    from ray.train._internal.storage import StorageContext

    import study.service.runner as runner
    import study.service.summary as summary
    import study.service.tracking as tracking
    import study.service.worker as worker
    import study.training as training
    import study.training.checkpoint as checkpoint
    import study.training.loop as loop

    _patch_class(MlflowClient, "mlflow")
    _patch_class(tracking.TrialTracker, "tracker", only=None)
    _patch(tracking.TrialTracker, "__init__", "tracker.open")
    for fn in ("summarize", "write_outputs", "_plot_q_curves", "write_snapshot"):
        _patch(summary, fn, f"outputs.{fn}")
    for mod in (checkpoint, loop, training):
        _patch(mod, "write_checkpoint", "checkpoint.write")
        _patch(mod, "read_checkpoint", "checkpoint.read")
    _patch_class(
        loop.Trainer,
        "train",
        only={"__init__", "pretrain_critic", "train_epoch", "evaluate", "record", "weights"},
    )
    _patch(runner, "run_trial", "runner.run_trial")
    for fn in ("_trial_config", "_restored_checkpoint", "sweep_work_dirs"):
        _patch(worker, fn, f"worker.{fn}")
    _patch_class(worker.TuneReporter, "tune_reporter", only={"report", "done"})
    _patch(StorageContext, "persist_current_checkpoint", "tune.persist_checkpoint")
    _patch(StorageContext, "persist_artifacts", "tune.persist_artifacts")
    _patch(train_session._TrainSession, "_report_training_result", "tune.wait_for_driver")


def trial(config, ctx):
    """The traced trainable: records the process's start, what it had imported, the imports of
    the trial stack, then runs the code tree's own `trial` with the probes on."""
    entered = time.time()
    preloaded = {m: m in sys.modules for m in ("torch", "mlflow", "study.service.runner")}
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    _state["trial"] = trial_id
    t0 = time.time()
    import study.service.runner  # noqa: F401  (the trial stack: torch, MLflow, pandas, ...)
    import study.service.worker as worker

    imported = time.time()
    install_worker()
    _emit(
        {
            "ev": "trial.enter",
            "t0": entered,
            "t1": entered,
            "trial": trial_id,
            "process_start": _process_start_time(),
            "preloaded": preloaded,
            "imports_s": imported - t0,
        }
    )
    _emit(
        {
            "ev": "worker.imports",
            "t0": t0,
            "t1": imported,
            "excl": imported - t0,
            "trial": trial_id,
        }
    )
    try:
        _traced(worker.trial, "trial.total")(config, ctx)
    finally:
        _emit({"ev": "trial.exit", "t0": time.time(), "t1": time.time(), "trial": trial_id})
        _state["trial"] = None


# ----------------------------------------------------------------------------------------------
# The driver


def _trial_arg(args) -> str | None:
    return args[1].trial_id


def _actor_trial(args) -> str | None:
    ctl, actor = args[0], args[1]
    t = ctl._actor_to_trial.get(actor)
    return t.trial_id if t is not None else None


def install_driver() -> None:
    """The probes of the driver: Tune's controller, OptunaSearch, the study service's steps."""
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search.optuna import OptunaSearch

    import study.service.driver as driver
    import study.service.tracking as tracking

    for attr in ("_schedule_trial_actor", "_schedule_trial_stop", "_process_trial_result"):
        _patch(TuneController, attr, f"tune.{attr.lstrip('_')}", _trial_arg)
    for attr in ("_actor_started", "_actor_stopped"):
        _patch(TuneController, attr, f"tune.{attr.lstrip('_')}", _actor_trial)
    _patch(TuneController, "_schedule_trial_reset", "tune.schedule_trial_reset", _trial_arg)
    _patch(TuneController, "save_to_dir", "tune.save_experiment_state")
    for attr in ("suggest", "on_trial_result", "on_trial_complete"):
        _patch(OptunaSearch, attr, f"optuna.{attr}", lambda a: a[1])
    for fn in ("_init_ray", "_open_storage", "_start_study_run", "_close_study", "best_trials"):
        _patch(driver, fn, f"driver.{fn}")
    _patch(tracking.StudyTracker, "__init__", "driver.open_experiment")
    driver.trial = trial  # the trainable: this module's `trial`, so workers get the probes


def main(argv: list[str] | None = None) -> int:
    """Run the study SPEC (argv[0]) with the probes on; the run's start and end as events."""
    argv = sys.argv[1:] if argv is None else argv
    spec = argv[0]
    num_cpus = int(argv[1]) if len(argv) > 1 else 2
    start = time.time()
    from study.service.driver import run_study
    from study.spec import load_study

    install_driver()
    _emit({"ev": "driver.imports", "t0": start, "t1": time.time(), "excl": time.time() - start})
    t0 = time.time()
    outcome = run_study(load_study(spec), num_cpus=num_cpus, verbose=1)
    _emit({"ev": "driver.run_study", "t0": t0, "t1": time.time(), "excl": 0.0})
    print(f"TRACE-DONE trials={outcome.n_trials} errors={outcome.n_errors}", flush=True)
    return 0 if outcome.n_errors == 0 else 1


if __name__ == "__main__":
    import _overhead_trace  # by module name: workers must find `trial` there

    sys.exit(_overhead_trace.main())


# ----------------------------------------------------------------------------------------------
# Reading the traces back

# the fixed time of a trial, phase by phase (seconds; together: the trial's slot time less its
# training compute)
PHASES = (
    "actor_start",  # the driver asks for a trial process -> Tune has it (new process, or reset)
    "trainable_start",  # -> the trial function runs (Tune's train call, session thread)
    "imports",  # the trial stack imported in a fresh process (torch, MLflow, ...) + probes
    "worker_setup",  # config, scratch folders, restored checkpoint
    "mlflow",  # MLflow: client and run creation, params, metrics, artifacts, tags, end
    "outputs",  # summary tables and config.yaml written
    "figure",  # q_curves.png drawn
    "checkpoint_write",  # checkpoint.pt written
    "tune_upload",  # Tune copying checkpoints and artifacts to the study's storage
    "tune_report_wait",  # a result waiting for the driver to process it
    "other_in_trial",  # the runner's own code between the traced calls
    "after_trial",  # the trial function returned -> the driver has stopped the trial
)


def _category(ev: str) -> str | None:
    if ev.startswith(("tracker.", "mlflow.")):
        return "mlflow"
    if ev in ("outputs.summarize", "outputs.write_outputs", "outputs.write_snapshot"):
        return "outputs"
    if ev == "outputs._plot_q_curves":
        return "figure"
    if ev.startswith("checkpoint."):
        return "checkpoint_write"
    if ev in ("tune.persist_checkpoint", "tune.persist_artifacts"):
        return "tune_upload"
    if ev == "tune.wait_for_driver":
        return "tune_report_wait"
    if ev.startswith("worker.") and ev != "worker.imports":
        return "worker_setup"
    if ev in ("trial.total", "runner.run_trial") or ev.startswith("tune_reporter."):
        return "other_in_trial"
    if ev.startswith("train."):
        return "compute"
    return None


def _stats(values: list[float]) -> dict[str, float]:
    import statistics

    if not values:
        return {"mean": float("nan"), "median": float("nan")}
    return {
        "mean": round(statistics.fmean(values), 3),
        "median": round(statistics.median(values), 3),
    }


def analyse(trace_dir: Path, concurrency: int) -> dict:
    """Per-trial phases and study totals from the traces in TRACE_DIR."""
    events = [
        json.loads(line)
        for f in sorted(Path(trace_dir).glob("*.jsonl"))
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    first = {}
    for e in sorted(events, key=lambda e: e["t0"]):
        first.setdefault((e["ev"], e.get("trial")), e)
    last = {}
    for e in sorted(events, key=lambda e: e["t0"]):
        last[(e["ev"], e.get("trial"))] = e
    trial_ids = sorted({e["trial"] for e in events if e["ev"] == "tune.schedule_trial_actor"})
    per_trial, calls = [], []
    for tid in trial_ids:
        req = first[("tune.schedule_trial_actor", tid)]["t0"]
        started = first.get(("tune.actor_started", tid))
        enter = first.get(("trial.enter", tid))
        total = last.get(("trial.total", tid))
        stop = last.get(("tune.schedule_trial_stop", tid))
        if None in (started, enter, total, stop):
            continue
        mine = [e for e in events if e.get("trial") == tid and e["pid"] == enter["pid"]]
        row = dict.fromkeys(PHASES, 0.0)
        row["compute"] = 0.0
        for e in mine:
            cat = _category(e["ev"])
            if cat is not None and total["t0"] <= e["t0"] <= total["t1"]:
                row[cat] += e["excl"]
        row["actor_start"] = started["t1"] - req
        row["trainable_start"] = enter["t0"] - started["t1"]
        row["imports"] = total["t0"] - enter["t0"]
        row["after_trial"] = stop["t0"] - total["t1"]
        row["slot"] = stop["t0"] - req
        row["fixed"] = row["slot"] - row["compute"]
        row["pid"] = enter["pid"]
        row["fresh_process"] = not enter["preloaded"]["study.service.runner"]
        mlflow_calls = [
            e
            for e in mine
            if e["ev"].startswith("mlflow.") and not (e.get("parent") or "").startswith("mlflow.")
        ]
        row["mlflow_calls"] = len(mlflow_calls)
        calls += [e["ev"].removeprefix("mlflow.") for e in mlflow_calls]
        row["trial"] = tid
        per_trial.append(row)
    by_name = {}
    for name in calls:
        by_name[name] = by_name.get(name, 0) + 1
    n = max(len(per_trial), 1)
    driver = [e for e in events if e["ev"] == "driver.run_study"]
    imports = [e for e in events if e["ev"] == "driver.imports"]
    reqs = [e["t0"] for e in events if e["ev"] == "tune.schedule_trial_actor"]
    stops = [e["t0"] for e in events if e["ev"] == "tune.schedule_trial_stop"]
    loop_s = max(stops) - min(reqs) if reqs and stops else float("nan")
    compute = sum(r["compute"] for r in per_trial)

    def driver_total(name: str) -> float:
        return round(sum(e["t1"] - e["t0"] for e in events if e["ev"] == name) / n, 4)

    return {
        "trials_traced": len(per_trial),
        "trial_processes": len({r["pid"] for r in per_trial}),
        "trials_in_a_fresh_process": sum(r["fresh_process"] for r in per_trial),
        "driver_start_to_first_trial_s": round(min(reqs) - imports[0]["t0"], 1)
        if reqs and imports
        else None,
        "run_study_s": round(driver[0]["t1"] - driver[0]["t0"], 1) if driver else None,
        "tuning_loop_s": round(loop_s, 1),
        "per_trial": {
            "slot_s": _stats([r["slot"] for r in per_trial]),
            "compute_s": _stats([r["compute"] for r in per_trial]),
            "fixed_s": _stats([r["fixed"] for r in per_trial]),
            "fixed_breakdown_s": {p: _stats([r[p] for r in per_trial]) for p in PHASES},
            "mlflow_calls": _stats([r["mlflow_calls"] for r in per_trial]),
            "mlflow_calls_by_method": {k: round(v / n, 2) for k, v in sorted(by_name.items())},
        },
        # the loop's wall time on `concurrency` slots, less the training, per trial: the fixed
        # cost as the study's wall clock sees it (slots idle between trials included)
        "fixed_per_trial_from_wall_s": round((loop_s * concurrency - compute) / n, 2),
        "driver_per_trial_s": {
            name: driver_total(name)
            for name in (
                "optuna.suggest",
                "optuna.on_trial_result",
                "optuna.on_trial_complete",
                "tune.process_trial_result",
                "tune.save_experiment_state",
            )
        },
        "trials": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
            for r in per_trial
        ],
    }
