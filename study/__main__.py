"""mistudy command line.

    python -m study train search_spaces/cpu-wm.yaml [--set mi.weight=0.3] [--out DIR]
    python -m study validate search_spaces/demo.yaml
    python -m study run search_spaces/demo.yaml [--smoke-test] [--fresh] [--address ADDR]
    ray job submit --runtime-env cluster/runtime_env.yaml --working-dir . -- \\
        python -m study run search_spaces/demo.yaml

Exit status (README.md, "Exit status"): 0 done (a diverged trial included); 2 bad input or
usage (a spec, config, --set value, --name, --out, checkpoint or storage URL): one line naming
the file and key, nothing started; 1 a failure at run time, including a study whose trials
failed for good (one line; --debug shows the traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from study.contract import settings
from study.contract.artifacts import CHECKPOINT_DIR, CHECKPOINT_FILE
from study.contract.text import one_line, redact_url
from study.core.tasks import task_metric
from study.spec import (
    ConfigError,
    check_name,
    check_storage_url,
    deep_merge,
    fork_checkpoint,
    load_study,
    load_trial_config,
    read_yaml,
    timing_power_warning,
    trial_config_from_dict,
)

log = logging.getLogger("study")

SMOKE_FILE = Path(__file__).resolve().parent.parent / "search_spaces" / "smoke.yaml"


# ----------------------------------------------------------------------------------------------
# train


def cmd_train(args: argparse.Namespace) -> int:
    """Train one trial (S seeds) from a trial config YAML and write its outputs."""
    cfg = load_trial_config(args.config, args.set or [])  # bad input fails before heavy imports
    if args.name is not None:
        name = check_name(args.name, source="--name", key="--name")
    else:
        name = check_name(
            Path(args.config).stem,
            source=args.config,
            key="--name (default: the config file's name)",
        )
    out = _out_dir(args.out, name)
    ckpt = out / CHECKPOINT_DIR / CHECKPOINT_FILE
    resume = ckpt if args.resume and ckpt.is_file() else None
    parent = None if resume is not None else fork_checkpoint(cfg, source=args.config)
    if parent is not None and out.resolve() in (parent.resolve(), *parent.resolve().parents):
        raise ConfigError(
            f"key 'train.init_from': {parent} lies in the output folder {out}; a fork writes "
            f"into a folder of its own and never into the trial it forks from",
            source=args.config,
            key="train.init_from",
        )
    # torch, pandas and mlflow: imported only once the input is known to be good
    from study.service.runner import train_command
    from study.training import check_fork, check_resumable, read_checkpoint

    state = None
    if resume is not None:  # a malformed or foreign checkpoint is refused before anything starts
        state = read_checkpoint(resume)
        check_resumable(state, cfg, source=str(resume))
    elif parent is not None:  # so is one this config cannot fork from
        state = read_checkpoint(parent)
        check_fork(state, cfg, source=str(parent))
    print(
        f"training {name}: task={cfg.task.name} network={cfg.network.kind} "
        f"N={cfg.network.hidden} K={cfg.partition.groups} mi.weight={cfg.mi.weight} "
        f"seeds={cfg.seeds} epochs={cfg.train.epochs}",
        file=sys.stderr,
    )
    start = f" (resuming from {resume})" if resume else ""
    if parent is not None:
        start = f" (forking at epoch {state['epoch']} from {parent})"
    print(f"outputs: {out}{start}", file=sys.stderr)
    result, summary = train_command(
        cfg,
        out,
        name=name,
        spec_text=Path(args.config).read_text(),
        track=not args.no_track,
        quiet=args.quiet,
        device=args.device,
        resume_from=resume,
        resume_state=state,
        inherited=parent is not None,
    )
    print(_train_summary(result, summary, out), file=sys.stderr)
    if result.status == "diverged":
        print(f"diverged: {result.message}", file=sys.stderr)
    return 0


def _out_dir(given: str | None, name: str) -> Path:
    """The output folder of `study train`: --out, else STUDY_HOME/train/NAME; refused (exit 2)
    when it exists and is not a folder, or cannot be created."""
    out = Path(given) if given else settings.study_home() / "train" / name
    source = "--out" if given else "STUDY_HOME"
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(
                    f"key '--out': {p} is a file, not a folder", source=source, key="--out"
                )
            if not os.access(p, os.W_OK | os.X_OK):
                raise ConfigError(
                    f"key '--out': cannot create {out}: {p} is not writable",
                    source=source,
                    key="--out",
                )
            break
    return out


def _train_summary(result, summary, out: Path) -> str:
    m = summary.metrics
    key = f"final.{task_metric(result.config)}"

    def f(k):
        v = m.get(k, math.nan)
        return "n/a" if not math.isfinite(v) else f"{v:.3f}"

    return (
        f"{result.status} after {result.epochs_done} epochs in {result.elapsed:.1f} s: "
        f"{key.split('.')[1]} {f(key)}, q_func {f('final.q_func')}, "
        f"q_struct {f('final.q_struct')}, mi_gauss {f('final.mi_gauss')}, "
        f"success {f('final.success_rate')}, t_func {f('t_func')}, t_struct {f('t_struct')}"
        f"\nwrote {out}/curves.parquet, seeds.parquet, config.yaml, figures/q_curves.png"
    )


# ----------------------------------------------------------------------------------------------
# validate / run


def _load(args: argparse.Namespace):
    study = load_study(args.spec)
    if getattr(args, "smoke_test", False):
        study = _smoke(study)
    return study


def _smoke(study):
    """Shrink a study to seconds (Ray's --smoke-test convention): 2 trials, tiny budgets."""
    over = read_yaml(SMOKE_FILE) if SMOKE_FILE.is_file() else {}
    study.base = deep_merge(study.base, over)
    trial_config_from_dict(study.base, source=str(SMOKE_FILE), partial=True)
    spec = study.spec.model_copy(
        update={
            "name": study.spec.name + "-smoke",
            "trials": min(study.spec.n_trials(), 2),
            "scheduler": None,
        }
    )
    study.spec = spec
    return study


def _check_environment(study) -> None:
    """What `run` takes from the environment and the spec beyond the schema, checked up front:
    an Optuna storage URL given as STUDY_OPTUNA_STORAGE, and the search space and sampler as
    Optuna builds them (no storage, no study created)."""
    env = settings.optuna_storage()
    if env and not study.spec.storage:
        check_storage_url(env, source="environment", key="STUDY_OPTUNA_STORAGE")
    from study.service.driver import check_search  # mlflow and optuna: only once the spec parsed

    check_search(study)
    _check_forks(study)


def _check_forks(study) -> None:
    """Every trial that forks (`train.init_from`) can fork from its checkpoint (the checkpoint
    read, its config compared): refused up front, naming the key. torch only when one forks."""
    forks = []
    for point in study.points or [{}]:
        cfg = study.trial_config(point)
        parent = fork_checkpoint(cfg, source=str(study.path))
        if parent is not None:
            forks.append((point, cfg, parent))
    if not forks:
        return
    from study.training import check_fork, read_checkpoint

    states = {}
    for point, cfg, parent in forks:
        if parent not in states:
            states[parent] = read_checkpoint(parent)
        try:
            check_fork(states[parent], cfg, source=str(parent))
        except ConfigError as e:
            raise ConfigError(
                f"search point {point} cannot fork from {parent}: {e.detail}",
                source=str(study.path),
                key=e.key,
            ) from None


def _warn_timing_power(study) -> None:
    """Say on stderr when the design's seeds per cell cannot call a timing order (a warning:
    the study still runs)."""
    msg = timing_power_warning(study)
    if msg:
        print(f"warning: {msg}", file=sys.stderr, flush=True)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a study spec (and every point of its search space) without starting Ray."""
    study = _load(args)
    _check_environment(study)
    _warn_timing_power(study)
    cfg = study.base_config()
    s = study.spec
    print(
        f"{study.path}: ok — study '{s.name}', sampler {s.sampler.name}, "
        f"{s.n_trials()} trials × {cfg.seeds} seeds, task {cfg.task.name}, "
        f"searching {', '.join(s.search) or 'nothing'}{_arms_line(s)}"
    )
    return 0


def _arms_line(spec) -> str:
    """', arms control (control), off_at_onset, ...' for a study with arms, else ''."""
    if not spec.arms:
        return ""
    names = [f"{a} (control)" if a == spec.control_arm else a for a in spec.arms]
    return f", arms {', '.join(names)}"


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or resume) a study: Ray Tune + Optuna, tracked in MLflow."""
    study = _load(args)  # bad input fails before the heavy imports
    _check_environment(study)
    _warn_timing_power(study)
    from study.service.driver import format_outcome, run_study
    from study.service.tracking import default_optuna_storage, default_tracking_uri, study_home

    s = study.spec
    home = study_home()
    cfg = study.base_config()
    search = json.dumps({k: v.model_dump(exclude_none=True) for k, v in s.search.items()})
    print(
        f"study '{s.name}' from {study.path}\n"
        f"  task {cfg.task.name}, network {cfg.network.kind} N={cfg.network.hidden}, "
        f"{cfg.seeds} seeds/trial, {cfg.train.epochs} epochs\n"
        f"  search: {search}{_arms_line(s)}\n"
        f"  sampler {s.sampler.name} (seed {s.sampler.seed}), {s.n_trials()} trials, "
        f"{s.concurrency} at a time, {s.resources.cpu} CPU + {s.resources.gpu} GPU each\n"
        f"  objectives {[(o.metric, o.direction) for o in s.objectives]}"
        + (f" subject to {list(s.constraints)}" if s.constraints else "")
        + "\n"
        f"  STUDY_HOME {home}\n  MLflow {redact_url(default_tracking_uri(home))}\n"
        f"  Optuna {redact_url(s.storage or default_optuna_storage(home))}",
        flush=True,
    )
    t0 = time.time()
    outcome = run_study(
        study,
        address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        fresh=args.fresh,
        verbose=0 if args.quiet else 1,
    )
    print(format_outcome(outcome))
    print(f"done in {time.time() - t0:.0f} s")
    if outcome.n_errors:  # trials that failed for good (after max_failures retries)
        print(
            f"error: {outcome.n_errors} of {outcome.n_trials} trials failed; their errors are "
            f"in {outcome.experiment_path}",
            file=sys.stderr,
        )
        return 1
    return 0


# ----------------------------------------------------------------------------------------------


def _common_flags(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="warnings only, no progress bar",
    )
    p.add_argument("--debug", action="store_true", default=default, help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_flags(p, False)
    common = argparse.ArgumentParser(add_help=False)
    _common_flags(common, argparse.SUPPRESS)  # the flags also work after the subcommand
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train", help=cmd_train.__doc__, description=cmd_train.__doc__, parents=[common]
    )
    t.add_argument("config", help="trial config YAML (e.g. search_spaces/cpu-wm.yaml)")
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a dotted key, e.g. --set mi.weight=0.3 (repeatable)",
    )
    t.add_argument("--out", help="output folder (default $STUDY_HOME/train/<config name>)")
    t.add_argument("--name", help="MLflow experiment name (default: the config file's stem)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    t.add_argument("--device", choices=["cpu", "cuda"], help="override train.device")
    t.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    t.set_defaults(func=cmd_train)

    v = sub.add_parser(
        "validate", help=cmd_validate.__doc__, description=cmd_validate.__doc__, parents=[common]
    )
    v.add_argument("spec", help="study spec YAML")
    v.add_argument("--smoke-test", action="store_true", help="validate the smoke-test variant")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("run", help=cmd_run.__doc__, description=cmd_run.__doc__, parents=[common])
    r.add_argument("spec", help="study spec YAML (search_spaces/*.yaml)")
    r.add_argument(
        "--smoke-test",
        action="store_true",
        help="2 trials with search_spaces/smoke.yaml budgets (seconds)",
    )
    r.add_argument("--fresh", action="store_true", help="start over under a new name")
    r.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded)")
    r.add_argument("--num-cpus", type=int, help="CPUs of an embedded Ray")
    r.add_argument("--num-gpus", type=int, help="GPUs of an embedded Ray")
    r.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )  # to the current stderr, also when called again in-process
    old_umask = os.umask(0o077)  # stores, checkpoints and reports: 0600 files, 0700 folders
    try:
        return args.func(args)
    except ConfigError as e:
        if args.debug:
            raise
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(
            f"error: {type(e).__name__}: {one_line(redact_url(str(e)))} (run with --debug "
            f"for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        os.umask(old_umask)


if __name__ == "__main__":
    sys.exit(main())
