"""One short probe of a separation preset: R² on the scored steps as training goes.

    nice -n 5 python docs/results/separation-preset/probe.py LABEL [--base YAML] [--seeds S]
        [--epochs E] [--score-every K] [--evaluate] [--set key=value ...] [--log probes.jsonl]

Trains `--base` (default search_spaces/cpu-separation.yaml) with the `--set` overrides, one torch
thread, and every K epochs scores the fixed test batch on the scored steps t >= washout:
R²_k = 1 − Σ(y − ŷ)² / Σ(y − ȳ)² per output k, sums over test sequences and t >= washout, then the
mean over the 6 outputs (Lorenz x y z, Rössler x y z) per seed, as the reference's success line
(mean R² > 0.96, docs/method.md §11) reads it. Prints one line per scoring and appends a JSON
record per scoring to `--log`.

Without `--evaluate` only training is timed (scoring is timed apart and left out); with it the
loop is the one of `study.train` (critic pre-training, the logged evaluation at epoch 0, every
`train.eval_every` epochs and at the end), scores at every logged evaluation, and the wall time
includes the evaluations; the record then also carries q_func_z and the logged r2 (all steps),
and `final` averages the last `train.final_window` scorings, as the run-data finals do.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from study import Trainer, load_trial_config
from study.core import scores

NAMES = ("Lx", "Ly", "Lz", "Rx", "Ry", "Rz")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("label")
    p.add_argument("--base", default="search_spaces/cpu-separation.yaml")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--score-every", type=int, default=20)
    p.add_argument("--evaluate", action="store_true")
    p.add_argument("--set", action="append", default=[], dest="sets")
    p.add_argument("--log", default="docs/results/separation-preset/probes.jsonl")
    return p.parse_args()


def main() -> None:
    a = parse()
    overrides = {"seeds": a.seeds, "train.threads": 1, "mi.weight": 0.0}
    for item in a.sets:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    if a.epochs is not None:
        overrides["train.epochs"] = a.epochs
    cfg = load_trial_config(a.base, overrides)
    torch.manual_seed(0)
    tr = Trainer(cfg)
    task, s, upe = tr.task, cfg.seeds, cfg.train.updates_per_epoch
    x, y = task.test_set(cfg.train.eval_batch)  # (B, T, 3), (B, T, 6)
    inputs = torch.as_tensor(np.ascontiguousarray(x.transpose(1, 0, 2)))[None].expand(
        s, -1, -1, -1
    )
    targets = torch.as_tensor(np.ascontiguousarray(y.transpose(1, 0, 2)))[None].expand(
        s, -1, -1, -1
    )
    w = task.washout
    head = {
        "label": a.label,
        "sets": {k: v for k, v in overrides.items() if k not in ("train.threads",)},
        "seeds": s,
        "T": task.seq_len,
        "washout": w,
        "hidden": cfg.network.hidden,
        "batch": cfg.task.batch,
        "lr": cfg.optim.lr,
        "n_train": cfg.task.chaos.n_train,
        "mi_weight": cfg.mi.weight,
        "evaluate": a.evaluate,
    }
    print(json.dumps(head), flush=True)
    scored_so_far: list[np.ndarray] = []
    clock = {"train": 0.0, "score": 0.0, "cpu": 0.0}

    @torch.no_grad()
    def score(extra: dict | None = None) -> None:
        t0 = time.perf_counter()
        x0 = torch.zeros(s, inputs.shape[2], cfg.network.hidden)
        out = tr.net(inputs, x0, None, n_transient=task.transient).outputs  # (S, T, B, 6)
        per = scores.r2(out[:, w:], targets[:, w:]).double().numpy()  # (S, 6)
        seed_r2 = per.mean(-1)
        scored_so_far.append(seed_r2)
        clock["score"] += time.perf_counter() - t0
        k = cfg.train.final_window
        rec = dict(
            head,
            epoch=tr.epoch,
            updates=tr.epoch * upe,
            wall_train=round(clock["train"], 1),
            cpu_train=round(clock["cpu"], 1),
            r2_scored=[round(v, 4) for v in seed_r2],
            median=round(float(np.median(seed_r2)), 4),
            worst=round(float(seed_r2.min()), 4),
            per_output={n: round(float(np.median(per[:, i])), 3) for i, n in enumerate(NAMES)},
            final_window=[round(v, 4) for v in np.mean(scored_so_far[-k:], axis=0)],
        )
        if extra:
            rec.update(extra)
        print(
            f"{a.label} ep {tr.epoch:4d} upd {rec['updates']:5d} t {rec['wall_train']:7.1f}s "
            f"cpu {rec['cpu_train']:7.1f}s "
            f"R2 med {rec['median']:.4f} worst {rec['worst']:.4f} "
            + " ".join(f"{n} {v:.3f}" for n, v in rec["per_output"].items())
            + (f" | {extra}" if extra else ""),
            flush=True,
        )
        with open(a.log, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def logged() -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        m = tr.evaluate()
        tr.record(m)
        clock["train"] += time.perf_counter() - t0
        clock["cpu"] += time.process_time() - c0
        return {
            "q_func_z": [round(float(v), 2) for v in m["q_func_z"]],
            "r2_logged": [round(float(v), 4) for v in m["r2"]],
        }

    t0, c0 = time.perf_counter(), time.process_time()
    tr.pretrain_critic()
    clock["train"] += time.perf_counter() - t0
    clock["cpu"] += time.process_time() - c0
    if a.evaluate:
        score(logged())
    every = cfg.train.eval_every if a.evaluate else a.score_every
    while tr.epoch < cfg.train.epochs:
        t0, c0 = time.perf_counter(), time.process_time()
        tr.train_epoch()
        clock["train"] += time.perf_counter() - t0
        clock["cpu"] += time.process_time() - c0
        if tr.epoch % every == 0 or tr.epoch == cfg.train.epochs:
            score(logged() if a.evaluate else None)
    parts = {k: round(v, 1) for k, v in tr.timings.items()}
    print(
        f"# {a.label}: {clock['train']:.0f} s training ({clock['cpu']:.0f} s CPU), "
        f"{clock['score']:.0f} s scoring; wall parts {json.dumps(parts)}"
    )
    with open(a.log, "a") as f:
        f.write(json.dumps(dict(head, end=True, wall_parts=parts, **clock)) + "\n")


if __name__ == "__main__":
    Path("docs/results/separation-preset").mkdir(parents=True, exist_ok=True)
    main()
