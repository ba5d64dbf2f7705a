"""Where a training epoch's time goes: phases (CPU time) and the top operators (torch.profiler).

    PYTHONPATH=. python bench/profile_train.py [--cells wm-k2 wm-k3 sep] [--variants base all]

For each cell and variant (as bench/bench_floor.py: torch code or compiled kernels), one thread:
1. phases: CPU seconds per epoch of data generation (inputs, x0, state noise), critic batches
   (the no-grad recurrence), critic steps, and the network step (its own data excluded),
   from thread time around each method over `--epochs` epochs;
2. operators: torch.profiler over `--profile-epochs` epochs, the top operators by self time
   (name and input shapes), each with its share of the profiled time and calls per epoch;
3. one evaluation with and one without the held-out MI critic, CPU seconds.
Writes bench/results/profile-<host>.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _machine import machine_info  # noqa: E402
from bench_floor import CELLS, VARIANTS, config, use  # noqa: E402

from study.training.device import keep_freed_memory  # noqa: E402
from study.training.loop import Trainer  # noqa: E402


class PhaseClock:
    """Thread-time accumulators wrapped around Trainer methods (outermost call only)."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self._depth = 0

    def wrap(self, obj, name: str, phase: str) -> None:
        original = getattr(obj, name)
        clock = self

        def timed(*args, **kwargs):
            c0 = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                clock.totals[phase] = clock.totals.get(phase, 0.0) + time.thread_time() - c0

        setattr(obj, name, timed)


def phases(tr, epochs: int) -> dict[str, float]:
    """CPU seconds per epoch by phase; nested phases are reported net of their children."""
    clock = PhaseClock()
    clock.wrap(tr, "_batch", "data")
    net_forward = tr.net.forward
    clock.wrap(tr, "_critic_round", "critic_round")
    clock.wrap(tr, "_network_step", "network_step")
    in_round = {"on": False}
    round_fn = tr._critic_round

    def critic_round(n_steps):
        in_round["on"] = True
        try:
            return round_fn(n_steps)
        finally:
            in_round["on"] = False

    tr._critic_round = critic_round

    def forward(*args, **kwargs):
        c0 = time.thread_time()
        try:
            return net_forward(*args, **kwargs)
        finally:
            if in_round["on"]:
                clock.totals["critic_batch_forward"] = (
                    clock.totals.get("critic_batch_forward", 0.0) + time.thread_time() - c0
                )

    tr.net.forward = forward
    c0 = time.thread_time()
    for _ in range(epochs):
        tr.train_epoch()
    total = time.thread_time() - c0
    del tr._critic_round, tr.net.forward, tr._batch, tr._network_step  # back to the class's
    t = {k: v / epochs for k, v in clock.totals.items()}
    # _batch is called inside both the critic round and the network step
    return {
        "epoch": total / epochs,
        "data": t.get("data", 0.0),
        "critic_batch_forward": t.get("critic_batch_forward", 0.0),
        "critic_steps": t.get("critic_round", 0.0)
        - t.get("critic_batch_forward", 0.0)
        - _data_in(tr, "critic", t),
        "network_step": t.get("network_step", 0.0) - _data_in(tr, "network", t),
    }


def _data_in(tr, purpose: str, t: dict) -> float:
    # the critic round draws one batch per round (reuse_batch) and the network step one: the
    # data time splits in proportion to their numbers of batches
    c = tr.cfg.critic
    critic_batches = (1 if c.reuse_batch else c.steps) if tr.mi is not None and c.steps else 0
    share = (
        critic_batches / (critic_batches + 1) if purpose == "critic" else 1 / (critic_batches + 1)
    )
    return t.get("data", 0.0) * share


def top_ops(tr, epochs: int, rows: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(epochs):
            tr.train_epoch()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return [
        {
            "op": e.key,
            "shapes": str(e.input_shapes)[:120],
            "share": round(e.self_cpu_time_total / total, 4),
            "calls_per_epoch": round(e.count / epochs, 1),
            "self_ms_per_epoch": round(e.self_cpu_time_total / 1e3 / epochs, 2),
        }
        for e in top
    ]


def evaluation(tr) -> dict[str, float]:
    out = {}
    for heldout in (False, True):
        tr.history = [] if heldout else [None]  # the held-out critic runs at evaluation 0
        c0 = time.thread_time()
        tr.evaluate()
        out["with_heldout" if heldout else "plain"] = round(time.thread_time() - c0, 3)
    tr.history = []
    return out


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--profile-epochs", type=int, default=2)
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    result = {"benchmark": "profile_train", "machine": machine_info("cpu"), "cells": []}
    out = (
        Path(args.out)
        if args.out
        else (HERE / "results" / f"profile-{result['machine']['hostname']}.json")
    )
    for cell in args.cells:
        preset, k = CELLS[cell]
        for v in args.variants:
            use(v)
            tr = Trainer(config(preset, k))
            tr.train_epoch()
            entry = {
                "cell": cell,
                "variant": v,
                "phases_cpu_s_per_epoch": {
                    k2: round(v2, 4) for k2, v2 in phases(tr, args.epochs).items()
                },
                "evaluation_cpu_s": evaluation(tr),
                "top_ops": top_ops(tr, args.profile_epochs, args.rows),
                "load_average": machine_info("cpu")["load_average"],
            }
            result["cells"].append(entry)
            ph = entry["phases_cpu_s_per_epoch"]
            print(
                f"{cell} {v}: "
                + ", ".join(f"{k2} {v2:.3f}" for k2, v2 in ph.items())
                + f" | eval {entry['evaluation_cpu_s']}",
                flush=True,
            )
            for op in entry["top_ops"][:8]:
                print(
                    f"    {op['share']:6.1%} {op['self_ms_per_epoch']:8.1f} ms  "
                    f"{op['calls_per_epoch']:7.0f}x  {op['op']} {op['shapes'][:70]}"
                )
            out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
