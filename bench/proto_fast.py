"""Prototype fast paths, switched on one by one inside a normal Trainer, timed side by side.

    PYTHONPATH=. python bench/proto_fast.py [--groups 2 3] [--epochs 6] [--variants base rng scan]

Scratch for the fast-kernel work: each variant patches the hot methods of this process's
classes (nothing in study/ changes) and is timed on its own Trainer, variants interleaved
epoch by epoch so a neighbour's load hits them alike. Reports CPU seconds (thread time) and
wall seconds per epoch, and checks the results against the base variant: bit-identical for
"rng" (same draws), within float tolerance for the rest. Writes
bench/results/proto-fast-<host>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _machine import machine_info  # noqa: E402

from study.core import _critic, _scan  # noqa: E402
from study.core import estimators  # noqa: E402
from study.core._native import draws  # noqa: E402
from study.core.mi import SubgroupMI  # noqa: E402
from study.core.networks import GRU, LeakyRNN, NetOutput, _identity  # noqa: E402
from study.core.tasks.working_memory import WorkingMemory  # noqa: E402
from study.spec.config import load_trial_config  # noqa: E402
from study.training.device import keep_freed_memory  # noqa: E402
from study.training.loop import Trainer  # noqa: E402

PRESETS = HERE.parent / "search_spaces"
ON: set[str] = set()  # the switched-on prototypes, read by the patched methods

# -- originals ---------------------------------------------------------------------------------
_orig = {
    "batch": Trainer._batch,
    "sample_tensors": WorkingMemory.sample_tensors,
    "noise": SubgroupMI._noise,
    "leaky_forward": LeakyRNN.forward,
    "gru_forward": GRU.forward,
    "shuffled_scores": estimators.shuffled_scores,
    "network_step": Trainer._network_step,
    "critic_round": Trainer._critic_round,
}


def _randn(shape, gen, device):
    if "rng" in ON:
        return draws.randn(shape, gen, device=device)
    return torch.randn(shape, generator=gen, device=device)


def _batch(self, purpose):
    if "rng" not in ON:
        return _orig["batch"](self, purpose)
    # Trainer._batch with the draws swapped for the exact fast ones (same order, same values)
    t0 = time.perf_counter()
    s, n, cfg = self.n_seeds, self.cfg.network.hidden, self.cfg
    evaluating = purpose == "eval"
    rng = self.eval_rng if evaluating else self.data_rng
    gen = self.eval_gen if evaluating else self.gen
    if evaluating and cfg.train.eval_fixed:
        import numpy as np
        rng = np.random.default_rng([cfg.seed, 4])
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 7919 + 4)
    batch = cfg.train.eval_batch if evaluating else cfg.task.batch
    if evaluating and self.task.fixed_eval_pool:
        import numpy as np
        x, y = self.task.test_set(batch)
        inputs, targets = self._to_device(np.broadcast_to(x, (s, *x.shape)),
                                          np.broadcast_to(y, (s, *y.shape)))
    elif self.task.device_sampling:
        inputs, targets = self.task.sample_tensors(gen, s, batch, self.device)
    else:
        inputs, targets = self._to_device(*self.task.sample([rng] * s, batch))
    t_len, b = inputs.shape[1], inputs.shape[2]
    if cfg.network.kind == "gru" or (purpose == "critic" and cfg.train.critic_x0_zero):
        x0 = torch.zeros(s, b, n, device=self.device)
    else:
        x0 = cfg.train.x0_std * _randn((s, b, n), gen, self.device)
    noise = None
    if cfg.network.noise > 0:
        noise = _randn((s, t_len, b, n), gen, self.device)
        if "net" in ON:  # the fused network scales it (sigma passed on the network)
            self.net._noise_sigma = cfg.network.noise
        else:
            noise.mul_(cfg.network.noise)
    self.timings["data"] += time.perf_counter() - t0
    return inputs, targets, x0, noise


def _sample_tensors(self, gen, n_seeds, batch, device):
    if "rng" not in ON:
        return _orig["sample_tensors"](self, gen, n_seeds, batch, device)
    shape = (n_seeds, batch, self.n_inputs, self.transient + self.seq_len + 1)
    onsets = draws.rand(shape, gen, device=device) < self.p_onset
    return draws.wm_signals(self, onsets)


def _noise(x, mask, sigma, gen):
    if "rng" not in ON:
        return _orig["noise"](x, mask, sigma, gen)
    eps = draws.randn(x.shape, gen, dtype=x.dtype, device=x.device).mul_(sigma)
    if mask is not None:
        eps.mul_(mask.to(x.dtype))
    return eps


def _leaky_net_forward(self, inputs, x0, noise=None, *, n_transient=0, outputs=True,
                       sample=None):
    sigma = getattr(self, "_noise_sigma", 1.0)
    x = x0
    if n_transient:
        x = _scan.leaky_network_last(inputs[:, :n_transient],
                                     noise[:, :n_transient] if noise is not None else None,
                                     sigma, x0, self.w_in, self.b, self.w_rec, self.alpha)
        inputs = inputs[:, n_transient:]
        noise = noise[:, n_transient:] if noise is not None else None
    if not torch.is_grad_enabled() and not outputs:
        xs = _scan.leaky_network_states(inputs, noise, sigma, x, self.w_in, self.b, self.w_rec,
                                        self.alpha)
        return NetOutput(xs, None, _native_tanh)
    xs, ys, z, sampled = _scan.leaky_network_sampled(
        inputs, noise, sigma, x, self.w_in, self.b, self.w_rec, self.w_out if outputs else None,
        self.b_out if outputs else None, self.alpha, sample=sample, states=sample is None)
    out = NetOutput(xs, z, torch.tanh)
    out.rates, out.sampled = ys, sampled
    return out


def _gru_forward(self, inputs, x0, noise=None, *, n_transient=0, outputs=True):
    if "net" not in ON:
        return _orig["gru_forward"](self, inputs, x0, noise, n_transient=n_transient,
                                    outputs=outputs)
    sigma = getattr(self, "_noise_sigma", 1.0)
    h = x0
    weights = (self.w, self.b, self.u, self.b_rec)
    if n_transient:
        h = _scan.gru_network_last(inputs[:, :n_transient],
                                   noise[:, :n_transient] if noise is not None else None,
                                   sigma, x0, *weights)
        inputs = inputs[:, n_transient:]
        noise = noise[:, n_transient:] if noise is not None else None
    hs, z = _scan.gru_network(inputs, noise, sigma, h, *weights,
                              self.w_out if outputs else None, self.b_out if outputs else None)
    return NetOutput(hs, z, _identity)


def _native_tanh(x):
    """tanh of a float32 CPU tensor with the compiled kernel (no gradient)."""
    from study.core._native import load
    lib = load("kernels")
    if lib is None or x.requires_grad or x.dtype != torch.float32:
        return torch.tanh(x)
    x = x.contiguous()
    y = torch.empty_like(x)
    lib.tanh_array(x.data_ptr(), y.data_ptr(), x.numel())
    return y


def _network_step(self):
    if "net" not in ON:
        return _orig["network_step"](self)
    t0 = time.perf_counter()
    cfg = self.cfg
    inputs, targets, x0, noise = self._batch("network")
    sample = None
    if ("sparse" in ON and self.mi is not None and cfg.mi.weight > 0
            and isinstance(self.net, LeakyRNN)):
        rows = (inputs.shape[1] - self.task.transient) * inputs.shape[2]
        if self.mi.pairs and self.mi.pairs < rows:
            # the penalty's row sample, drawn where _sides would draw it (nothing in between
            # uses the generator), so the stream is unchanged
            sample = estimators.random_permutations(
                self.n_seeds, rows, self.gen, self.device)[:, :self.mi.pairs]
    if sample is not None:
        out = _leaky_net_forward(self.net, inputs, x0, noise, n_transient=self.task.transient,
                                 sample=sample)
    else:
        out = self.net(inputs, x0, noise, n_transient=self.task.transient)
    w = self.task.washout
    err = out.outputs[:, w:] - targets[:, w:]
    task_loss = err.square().mean(dim=(1, 2, 3))
    loss = task_loss + self._regulariser()
    if self.mi is not None and cfg.mi.weight > 0:
        rates = getattr(out, "rates", None)
        if getattr(out, "sampled", None) is not None:  # rows drawn above: no subsample here
            penalty, _ = self.mi.penalty(out.sampled, self.gen, transform=None)
        elif rates is not None:  # the fused leaky network kept tanh(x): no tanh on the rows
            s, _, _, n = rates.shape
            penalty, _ = self.mi.penalty(rates.reshape(s, -1, n), self.gen, transform=None)
        else:
            penalty, _ = self.mi.penalty(out.rows(), self.gen, transform=out.mi_transform)
        self._check_finite("MI penalty (network step)", penalty)
        loss = loss + cfg.mi.weight * penalty
    self._check_finite("network loss", loss)
    self.optimizer.zero_grad()
    loss.sum().backward()
    self.optimizer.step()
    self.timings["network"] += time.perf_counter() - t0


def _leaky_forward(self, inputs, x0, noise=None, *, n_transient=0, outputs=True):
    if "net" in ON:
        return _leaky_net_forward(self, inputs, x0, noise, n_transient=n_transient,
                                  outputs=outputs)
    if "scan" not in ON:
        return _orig["leaky_forward"](self, inputs, x0, noise, n_transient=n_transient,
                                      outputs=outputs)
    x = x0
    if n_transient:
        with torch.no_grad():
            d = self._drive(inputs[:, :n_transient],
                            noise[:, :n_transient] if noise is not None else None)
            x = _scan.leaky_last(d, x0, self.w_rec, self.alpha)
        inputs = inputs[:, n_transient:]
        noise = noise[:, n_transient:] if noise is not None else None
    d = self._drive(inputs, noise)
    if torch.is_grad_enabled():
        xs, ys = _scan.leaky_scan_rates(d, x, self.w_rec, self.alpha)
    else:
        xs, ys = _scan.leaky_states(d, x, self.w_rec, self.alpha), None
    out = None
    if outputs:
        out = self._readout(ys if ys is not None else torch.tanh(xs))
    return NetOutput(xs, out, torch.tanh)


def _shuffled_scores(mi, a, b, gen):
    if "critic" not in ON or not _critic.usable(mi.critic, a):
        return _orig["shuffled_scores"](mi, a, b, gen)
    r, m, _ = a.shape
    perm = estimators.random_permutations(r, m, gen, a.device)  # same draws, same order
    if mi.input_noise > 0:
        a = mi.add_noise(a, "a", gen)
        b_noisy = mi.add_noise(b, "b", gen)
    else:
        b_noisy = b
    if mi.noise_mode == "noisy_partner" and "noshare" not in ON:  # b_noisy permuted: once
        scores = _critic.critic_scores(mi.critic, a, b_noisy, perm=perm)
    else:
        scores = _critic.critic_scores(mi.critic, a, b_noisy, estimators.take_rows(b, perm))
    return scores[:, :m], scores[:, m:]


estimators.shuffled_scores = _shuffled_scores
Trainer._network_step = _network_step
Trainer._batch = _batch
WorkingMemory.sample_tensors = _sample_tensors
SubgroupMI._noise = staticmethod(_noise)
LeakyRNN.forward = _leaky_forward
GRU.forward = _gru_forward

VARIANTS = {"base": set(), "rng": {"rng"}, "scan": {"scan"}, "critic": {"critic"},
            "rng+scan+critic": {"rng", "scan", "critic"}, "net": {"net"},
            "all-nosparse": {"rng", "net", "critic"},
            "all": {"rng", "net", "critic", "sparse"},
            "all-noshare": {"rng", "net", "critic", "noshare", "sparse"}}


def _config(preset: str, groups: int):
    over = {"seeds": 8, "train.threads": 1}
    if preset == "cpu-separation":
        return load_trial_config(PRESETS / f"{preset}.yaml", over)
    if preset == "cpu-wm":
        over.update({"network.hidden": 48, "partition.groups": groups,
                     "task.wm.n_bits": "groups"})
    return load_trial_config(PRESETS / f"{preset}.yaml", over)


def _params(tr: Trainer) -> list[torch.Tensor]:
    ps = [p.detach().clone() for p in tr.net.parameters()]
    if tr.mi is not None:
        ps += [p.detach().clone() for p in tr.mi.critic.parameters()]
    return ps


def run(preset: str, groups: int, variants: list[str], epochs: int) -> dict:
    cfg = _config(preset, groups)
    trainers = {}
    for v in variants:
        ON.clear()
        ON.update(VARIANTS[v])
        tr = Trainer(cfg)
        tr.train_epoch()  # warm-up (builds the kernels on first use)
        trainers[v] = tr
    cpu = {v: [] for v in variants}
    wall = {v: [] for v in variants}
    for _ in range(epochs):
        for v in variants:
            ON.clear()
            ON.update(VARIANTS[v])
            c0, w0 = time.thread_time(), time.perf_counter()
            trainers[v].train_epoch()
            cpu[v].append(time.thread_time() - c0)
            wall[v].append(time.perf_counter() - w0)
    base = variants[0]
    ref = _params(trainers[base])
    rows = []
    for v in variants:
        got = _params(trainers[v])
        identical = all(torch.equal(a, b) for a, b in zip(ref, got))
        max_rel = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
                      for a, b in zip(got, ref))
        c, w = statistics.median(cpu[v]), statistics.median(wall[v])
        rows.append({"variant": v, "cpu_s_per_epoch": round(c, 4), "wall_s_per_epoch": round(w, 4),
                     "cpu_speedup": round(statistics.median(cpu[base]) / c, 2),
                     "wall_speedup": round(statistics.median(wall[base]) / w, 2),
                     "params_identical_to_base": identical,
                     "params_max_rel_diff_to_base": max_rel})
        print(f"{preset} K={groups} {v:10s} cpu {c:.3f} s  wall {w:.3f} s  "
              f"x{rows[-1]['cpu_speedup']} (cpu)  identical={identical} max_rel={max_rel:.2e}",
              flush=True)
    return {"preset": preset, "groups": groups, "epochs_timed": epochs, "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-wm")
    p.add_argument("--groups", type=int, nargs="+", default=[2, 3])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    results = {"machine": machine_info("cpu"), "benchmarks": []}
    for k in args.groups:
        results["benchmarks"].append(run(args.preset, k, args.variants, args.epochs))
    results["machine_after"] = machine_info("cpu")["load_average"]
    out = Path(args.out) if args.out else (HERE / "results" /
                                           f"proto-fast-{results['machine']['hostname']}.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
