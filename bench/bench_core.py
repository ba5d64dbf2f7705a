"""Core benchmark: leaky-RNN forward / BPTT over the reference segment and a critic step vs S.

Run: .venv/bin/python bench/bench_core.py [--threads N] [--device cpu|cuda] [--repeats R]
Writes bench/results/core-<hostname>[-cuda].json with the machine details; prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _machine
sys.path.insert(0, str(HERE.parent))  # study, when the package is not installed

from _machine import machine_info  # noqa: E402

from study.core.mi import SubgroupMI  # noqa: E402
from study.core.networks import LeakyRNN  # noqa: E402
from study.core.optim import ReplicaOptimizer  # noqa: E402
from study.core.partition import groups  # noqa: E402
from study.training.device import keep_freed_memory  # noqa: E402

# reference working-memory sizes (docs/method.md §2.1, §3.2, §4, §5.1)
N_HIDDEN, N_IN, N_OUT, BATCH = 40, 4, 2, 20
TRANSIENT, SEGMENT = 1000, 2000
ALPHA, NOISE = 0.1, 0.1
WIDTH, DEPTH, REF_PAIRS, SUB_PAIRS = 512, 2, BATCH * SEGMENT, 4096


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], None], device: torch.device, repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls after one warm-up call (synchronised on a GPU)."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def leaky_call(s: int, device: torch.device, *, backward: bool) -> Callable[[], None]:
    """One network pass as the trainer makes it: transient without grad, then the segment.

    Forward only is a critic batch (no readout, no grad); forward+backward is the network step's
    BPTT through the 2000-step segment on the per-seed MSE (without the MI term).
    """
    net = LeakyRNN(s, N_IN, N_HIDDEN, N_OUT, alpha=ALPHA, seed=0).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    t_len = TRANSIENT + SEGMENT
    # pulse-like inputs (duty ≈ 0.077, docs/method.md §2.2) and ±1 targets; data generation untimed
    inputs = (torch.rand(s, t_len, BATCH, N_IN, generator=gen, device=device) < 0.077).float()
    targets = torch.rand(s, SEGMENT, BATCH, N_OUT, generator=gen, device=device).round() * 2 - 1

    def call() -> None:
        # state noise and x0 are drawn per call, as in Trainer._batch
        x0 = torch.randn(s, BATCH, N_HIDDEN, generator=gen, device=device)
        noise = torch.randn(s, t_len, BATCH, N_HIDDEN, generator=gen, device=device).mul_(NOISE)
        if not backward:
            with torch.no_grad():
                net(inputs, x0, noise, n_transient=TRANSIENT, outputs=False)
            return
        out = net(inputs, x0, noise, n_transient=TRANSIENT)
        loss = (out.outputs - targets).square().mean(dim=(1, 2, 3)).sum()
        net.zero_grad(set_to_none=True)
        loss.backward()

    return call


def critic_call(s: int, pairs: int, device: torch.device) -> Callable[[], None]:
    """One `SubgroupMI.critic_step` at K = 2, N = 40 on (S, 40 000, N) activity."""
    mi = SubgroupMI(
        s,
        groups(N_HIDDEN, 2),
        pairs=pairs if pairs < REF_PAIRS else 0,
        critic={"width": WIDTH, "depth": DEPTH},
        seed=0,
    ).to(device)
    # re-create the optimiser after the move so its state lives on the device (as train.py does)
    mi.optimizer = ReplicaOptimizer(
        mi.critic.parameters(), kind="rmsprop", lr=0.003, clip_norm=4.0
    )
    gen = torch.Generator(device=device).manual_seed(1)
    act = torch.randn(s, REF_PAIRS, N_HIDDEN, generator=gen, device=device)  # states x

    def call() -> None:
        mi.critic_step(act, gen, transform=torch.tanh)  # MI on rates tanh(x), docs/method.md §4.1

    return call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="torch intra-op threads (default: all cores)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (median)")
    parser.add_argument("--seeds", default="1,4,16", help="population sizes for the RNN cases")
    parser.add_argument("--critic-seeds", default="1,4", help="population sizes for the critic")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        keep_freed_memory()  # as the trainer does: no page faults per large critic activation
    device = torch.device(args.device)
    seeds = [int(v) for v in args.seeds.split(",")]
    critic_seeds = [int(v) for v in args.critic_seeds.split(",")]

    cases = []
    for backward in (False, True):
        for s in seeds:
            name = "leaky forward+backward" if backward else "leaky forward (no grad)"
            cases.append(
                (name, s, None, lambda s=s, b=backward: leaky_call(s, device, backward=b))
            )
    for pairs in (REF_PAIRS, SUB_PAIRS):
        for s in critic_seeds:
            cases.append(("critic step", s, pairs, lambda s=s, p=pairs: critic_call(s, p, device)))

    results = []
    print(f"{'case':<26}{'S':>4}{'pairs':>8}{'s/call':>10}{'s/seed':>10}   all repeats")
    for name, s, pairs, build in cases:
        times = _time(build(), device, args.repeats)
        med = statistics.median(times)
        results.append(
            {
                "case": name,
                "seeds": s,
                "pairs": pairs,
                "seconds_per_call": med,
                "seconds_per_seed": med / s,
                "repeats": times,
            }
        )
        print(
            f"{name:<26}{s:>4}{pairs or '':>8}{med:>10.3f}{med / s:>10.4f}   "
            + " ".join(f"{t:.3f}" for t in times),
            flush=True,
        )

    def per_seed(name, s, pairs=None):
        for r in results:
            if r["case"] == name and r["seeds"] == s and r["pairs"] == pairs:
                return r["seconds_per_seed"]
        return None

    ratios = {}
    for name in ("leaky forward (no grad)", "leaky forward+backward"):
        lo, hi = per_seed(name, min(seeds)), per_seed(name, max(seeds))
        ratios[f"{name}: per-seed time S={max(seeds)} / S={min(seeds)}"] = hi / lo
    for pairs in (REF_PAIRS, SUB_PAIRS):
        lo, hi = (
            per_seed("critic step", s, pairs) for s in (min(critic_seeds), max(critic_seeds))
        )
        ratios[
            f"critic step {pairs} pairs: per-seed time S={max(critic_seeds)} / "
            f"S={min(critic_seeds)}"
        ] = hi / lo
    for key, value in ratios.items():
        print(f"{key}: {value:.3f}")

    record = {
        "benchmark": "bench_core",
        "machine": machine_info(args.device),
        "settings": {
            "threads": args.threads,
            "device": args.device,
            "repeats": args.repeats,
            "statistic": "median after one warm-up call",
            "n_hidden": N_HIDDEN,
            "batch": BATCH,
            "transient": TRANSIENT,
            "segment": SEGMENT,
            "noise": NOISE,
            "critic_width": WIDTH,
            "critic_depth": DEPTH,
        },
        "results": results,
        "per_seed_ratios": ratios,
    }
    suffix = "" if args.device == "cpu" else f"-{args.device}"  # GPU hosts may share a name
    out = args.out or HERE / "results" / f"core-{record['machine']['hostname']}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
