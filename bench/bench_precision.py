"""paper-wm seconds per epoch with a float32 and a bfloat16 critic, side by side in one run.

    .venv/bin/python bench/bench_precision.py [--epochs 3] [--seeds 1] [--device cpu]
        [--main /work/main] [--out bench/results/precision-<host>.json]

Each code path is a worker process that builds its trainer once and then runs one epoch per
request, so the paths' epochs are interleaved (A B C A B C ...) and a shared host's drift hits
all of them alike; only the ratios inside one run count. Then single critic steps (most of an
epoch's cost) are interleaved the same way (--critic-rounds), a finer grain for hosts whose load
changes within an epoch. The paths: this tree with
critic.precision float32 and bfloat16, and (with --main) the float32 path of another checkout
(e.g. the main branch), to show float32 did not get slower. Also records, per path, where the
time goes (trainer.timings per epoch) and the top operators of a torch profile of one epoch;
the raw (40 000 × 512) @ (512 × 512) product's GFLOP/s in float32 and bfloat16; whether the CPU
has bf16 matrix units (AMX-BF16, AVX512-BF16) and the ISA oneDNN dispatches to; and, with
--eval-share, what one evaluation costs (per section) as a share of a cpu-wm trial.
On CUDA (--device cuda) timings synchronise the device and the profile separates kernel time
from the wall time (the rest is launch gaps, host syncs and host-side work).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "search_spaces"
# context, not same-run numbers (see README "Benchmarks")
REFERENCE_TF = {
    "note": "official TensorFlow code, paper-wm, earlier runs on a 2-core VM; only same-run "
    "ratios are comparable across hosts",
    "readme_sec_per_epoch": 8.0,
    "issue13_same_run": {
        "official_sec_per_epoch": 15.09,
        "mistudy_sec_per_epoch": 11.87,
        "ratio": 1.27,
    },
}


# ----------------------------------------------------------------------------------------------
# worker (one code path, one process)


def _worker(args: argparse.Namespace) -> int:
    sys.path.insert(0, args.root)  # the checkout whose `study` is timed
    import torch

    from study.spec import load_trial_config

    # the module, not the package: also imports from checkouts older than study.training's API
    from study.training.loop import Trainer

    torch.set_num_threads(args.threads)
    over = {"seeds": args.seeds[0], "train.device": args.device, "train.threads": args.threads}
    if args.precision != "default":
        over["critic.precision"] = args.precision
    preset = Path(args.root) / "search_spaces" / f"{args.preset}.yaml"  # as that checkout has it
    trainer = Trainer(load_trial_config(preset, over))
    cuda = trainer.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def epoch() -> dict:
        before = dict(trainer.timings)
        sync()
        t0 = time.perf_counter()
        trainer.train_epoch()
        sync()
        sec = time.perf_counter() - t0
        parts = {
            k: round(v - before.get(k, 0.0), 4)
            for k, v in trainer.timings.items()
            if v - before.get(k, 0.0) > 0
        }
        return {"sec": round(sec, 4), "parts": parts}

    # warm-up (allocator, first-call overheads; not reported): one critic and one network step
    # touch every buffer an epoch uses, at a fifth of an epoch's cost
    trainer._critic_round(1)
    trainer._network_step()
    sync()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "epoch":
            reply = epoch()
        elif cmd == "profile":
            reply = _profile_epoch(trainer, sync)
        elif cmd == "critic":  # one critic step on a fresh batch: 1/11 of a paper-wm epoch
            sync()
            t0 = time.perf_counter()
            trainer._critic_round(1)
            sync()
            reply = {"sec": round(time.perf_counter() - t0, 4)}
        elif cmd == "eval":
            sync()
            t0 = time.perf_counter()
            trainer.evaluate()
            sync()
            reply = {"sec": round(time.perf_counter() - t0, 4)}
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(reply), flush=True)
    return 0


def _profile_epoch(trainer, sync) -> dict:
    """Top operators of one epoch; on CUDA also kernel time against wall time."""
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync()
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        trainer.train_epoch()
        sync()
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    total = sum(getattr(e, key, 0) for e in events) or 1
    top = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[:15]
    out = {
        "wall_sec": round(wall, 4),
        "ranked_by": key,
        "top_ops": [
            {
                "op": e.key,
                "calls": e.count,
                "self_sec": round(getattr(e, key, 0) / 1e6, 4),
                "share": round(getattr(e, key, 0) / total, 3),
            }
            for e in top
        ],
    }
    if cuda:
        kernel = total / 1e6  # µs -> s of device time in operators
        sync_ops = ("aten::item", "aten::_local_scalar_dense")
        syncs = [e for e in events if "Synchronize" in e.key or e.key in sync_ops]
        out.update(
            kernel_sec=round(kernel, 4),
            gpu_busy_share=round(kernel / wall, 3),
            host_syncs=sum(e.count for e in syncs),
            cuda_launches=sum(e.count for e in events if e.key == "cudaLaunchKernel"),
        )
    return out


# ----------------------------------------------------------------------------------------------
# driver


class Worker:
    """A worker process for one code path, answering one JSON line per command."""

    def __init__(
        self, name: str, root: str, precision: str, args: argparse.Namespace, graphs: bool = False
    ):
        self.name = name
        env = {
            **os.environ,
            "PYTHONPATH": root,
            "PYTHONUNBUFFERED": "1",
            "STUDY_CUDA_GRAPHS": "1" if graphs else "0",
        }
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            "--root",
            root,
            "--precision",
            precision,
            "--preset",
            args.preset,
            "--seeds",
            str(args.seeds[0]),
            "--device",
            args.device,
            "--threads",
            str(args.threads),
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self._read()  # ready

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.name} exited (rc={self.proc.wait()})")
            if line.startswith("{"):
                return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=60)


def _git_commit(root: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_bf16_support() -> dict:
    """The CPU's bf16 flags, and the ISA oneDNN reports for a bf16 GEMM (its verbose log)."""
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "").split()
    except OSError:
        pass
    code = (
        "import torch; a = torch.randn(256, 512, dtype=torch.bfloat16); "
        "b = torch.randn(512, 512, dtype=torch.bfloat16); a @ b"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "ONEDNN_VERBOSE": "1"},
    )
    log = proc.stdout + proc.stderr
    isa = re.search(r"isa:([^\n]*)", log)
    impl = re.search(r"matmul,([^,]*),", log)
    import torch

    return {
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_tile": "amx_tile" in flags,
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": isa.group(1).strip() if isa else None,
        "onednn_bf16_matmul_impl": impl.group(1) if impl else None,
    }


