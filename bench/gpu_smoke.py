"""Both tasks and both networks train on CUDA: a few epochs of the smoke budgets, per device.

python bench/gpu_smoke.py [--out FILE]      (run on a GPU machine; prints and writes JSON)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_info

from study.spec import load_trial_config
from study.training import train

SMOKE = Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml"
CASES = {
    "working_memory/leaky": {},
    "working_memory/gru": {"network.kind": "gru"},
    "chaos_separation/gru": {
        "task.name": "chaos_separation",
        "network.kind": "gru",
        "network.noise": 0.0,
        "train.corr_pooling": "per_sequence",
    },
    "working_memory/leaky/K=3/total_correlation": {
        "partition.groups": 3,
        "task.wm.n_bits": "groups",
        "mi.penalty": "total_correlation",
    },
    "working_memory/leaky/mine": {"mi.estimator": "mine"},
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    args = p.parse_args()
    out = {"machine": machine_info("cuda"), "cases": {}}
    ok = True
    for name, over in CASES.items():
        row = {}
        for device in ("cpu", "cuda"):
            cfg = load_trial_config(SMOKE, {**over, "train.device": device})
            t0 = time.perf_counter()
            res = train(cfg)
            last = res.history[-1].metrics
            finite = all(
                math.isfinite(v)
                for k in ("task_loss", "mi", "q_func", "q_struct")
                for v in last[k]
            )
            ok &= res.status == "finished" and finite
            row[device] = {
                "status": res.status,
                "finite": finite,
                "seconds": round(time.perf_counter() - t0, 2),
                "final": {k: [round(v, 4) for v in vals] for k, vals in last.items()},
            }
        out["cases"][name] = row
        print(
            name, {d: (r["status"], r["finite"], r["seconds"]) for d, r in row.items()}, flush=True
        )
    out["all_ok"] = ok
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print("ALL OK" if ok else "FAILURES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
