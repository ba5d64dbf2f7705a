"""Share of the evaluation in a trial, with and without the dense start and the lesions.

    PYTHONPATH=. .venv/bin/python bench/bench_eval.py [--presets cpu-wm cpu-separation]
        [--rounds 5] [--warmup 20] [--check-epochs 0] [--threads 1]

Per preset (search_spaces/<preset>.yaml, device cpu) the unit costs are measured side by side,
interleaved --rounds times on the same networks after --warmup training epochs (only same-run
ratios count on a shared machine):

- `epoch`: one training epoch (critic rounds and network updates);
- `full`: a regular evaluation without the held-out MI; `full_heldout`: one with it (every
  `train.heldout_mi_every`-th regular evaluation and the last);
- `light`: a dense evaluation off the regular cadence (task, Q, z-scores, ΔW statistics);
- `lesions`: the three lesions of one evaluation (`eval.lesions`, added when due).

Each evaluation includes building its batch (the fixed batch once, as Trainer.evaluate keeps
it). The share of each variant of the schedule is then counted from its own evaluations:
share = eval / (eval + epochs · epoch + critic pre-training), with eval = Σ kind count · unit
cost. Variants (VARIANTS): the preset without a dense start and lesions, and with them at
several settings. With --check-epochs N the --check-variants of the --check-presets are also
trained for real for their first N epochs, and the measured share (timings["eval"] / wall
time) is written beside the share predicted for those N epochs.

Writes bench/results/eval-<host>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

from study.spec import load_trial_config
from study.training import EvalSchedule, Trainer, train

REPO = Path(__file__).resolve().parents[1]
# the variants of each preset's schedule: the dense start and the lesion cadence (epochs,
# epochs, evaluations) it is measured with; "preset" is the preset without both
OFF = {"train.dense_until": 0, "train.lesion_every": 0}


def _variant(until: int, every: int, lesions: int) -> dict:
    return {"train.dense_until": until, "train.dense_every": every, "train.lesion_every": lesions}


VARIANTS = {
    "cpu-wm": {
        "preset": OFF,
        "dense 100/2": _variant(100, 2, 0),
        "dense 100/1": _variant(100, 1, 0),
        "lesions 10": {**OFF, "train.lesion_every": 10},
        "dense 100/2 + lesions 10": _variant(100, 2, 10),
        "dense 100/1 + lesions 5": _variant(100, 1, 5),
    },
    "demo-wm": {
        "preset": OFF,
        "dense 50/2": _variant(50, 2, 0),
        "dense 50/2 + lesions 10": _variant(50, 2, 10),
    },
    "cpu-separation": {
        "preset": OFF,
        "dense 30/1": _variant(30, 1, 0),
        "lesions 5": {**OFF, "train.lesion_every": 5},
        "dense 30/1 + lesions 5": _variant(30, 1, 5),
    },
}


def _config(preset: str, over: dict, threads: int):
    return load_trial_config(
        REPO / "search_spaces" / f"{preset}.yaml",
        {"train.device": "cpu", "train.threads": threads, **over},
    )


def _eval_batch(t: Trainer):
    """The evaluation batch as Trainer.evaluate gets it (the fixed one is built once)."""
    if not t.cfg.train.eval_fixed:
        return t._batch("eval")
    if t._eval_batch is None:
        t._eval_batch = t._batch("eval")
    return t._eval_batch


def unit_costs(preset: str, rounds: int, warmup: int, threads: int) -> dict:
    """Median seconds of one epoch and of each kind of evaluation, interleaved."""
    base = _config(preset, {}, threads).train
    # a schedule where epoch 1 is light and every evaluation has lesions due, for measuring
    cfg = _config(
        preset, {"train.dense_until": 1, "train.dense_every": 1, "train.lesion_every": 1}, threads
    )
    t = Trainer(cfg)
    t0 = time.perf_counter()
    t.pretrain_critic()
    pretrain = time.perf_counter() - t0
    for _ in range(warmup):
        t.train_epoch()
    every = base.eval_every
    heldout_epoch = 0 if base.heldout_mi_every else every
    kinds = {"light": 1, "full": every, "full_heldout": heldout_epoch}
    if base.heldout_mi_every in (0, 1):
        kinds.pop("full_heldout")  # never, or at every regular evaluation (`full` has it)
    samples: dict[str, list[float]] = {k: [] for k in ("epoch", *kinds, "lesions")}
    sections: dict[str, dict[str, list[float]]] = {}
    block = max(1, min(every, 10))
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(block):
            t.train_epoch()
        samples["epoch"].append((time.perf_counter() - t0) / block)
        for kind, epoch in kinds.items():
            before = dict(t.timings)
            t0 = time.perf_counter()
            t.evaluation.run(
                t.net,
                _eval_batch(t),
                mi=t.mi,
                gen=t.streams.eval_gen,
                w_rec0=t.w_rec0,
                epoch=epoch,
                rec0=t.rec0,
            )
            spent = time.perf_counter() - t0
            lesions = t.timings["eval.lesions"] - before.get("eval.lesions", 0.0)
            samples[kind].append(spent - lesions)
            samples["lesions"].append(lesions)
            for key, v in t.timings.items():
                if key.startswith("eval.") and key != "eval.lesions":
                    sections.setdefault(kind, {}).setdefault(key, []).append(
                        v - before.get(key, 0.0)
                    )
    med = {k: statistics.median(v) for k, v in samples.items()}
    if "full_heldout" not in med:
        med["full_heldout"] = med["full"]
    med["pretrain"] = pretrain
    return {
        "median_s": {k: round(v, 5) for k, v in med.items()},
        "sections_median_s": {
            kind: {k: round(statistics.median(v), 5) for k, v in secs.items()}
            for kind, secs in sections.items()
        },
        "all_s": {k: [round(x, 5) for x in v] for k, v in samples.items()},
    }


def counts(train_cfg, epochs: int | None = None) -> dict[str, int]:
    """How many evaluations of each kind a schedule has (over its first `epochs` epochs)."""
    tc = train_cfg if epochs is None else train_cfg.model_copy(update={"epochs": epochs})
    sch = EvalSchedule.of(tc)
    out = {"light": 0, "full": 0, "full_heldout": 0, "lesions": 0}
    for e in range(tc.epochs + 1):
        if not sch.due(e):
            continue
        if sch.is_light(e):
            out["light"] += 1
        else:
            h = tc.heldout_mi_every
            heldout = sch.regular(e) and h and ((e // sch.every) % h == 0 or e >= sch.epochs)
            out["full_heldout" if heldout else "full"] += 1
        if tc.lesion_every and (sch.index(e) % tc.lesion_every == 0 or e >= sch.epochs):
            out["lesions"] += 1
    return out


def predicted_share(cost: dict, n: dict, epochs: int) -> dict:
    ev = sum(n[k] * cost[k] for k in n)
    tr = epochs * cost["epoch"] + cost["pretrain"]
    return {
        "evaluations": n,
        "eval_s": round(ev, 2),
        "train_s": round(tr, 2),
        "share": round(ev / (ev + tr), 4),
    }


def measured_share(preset: str, over: dict, epochs: int, threads: int) -> dict:
    """Train the variant for its first `epochs` epochs: the evaluation's share of the wall time."""
    cfg = _config(preset, {**over, "train.epochs": epochs}, threads)
    t0 = time.perf_counter()
    res = train(cfg)
    wall = time.perf_counter() - t0
    return {
        "epochs": epochs,
        "wall_s": round(wall, 2),
        "eval_s": round(res.timings["eval"], 2),
        "share": round(res.timings["eval"] / wall, 4),
        "evaluations": len(res.history),
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--presets", nargs="+", default=["cpu-wm", "cpu-separation"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=20, help="training epochs before timing")
    p.add_argument("--check-epochs", type=int, default=0, help="also train N epochs for real")
    p.add_argument(
        "--check-variants",
        nargs="+",
        default=["preset", "dense 100/2 + lesions 10"],
        help="the variants trained for real with --check-epochs",
    )
    p.add_argument(
        "--check-presets",
        nargs="+",
        default=["cpu-wm"],
        help="the presets whose --check-variants are trained for real",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {"machine": machine_info("cpu"), "threads": args.threads, "presets": {}}
    for preset in args.presets:
        cost = unit_costs(preset, args.rounds, args.warmup, args.threads)
        med = cost["median_s"]
        rec: dict = {"unit_costs": cost, "variants": {}}
        for name, over in VARIANTS[preset].items():
            tc = _config(preset, over, args.threads).train
            row = {"overrides": over, **predicted_share(med, counts(tc), tc.epochs)}
            checked = preset in args.check_presets and name in args.check_variants
            if args.check_epochs and checked:
                n = min(args.check_epochs, tc.epochs)
                row["check"] = measured_share(preset, over, n, args.threads)
                row["check"]["predicted_share"] = predicted_share(med, counts(tc, n), n)["share"]
            rec["variants"][name] = row
            print(preset, name, {k: row[k] for k in ("evaluations", "share")}, flush=True)
        result["presets"][preset] = rec
    host = result["machine"]["hostname"]
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"eval-{host}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
