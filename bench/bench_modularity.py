"""Cost and noise of the null-referenced and partition-free modularity metrics.

    PYTHONPATH=. .venv/bin/python bench/bench_modularity.py [--train-epochs 300]

Three parts, each measured side by side inside this one run (only same-run ratios count):

1. **Evaluation noise of q_func.** cpu-wm networks trained for --train-epochs at λ = 0 and at
   the preset's λ are evaluated --repeats times each on fresh evaluation batches of several
   sizes; the std across repeats of q_func and q_func_z (per seed, then the mean over seeds) is
   the evaluation noise, and its ratio to the preset's eval_batch says what a larger batch buys.
   Along the training run itself, the same networks are scored every 25 epochs on a fresh
   batch of 40, a fresh batch of 160 and one fixed batch of 40 (`train.eval_fixed`): the RMS
   of successive differences of each curve shows the jitter an onset rule sees.
2. **Cost of each new metric** at the cpu-wm evaluation size (N = 40, eval batch 40, 200 + 400
   steps) and at N = 100: functional adjacency, Q of the design, the random-partition z-scores,
   Q and z of ΔW, Leiden + Q + NMI of the found partitions; medians of --reps calls.
3. **Share of the evaluation in a cpu-wm trial**: one evaluation against the eval_every (25)
   training epochs before it, interleaved --reps times, with the per-section breakdown
   (eval.task, eval.mi, eval.modularity, eval.specialisation).

Writes bench/results/modularity-<host>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

from study.core import communities, modularity
from study.spec import load_trial_config
from study.training import Trainer

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "search_spaces" / "cpu-wm.yaml"


def _trainer(over: dict) -> Trainer:
    return Trainer(load_trial_config(PRESET, {"train.device": "cpu", **over}))


EVAL_VARIANTS = {
    "fresh 40": {"train.eval_batch": 40},
    "fresh 160": {"train.eval_batch": 160},
    "fixed 40": {"train.eval_batch": 40, "train.eval_fixed": True},
}


def _func_q(t: Trainer) -> tuple[np.ndarray, np.ndarray]:
    adj = modularity.functional_adjacency(_forward(t).rows())
    return (
        modularity.modularity(adj, t.labels).double().numpy(),
        modularity.modularity_zscore(adj, t.labels, t.null_partitions).double().numpy(),
    )


def _trained(weight: float, epochs: int, seeds: int) -> tuple[dict, dict]:
    """A cpu-wm trial at mi.weight = weight trained for `epochs` epochs, and its q_func curve.

    Every eval_every epochs the *same* networks are scored on each evaluation variant (a
    fresh batch of 40 as in the preset, a fresh batch of 160, one fixed batch of 40); the
    evaluation streams never touch training, so the curves differ only by evaluation noise.
    """
    over = {"mi.weight": weight, "seeds": seeds}
    t = _trainer(over)
    variants = {}
    for name, extra in EVAL_VARIANTS.items():
        v = _trainer({**over, **extra})
        v.net, v.w_rec0 = t.net, t.w_rec0  # share the networks being trained
        variants[name] = v
    curves = {name: {"q": [], "z": []} for name in variants}
    t.pretrain_critic()
    for epoch in range(epochs + 1):
        if epoch % t.cfg.train.eval_every == 0:
            for name, v in variants.items():
                q, z = _func_q(v)
                curves[name]["q"].append(q)
                curves[name]["z"].append(z)
        if epoch < epochs:
            t.train_epoch()
    summary = {}
    for name, c in curves.items():
        q, z = np.array(c["q"]), np.array(c["z"])  # (evaluations, S)
        # RMS of successive differences: real change is common to every variant, so what
        # differs between them is the evaluation jitter an onset rule has to live with
        summary[name] = {
            "rms_successive_diff_q_func": round(
                float(np.sqrt((np.diff(q, axis=0) ** 2).mean())), 5
            ),
            "rms_successive_diff_q_func_z": round(
                float(np.sqrt((np.diff(z, axis=0) ** 2).mean())), 4
            ),
            "final_q_func": np.round(q[-1], 4).tolist(),
            "final_q_func_z": np.round(z[-1], 3).tolist(),
            "q_func_curve_seed0": np.round(q[:, 0], 4).tolist(),
        }
        print(
            f"trajectory λ={weight} {name}: {summary[name]['rms_successive_diff_q_func']}"
            f" / z {summary[name]['rms_successive_diff_q_func_z']}",
            flush=True,
        )
    return t.state_dict(), summary


def _with_state(state: dict, over: dict) -> Trainer:
    """A trainer with another evaluation setting and the networks (and critics) of `state`."""
    t = _trainer(over)
    t.net.load_state_dict(state["network"])
    if t.mi is not None:
        t.mi.load_state(state["mi"])
    t.w_rec0 = state["w_rec0"]
    return t


def _forward(t: Trainer):
    inputs, _, x0, noise = t._batch("eval")
    with torch.no_grad():
        return t.net(inputs, x0, noise, n_transient=t.task.transient)


def _median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1e3 * statistics.median(times), 3)


def noise(states: dict, batches: list[int], repeats: int, seeds: int) -> list[dict]:
    rows = []
    for weight, state in states.items():
        for batch in batches:
            t = _with_state(
                state, {"mi.weight": weight, "seeds": seeds, "train.eval_batch": batch}
            )
            q, z = [], []
            for _ in range(repeats):
                adj = modularity.functional_adjacency(_forward(t).rows())
                q.append(modularity.modularity(adj, t.labels).double().numpy())
                z.append(
                    modularity.modularity_zscore(adj, t.labels, t.null_partitions).double().numpy()
                )
            q, z = np.array(q), np.array(z)  # (repeats, S)
            rows.append(
                {
                    "lambda": weight,
                    "eval_batch": batch,
                    "repeats": repeats,
                    "q_func_mean": np.round(q.mean(0), 4).tolist(),
                    "q_func_std": np.round(q.std(0, ddof=1), 5).tolist(),
                    "q_func_std_mean": round(float(q.std(0, ddof=1).mean()), 5),
                    "q_func_z_mean": np.round(z.mean(0), 3).tolist(),
                    "q_func_z_std_mean": round(float(z.std(0, ddof=1).mean()), 4),
                }
            )
            print(
                f"noise λ={weight} batch={batch:4d}: std q_func {rows[-1]['q_func_std_mean']}"
                f"  std q_func_z {rows[-1]['q_func_z_std_mean']}",
                flush=True,
            )
    return rows


def costs(t: Trainer, reps: int) -> dict:
    out = _forward(t)
    lab, parts, seeds = t.labels, t.null_partitions, t.seed_values
    w = t.net.recurrent_weights().detach()
    func = modularity.functional_adjacency(out.rows())
    struct = modularity.structural_adjacency(w)
    delta = modularity.weight_change(w, t.w_rec0)

    def found(adj):
        f = communities.leiden(adj, seeds)
        communities.found_modularity(adj, f)
        communities.partition_nmi(f, lab)

    res: dict = {}
    ms = {
        "forward (eval batch)": lambda: _forward(t),
        "functional adjacency": lambda: modularity.functional_adjacency(out.rows()),
        "q + q_norm (func, struct)": lambda: [
            (modularity.modularity(a, lab), modularity.modularity_max(a, lab))
            for a in (func, struct)
        ],
        "q_func_z + q_struct_z": lambda: [
            modularity.modularity_zscore(a, lab, parts) for a in (func, struct)
        ],
        "q_struct_delta + _z": lambda: (
            modularity.modularity(modularity.weight_change(w, t.w_rec0), lab),
            modularity.modularity_zscore(delta, lab, parts),
        ),
        "leiden + found Q + NMI (func)": lambda: found(func),
        "leiden + found Q + NMI (struct)": lambda: found(struct),
        "whole modularity section": lambda: t.evaluation.modularity_metrics(
            t.net, out, t.w_rec0, res
        ),
    }
    return {name: _median_ms(fn, reps) for name, fn in ms.items()}


def share(t: Trainer, reps: int) -> dict:
    """One evaluation vs the eval_every training epochs before it, interleaved."""
    every = t.cfg.train.eval_every
    t.train_epoch()
    t.evaluate()  # warm-up
    train_s, eval_s, sections = [], [], {}
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(every):
            t.train_epoch()
        train_s.append(time.perf_counter() - t0)
        before = dict(t.timings)
        t0 = time.perf_counter()
        t.evaluate()
        eval_s.append(time.perf_counter() - t0)
        for k, v in t.timings.items():
            if k.startswith("eval."):
                sections.setdefault(k, []).append(v - before.get(k, 0.0))
    tr, ev = statistics.median(train_s), statistics.median(eval_s)
    return {
        "eval_every": every,
        "train_sec_per_interval": round(tr, 3),
        "eval_sec": round(ev, 3),
        "eval_share_of_trial": round(ev / (tr + ev), 4),
        "eval_sections_sec": {k: round(statistics.median(v), 4) for k, v in sections.items()},
        "all_train_sec": [round(x, 3) for x in train_s],
        "all_eval_sec": [round(x, 3) for x in eval_s],
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--train-epochs", type=int, default=300)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=20, help="evaluations per noise setting")
    p.add_argument("--batches", type=int, nargs="+", default=[20, 40, 80, 160])
    p.add_argument("--reps", type=int, default=5, help="timing repetitions")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lam = float(load_trial_config(PRESET).mi.weight)
    result: dict = {
        "machine": machine_info("cpu"),
        "preset": PRESET.name,
        "train_epochs": args.train_epochs,
        "seeds": args.seeds,
        "threads": args.threads,
    }
    t0 = time.perf_counter()
    trained = {w: _trained(w, args.train_epochs, args.seeds) for w in (0.0, lam)}
    states = {w: st for w, (st, _) in trained.items()}
    result["trajectory"] = {str(w): traj for w, (_, traj) in trained.items()}
    result["train_wall_s"] = round(time.perf_counter() - t0, 1)
    result["noise"] = noise(states, args.batches, args.repeats, args.seeds)
    base = {r["lambda"]: r for r in result["noise"] if r["eval_batch"] == 40}
    for r in result["noise"]:
        b = base.get(r["lambda"])
        if b:
            r["std_ratio_vs_batch_40"] = round(r["q_func_std_mean"] / b["q_func_std_mean"], 3)
    result["cost_ms"] = {}
    for n in (40, 100):
        for s in sorted({args.seeds, 8}):
            over = {"mi.weight": lam, "seeds": s, "network.hidden": n}
            t = _with_state(states[lam], over) if (n == 40 and s == args.seeds) else _trainer(over)
            key = f"N={n} S={s}"
            result["cost_ms"][key] = costs(t, args.reps)
            print(key, result["cost_ms"][key], flush=True)
    result["eval_share"] = {}
    for s in sorted({args.seeds, 8}):
        over = {"mi.weight": lam, "seeds": s}
        t = _with_state(states[lam], over) if s == args.seeds else _trainer(over)
        result["eval_share"][f"N=40 S={s}"] = share(t, max(2, args.reps // 2))
        print(f"share S={s}", result["eval_share"][f"N=40 S={s}"], flush=True)
    out = (
        Path(args.out)
        if args.out
        else (REPO / "bench" / "results" / f"modularity-{result['machine']['hostname']}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