def gemm_rates(device: str, reps: int = 3) -> dict:
    """GFLOP/s of the critic's hidden-layer product, float32 and bfloat16, interleaved."""
    import torch

    dev = torch.device(device)
    a = torch.randn(1, 40000, 512, device=dev)
    w = torch.randn(1, 512, 512, device=dev)
    flop = 2 * 40000 * 512 * 512
    ops = {"float32": (a, w), "bfloat16": (a.bfloat16(), w.bfloat16())}
    times: dict[str, list[float]] = {k: [] for k in ops}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for x, y in ops.values():
        torch.bmm(x, y)  # warm-up
    for _ in range(reps):
        for k, (x, y) in ops.items():
            n = 20 if dev.type == "cuda" else 2
            sync()
            t0 = time.perf_counter()
            for _ in range(n):
                torch.bmm(x, y)
            sync()
            times[k].append((time.perf_counter() - t0) / n)
    return {k: round(flop / statistics.median(v) / 1e9, 1) for k, v in times.items()}


def eval_share(
    preset: str, precision: str, device: str, threads: int, n_epochs: int = 5, n_evals: int = 3
) -> dict:
    """One evaluation's cost, per section, as a share of a whole `preset` trial."""
    import torch

    from study.spec import load_trial_config
    from study.training import Trainer

    cfg = load_trial_config(
        PRESETS / f"{preset}.yaml",
        {"train.device": device, "train.threads": threads, "critic.precision": precision},
    )
    tr = Trainer(cfg)
    sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
    tr.train_epoch()
    tr.evaluate()  # warm-up
    t0 = time.perf_counter()
    for _ in range(n_epochs):
        tr.train_epoch()
    sync()
    epoch_s = (time.perf_counter() - t0) / n_epochs
    for k in tr.timings:
        tr.timings[k] = 0.0
    t0 = time.perf_counter()
    for _ in range(n_evals):
        tr.evaluate()
    sync()
    eval_s = (time.perf_counter() - t0) / n_evals
    t = cfg.train
    evals = t.epochs // t.eval_every + 1
    trial = t.epochs * epoch_s + evals * eval_s
    sections = {
        k.split(".", 1)[1]: round(v / n_evals, 4)
        for k, v in tr.timings.items()
        if k.startswith("eval.")
    }
    # the evaluation batch's forward pass (and conversions) outside the named sections
    sections["forward_and_rest"] = round(max(0.0, eval_s - sum(sections.values())), 4)
    return {
        "preset": preset,
        "precision": precision,
        "seeds": cfg.seeds,
        "sec_per_epoch": round(epoch_s, 4),
        "sec_per_eval": round(eval_s, 4),
        "eval_sections_sec": sections,
        "evals_per_trial": evals,
        "eval_share_of_trial": round(evals * eval_s / trial, 4),
        "section_share_of_trial": {k: round(evals * v / trial, 4) for k, v in sections.items()},
    }


