"""Seconds per training epoch for paper-wm and cpu-wm at S = 1, 4, 16 seeds, vs S separate runs.

    .venv/bin/python bench/bench_train.py [--device cuda] [--presets cpu-wm paper-wm] \
        [--seeds 1 4 16]

One epoch = the critic steps + one network update (docs/method.md §5.2). "S separate runs" is S
epochs of a single-seed trainer (the same work S one-seed trials do), so the population gain is
the measured ratio S·t(1)/t(S). Also records where the time goes (data / critic / network) and,
for the largest S, the top operators of a torch profile. Writes
bench/results/train-<host>[-cuda].json with the machine's details. On CUDA it also estimates a
full paper-wm trial (100 critic pre-training steps + 1000 epochs + 41 evaluations).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info

from study.spec import load_trial_config
from study.training import Trainer

PRESETS = Path(__file__).resolve().parents[1] / "search_spaces"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_epochs(trainer: Trainer, n: int) -> list[float]:
    out = []
    for _ in range(n):
        _sync(trainer.device)
        t0 = time.perf_counter()
        trainer.train_epoch()
        _sync(trainer.device)
        out.append(time.perf_counter() - t0)
    return out


def bench_preset(
    preset: str,
    seeds: list[int],
    device: str,
    n_epochs: int,
    profile: bool,
    separate_max: int = 64,
    on_row=None,
) -> dict:
    rows = []
    single = None
    result = {"preset": preset, "device": device, "rows": rows}
    for s in seeds:
        cfg = load_trial_config(
            PRESETS / f"{preset}.yaml", {"seeds": s, "train.device": device, "train.threads": 0}
        )
        trainer = Trainer(cfg)
        trainer.train_epoch()  # warm-up (allocator, first-call overheads)
        for k in trainer.timings:
            trainer.timings[k] = 0.0
        times = time_epochs(trainer, n_epochs)
        per_epoch = statistics.median(times)
        parts = {k: round(v / n_epochs, 4) for k, v in trainer.timings.items()}
        row = {
            "seeds": s,
            "epochs_timed": n_epochs,
            "sec_per_epoch": round(per_epoch, 4),
            "sec_per_epoch_per_seed": round(per_epoch / s, 4),
            "all_epochs": [round(t, 4) for t in times],
            "breakdown_sec_per_epoch": parts,
        }
        if s == 1:
            single = trainer
            row["separate_runs_sec_per_epoch"] = round(per_epoch, 4)
        elif single is not None:
            if s <= separate_max:
                # S separate one-seed runs: S epochs of the one-seed trainer, timed for real
                sep = sum(time_epochs(single, s))
            else:  # too long to time literally: S × the one-seed median
                sep = s * rows[0]["sec_per_epoch"]
                row["separate_runs_derived"] = True
            row["separate_runs_sec_per_epoch"] = round(sep, 4)
            row["population_gain"] = round(sep / per_epoch, 2)
        if device == "cuda":
            _sync(trainer.device)
            t0 = time.perf_counter()
            trainer.evaluate()
            _sync(trainer.device)
            eval_s = time.perf_counter() - t0
            pre = cfg.critic.pretrain_steps / max(1, cfg.critic.steps + 1) * per_epoch
            full = pre + cfg.train.epochs * per_epoch + (cfg.train.epochs // 25 + 1) * eval_s
            row["eval_sec"] = round(eval_s, 3)
            row["estimated_full_trial_hours"] = round(full / 3600, 3)
            row["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.reset_peak_memory_stats()
        if profile and s == max(seeds):
            row["profile_top_ops"] = _profile(trainer)
        rows.append(row)
        if on_row is not None:
            on_row(result)
        print(
            f"{preset:10s} S={s:3d}  {per_epoch:8.3f} s/epoch  {per_epoch / s:8.4f} s/epoch/seed"
            + (f"  gain x{row['population_gain']}" if "population_gain" in row else "")
            + f"  {parts}",
            flush=True,
        )
    return result


def _profile(trainer: Trainer) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if trainer.device.type == "cuda" else []
    )
    with profile(activities=acts) as prof:
        trainer.train_epoch()
    key = "self_device_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:12]
    total = sum(getattr(e, key, 0) for e in prof.key_averages()) or 1
    return [
        {"op": e.key, "calls": e.count, "share": round(getattr(e, key, 0) / total, 3)}
        for e in events
    ]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--presets", nargs="+", default=["cpu-wm", "paper-wm"])
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--epochs", type=int, default=None, help="timed epochs per point")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument(
        "--separate-max",
        type=int,
        default=None,
        help="largest S whose S separate runs are timed literally "
        "(default: all on CPU, 16 on CUDA)",
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seeds = args.seeds or ([1, 16, 64] if args.device == "cuda" else [1, 4, 16])
    results = {"machine": machine_info(args.device), "threads": args.threads, "benchmarks": []}
    host = results["machine"].get("hostname", "host")
    out = (
        Path(args.out)
        if args.out
        else (
            Path(__file__).parent
            / "results"
            / f"train-{host}{'-cuda' if args.device == 'cuda' else ''}.json"
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    done: list[dict] = results["benchmarks"]

    def save(current: dict) -> None:  # after every row: a run cut short keeps what it measured
        out.write_text(json.dumps({**results, "benchmarks": [*done, current]}, indent=2))

    for preset in args.presets:
        n = args.epochs or (3 if preset.startswith("paper") else 10)
        sep_max = args.separate_max or (16 if args.device == "cuda" else max(seeds))
        done.append(
            bench_preset(
                preset, seeds, args.device, n, profile=True, separate_max=sep_max, on_row=save
            )
        )
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
