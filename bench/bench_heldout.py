"""What does the held-out MI estimate (`mi_heldout`) cost on a cpu-wm trial?

    .venv/bin/python bench/bench_heldout.py [--epochs 1000] [--every 10] [--device cpu]

Trains the cpu-wm preset twice, side by side in one run (two processes started together, one
thread each): once with `train.heldout_mi_every` = --every and once with it 0 (never). Reports
the ratio of the two trial wall times, the cost of one held-out estimate (from the trainer's
`eval.mi.heldout` timing) and, from those, the overhead a full cpu-wm trial (1000 epochs, 41
evaluations) would pay at each choice of `heldout_mi_every`. Writes
bench/results/heldout-<host>.json with the machine's details.

On the 2-core VM, loaded by other jobs, at 250 epochs: every = 10 → ratio 1.068, 7.6 s per
estimate, 5.8 % extrapolated to a full trial (heldout-vm.json); every = 5 → ratio 1.095,
14.7 s per estimate under heavier load, 15.3 % extrapolated (heldout-every5-vm.json). Hence the
default of 10: 5 estimates per cpu-wm trial (epochs 0, 250, 500, 750, 1000), well under 15 %.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))

from _machine import machine_info  # noqa: E402

PRESET = REPO / "search_spaces" / "cpu-wm.yaml"


def worker(every: int, epochs: int, device: str, out: Path) -> None:
    """One trial in this process; writes its wall time and the trainer's timings to `out`."""
    from study.spec import load_trial_config
    from study.training import train

    cfg = load_trial_config(
        PRESET,
        {
            "train.heldout_mi_every": every,
            "train.epochs": epochs,
            "train.threads": 1,
            "train.device": device,
        },
    )
    t0 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t0
    n_heldout = sum(
        1 for r in result.history if any(v == v for v in r.metrics["mi_heldout"])
    )  # finite = estimated
    out.write_text(
        json.dumps(
            {
                "every": every,
                "wall_s": wall,
                "status": result.status,
                "evaluations": len(result.history),
                "heldout_runs": n_heldout,
                "timings": result.timings,
            }
        )
    )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument(
        "--every",
        type=int,
        default=None,
        help="heldout_mi_every of the timed trial (default: the config default)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", nargs=2, metavar=("EVERY", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(int(args.worker[0]), args.epochs, args.device, Path(args.worker[1]))
        return 0
    from study.spec import TrainConfig, load_trial_config

    every = args.every if args.every is not None else TrainConfig().heldout_mi_every
    tmp = Path(__import__("tempfile").mkdtemp(prefix="bench-heldout-"))
    procs = {}
    for e in (every, 0):  # started together: both see the same machine load
        procs[e] = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--epochs",
                str(args.epochs),
                "--device",
                args.device,
                "--worker",
                str(e),
                str(tmp / f"every{e}.json"),
            ],
            cwd=REPO,
        )
    for e, proc in procs.items():
        if proc.wait():
            raise SystemExit(f"bench_heldout: the worker with heldout_mi_every={e} failed")
    on, off = (json.loads((tmp / f"every{e}.json").read_text()) for e in (every, 0))
    per_heldout = on["timings"]["eval.mi.heldout"] / max(on["heldout_runs"], 1)
    # a full cpu-wm trial: the preset's epochs and evaluations, the off trial's time per epoch
    cfg = load_trial_config(PRESET, {})
    full_evals = cfg.train.epochs // cfg.train.eval_every + 1
    full_trial = off["wall_s"] * cfg.train.epochs / args.epochs
    extrapolated = {}
    for k in (1, 2, 5, 10, 20, 40):
        runs = len({i for i in range(full_evals) if i % k == 0} | {full_evals - 1})
        extrapolated[str(k)] = {
            "heldout_runs": runs,
            "overhead": round(runs * per_heldout / full_trial, 4),
        }
    result = {
        "machine": machine_info(args.device),
        "preset": PRESET.name,
        "epochs": args.epochs,
        "device": args.device,
        "threads_per_trial": 1,
        "side_by_side": True,
        "heldout_mi_every": every,
        "heldout_config": cfg.mi.heldout.model_dump(),
        "wall_s_with": round(on["wall_s"], 2),
        "wall_s_without": round(off["wall_s"], 2),
        "ratio_with_over_without": round(on["wall_s"] / off["wall_s"], 4),
        "heldout_runs": on["heldout_runs"],
        "evaluations": on["evaluations"],
        "seconds_per_heldout_estimate": round(per_heldout, 3),
        "full_trial_overhead_by_every": extrapolated,
        "timings_with": {k: round(v, 3) for k, v in on["timings"].items()},
        "timings_without": {k: round(v, 3) for k, v in off["timings"].items()},
    }
    host = result["machine"].get("hostname", "host")
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"heldout-{host}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