def _trial_hours(cfgs, epoch_s: float, eval_s: float) -> float:
    """Critic pre-training (as epochs' worth of critic steps) + epochs + evaluations, in h."""
    t, c = cfgs
    pre = c.pretrain_steps / max(1, c.steps + 1) * epoch_s
    evals = t.epochs // t.eval_every + 1
    return round((pre + t.epochs * epoch_s + evals * eval_s) / 3600, 3)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--preset", default="paper-wm")
    p.add_argument("--seeds", nargs="+", type=int, default=[1])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per path")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument(
        "--main",
        default=None,
        help="another checkout whose float32 path runs alongside (e.g. /work/main)",
    )
    p.add_argument("--no-profile", action="store_true")
    p.add_argument(
        "--critic-rounds",
        type=int,
        default=6,
        help="interleaved single critic steps per path (0 = none)",
    )
    p.add_argument(
        "--graphs",
        action="store_true",
        help="also time both precisions with STUDY_CUDA_GRAPHS=1 (CUDA)",
    )
    p.add_argument(
        "--eval-share",
        default=None,
        metavar="PRESET",
        help="also measure one evaluation's share of a PRESET trial (e.g. cpu-wm)",
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.worker:
        return _worker(args)

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from _machine import machine_info

    from study.spec import load_trial_config

    torch.set_num_threads(args.threads)
    info = machine_info(args.device)
    host = info.get("hostname", "host")
    out = (
        Path(args.out)
        if args.out
        else (
            Path(__file__).parent
            / "results"
            / f"precision-{host}{'-cuda' if args.device == 'cuda' else ''}.json"
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": info,
        "threads": args.threads,
        "preset": args.preset,
        "commit": _git_commit(str(ROOT)),
        "reference_tf": REFERENCE_TF,
        "cpu_bf16": cpu_bf16_support(),
        "gemm_gflops": gemm_rates(args.device),
        "rows": [],
    }
    print(json.dumps({k: result[k] for k in ("cpu_bf16", "gemm_gflops")}), flush=True)

    def save() -> None:  # after every step: a run cut short keeps what it measured
        out.write_text(json.dumps(result, indent=2))

    save()
    trial_cfg = load_trial_config(PRESETS / f"{args.preset}.yaml").train
    critic_cfg = load_trial_config(PRESETS / f"{args.preset}.yaml").critic
    trial_cfg = (trial_cfg, critic_cfg)
    for s in args.seeds:
        args.seeds = [s]
        paths = [
            ("float32", str(ROOT), "float32", False),
            ("bfloat16", str(ROOT), "bfloat16", False),
        ]
        if args.graphs:
            paths += [
                ("float32 graphs", str(ROOT), "float32", True),
                ("bfloat16 graphs", str(ROOT), "bfloat16", True),
            ]
        if args.main:
            paths.insert(0, ("main float32", args.main, "default", False))
        workers = [Worker(name, root, prec, args, graphs) for name, root, prec, graphs in paths]
        row = {
            "seeds": s,
            "epochs_timed": args.epochs,
            "main": {"root": args.main, "commit": _git_commit(args.main)} if args.main else None,
            "paths": {},
        }
        result["rows"].append(row)
        runs: dict[str, list[dict]] = {w.name: [] for w in workers}
        try:
            for i in range(args.epochs):  # interleaved: one epoch of each path in turn
                for w in workers:
                    runs[w.name].append(w.ask("epoch"))
                    print(
                        f"S={s} epoch {i + 1} {w.name:13s} {runs[w.name][-1]['sec']:8.3f} s",
                        flush=True,
                    )
            for w in workers:
                secs = [r["sec"] for r in runs[w.name]]
                parts = {
                    k: round(statistics.median(r["parts"].get(k, 0.0) for r in runs[w.name]), 4)
                    for k in runs[w.name][0]["parts"]
                }
                row["paths"][w.name] = {
                    "sec_per_epoch": round(statistics.median(secs), 4),
                    "all_epochs": secs,
                    "breakdown_sec_per_epoch": parts,
                }
            # finer interleaving: single critic steps (most of an epoch) in turn, so a shared
            # host's load changes within an epoch hit every path alike
            for _ in range(args.critic_rounds):
                for w in workers:
                    runs[w.name + " critic"] = runs.get(w.name + " critic", [])
                    runs[w.name + " critic"].append(w.ask("critic")["sec"])
            base = row["paths"]["float32"]["sec_per_epoch"]
            row["bf16_speedup"] = round(base / row["paths"]["bfloat16"]["sec_per_epoch"], 3)
            if args.main:
                row["float32_vs_main"] = round(
                    row["paths"]["main float32"]["sec_per_epoch"] / base, 3
                )
            if args.critic_rounds:
                for w in workers:
                    steps = runs[w.name + " critic"]
                    row["paths"][w.name]["critic_step_sec"] = round(statistics.median(steps), 4)
                    row["paths"][w.name]["critic_steps_all"] = steps
                c32 = row["paths"]["float32"]["critic_step_sec"]
                row["critic_bf16_speedup"] = round(
                    c32 / row["paths"]["bfloat16"]["critic_step_sec"], 3
                )
                if args.main:
                    row["critic_float32_vs_main"] = round(
                        row["paths"]["main float32"]["critic_step_sec"] / c32, 3
                    )
            for w in workers:  # a full trial from the measured epoch and evaluation
                path = row["paths"][w.name]
                path["eval_sec"] = w.ask("eval")["sec"]
                path["estimated_full_trial_hours"] = _trial_hours(
                    trial_cfg, path["sec_per_epoch"], path["eval_sec"]
                )
                if s >= 16:  # phase-wm: 72 trials of 20 seeds, one after another on one device
                    path["estimated_phase_wm_grid_hours"] = round(
                        72 * path["estimated_full_trial_hours"] * 20 / s, 2
                    )
            save()
            if not args.no_profile:
                for w in workers:
                    if w.name != "main float32":
                        row["paths"][w.name]["profile"] = w.ask("profile")
                        save()
        finally:
            for w in workers:
                w.close()
        print(json.dumps({k: v for k, v in row.items() if k != "paths"}), flush=True)
    if args.eval_share:
        result["eval_share"] = [
            eval_share(args.eval_share, prec, args.device, args.threads)
            for prec in ("float32", "bfloat16")
        ]
        print(json.dumps(result["eval_share"]), flush=True)
    save()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
