"""How far a training epoch is from its arithmetic floor: FLOPs / this machine's GEMM rate.

    PYTHONPATH=. python bench/bench_floor.py [--cells wm-k2 wm-k3 sep] [--epochs 5]

For each cell (cpu-wm at N = 48, 8 seeds, K = 2 and K = 3; cpu-separation (GRU), 8 seeds) the
FLOP model of bench/flops.py gives the matrix-product FLOPs per epoch by part; the same run
measures the single-thread float32 GEMM rate (a 1024² product, and the recurrence's and the
critic's own batched shapes) and times training epochs of the torch code ("torch") and of the
compiled kernels ("native", study/core/_native), interleaved epoch by epoch (the switch is
STUDY_NATIVE, read on every call). The floor is
FLOPs / (1024² rate); `x_floor` = measured / floor; `achieved` = floor / measured (the
fraction of the GEMM rate the epoch sustains). Times are given both as CPU seconds of the
process (thread time: what this process ran, the better measure on a shared machine) and as
wall seconds, each against the GEMM rate measured the same way; the load average before and
after says what else was running. One torch thread throughout. Writes
bench/results/floor-<host>.json.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _machine import machine_info  # noqa: E402
from flops import trial_flops  # noqa: E402

from study.spec import load_trial_config  # noqa: E402
from study.training.device import keep_freed_memory  # noqa: E402
from study.training.loop import Trainer  # noqa: E402

CELLS = {"wm-k2": ("cpu-wm", 2), "wm-k3": ("cpu-wm", 3), "sep": ("cpu-separation", 2)}
PRESETS = HERE.parent / "search_spaces"
# variant -> STUDY_NATIVE: "torch" runs the torch code, "native" the compiled kernels
VARIANTS = {"torch": "0", "native": "1"}


def use(variant: str) -> None:
    """Switch this process to a variant (read by study.core._native.load on every call)."""
    os.environ["STUDY_NATIVE"] = VARIANTS[variant]


def config(preset: str, k: int):
    """The cell's TrialConfig: 8 seeds, one thread; cpu-wm at N = 48 with K groups."""
    return load_trial_config(PRESETS / f"{preset}.yaml", _overrides(preset, k))


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median (cpu seconds, wall seconds) of `repeats` calls after one warm-up call."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def gemm_rates(
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]], repeats: int = 7
) -> dict[str, dict[str, float]]:
    """GFLOP/s (cpu, wall) of torch.matmul on each (a shape, b shape), float32, one thread."""
    out = {}
    for name, (sa, sb) in shapes.items():
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(*sa, generator=g), torch.randn(*sb, generator=g)
        flop = 2.0 * a.numel() * sb[-1]
        n = max(1, int(2e9 // flop))  # enough calls per sample for a steady timer

        def run(a=a, b=b, n=n):
            for _ in range(n):
                torch.matmul(a, b)

        cpu, wall = _timed(run, repeats)
        out[name] = {
            "gflops_cpu": round(flop * n / cpu / 1e9, 2),
            "gflops_wall": round(flop * n / wall / 1e9, 2),
            "a": list(sa),
            "b": list(sb),
        }
    return out


def bench_cell(cell: str, epochs: int, variants: list[str]) -> dict:
    preset, k = CELLS[cell]
    cfg = config(preset, k)
    model = trial_flops(cfg)
    z = model["sizes"]
    s, bsz, n, g = z["S"], z["B"], z["N"], z["gates"]
    r, m, h = s * z["P"], model["critic_rows"], cfg.critic.width
    rates = gemm_rates(
        {
            "gemm_1024": ((1024, 1024), (1024, 1024)),
            "recurrence_step": ((s, bsz, n), (s, n, g * n)),
            "critic_hidden_layer": ((r, m, h), (r, h, h)),
        }
    )
    trainers = {}
    for v in variants:
        use(v)
        tr = Trainer(cfg)
        tr.train_epoch()  # warm-up (and builds the kernels)
        trainers[v] = tr
    times = {v: {"cpu": [], "wall": []} for v in variants}
    for _ in range(epochs):
        for v in variants:
            use(v)
            c0, w0 = time.thread_time(), time.perf_counter()
            trainers[v].train_epoch()
            times[v]["cpu"].append(time.thread_time() - c0)
            times[v]["wall"].append(time.perf_counter() - w0)
    flop = model["per_epoch_total"]
    floor_cpu = flop / (rates["gemm_1024"]["gflops_cpu"] * 1e9)
    floor_wall = flop / (rates["gemm_1024"]["gflops_wall"] * 1e9)
    rows = []
    for v in variants:
        c, w = statistics.median(times[v]["cpu"]), statistics.median(times[v]["wall"])
        rows.append(
            {
                "variant": v,
                "cpu_s_per_epoch": round(c, 4),
                "wall_s_per_epoch": round(w, 4),
                "x_floor_cpu": round(c / floor_cpu, 2),
                "x_floor_wall": round(w / floor_wall, 2),
                "achieved_gflops_cpu": round(flop / c / 1e9, 2),
                "achieved_fraction_cpu": round(floor_cpu / c, 3),
                "all_cpu": [round(x, 4) for x in times[v]["cpu"]],
                "all_wall": [round(x, 4) for x in times[v]["wall"]],
            }
        )
        print(
            f"{cell:6s} {v:5s} {c:.3f} s cpu ({w:.3f} wall)  floor {floor_cpu:.3f} s cpu  "
            f"x{rows[-1]['x_floor_cpu']} of floor",
            flush=True,
        )
    return {
        "cell": cell,
        "preset": preset,
        "groups": k,
        "overrides": _overrides(preset, k),
        "flops": model,
        "gemm_rates": rates,
        "floor_s_per_epoch_cpu": round(floor_cpu, 4),
        "floor_s_per_epoch_wall": round(floor_wall, 4),
        "epochs_timed": epochs,
        "rows": rows,
    }


def _overrides(preset: str, k: int) -> dict:
    over = {"seeds": 8, "train.threads": 1}
    if preset == "cpu-wm":
        over.update({"network.hidden": 48, "partition.groups": k, "task.wm.n_bits": "groups"})
    return over


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per variant")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    result = {
        "benchmark": "bench_floor",
        "machine": machine_info("cpu"),
        "note": "torch: STUDY_NATIVE=0 (the torch code); native: the compiled kernels",
        "cells": [],
    }
    out = (
        Path(args.out)
        if args.out
        else (HERE / "results" / f"floor-{result['machine']['hostname']}.json")
    )
    for cell in args.cells:
        result["cells"].append(bench_cell(cell, args.epochs, args.variants))
        result["load_average_after"] = machine_info("cpu")["load_average"]
        out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
