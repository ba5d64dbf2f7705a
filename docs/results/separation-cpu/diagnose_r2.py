"""Why cpu-separation's R² stays below the reference's 0.96: budget, washout, or the task?

    python docs/results/separation-cpu/diagnose_r2.py [EPOCHS] [SEEDS] > diagnose_r2.txt

Trains the cpu-separation preset at λ = 0 (no critic influence on the GRU) for EPOCHS epochs
(default 240: 4x the preset's 60, i.e. 960 GRU updates against the reference's 4000) and, every
20 epochs, scores the fixed test batch three ways per output (Lorenz x y z, Rössler x y z):
R² over all steps (what `r2` logs, docs/method.md §6.6), R² over t >= washout (the steps the loss
trains), and the per-output R² at t >= washout. One torch thread.
"""

import sys
import time

import numpy as np
import torch

from study.core import scores
from study.spec import load_trial_config
from study.training import Trainer

EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 240
SEEDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
torch.set_num_threads(1)
cfg = load_trial_config(
    "search_spaces/cpu-separation.yaml",
    {"mi.weight": 0.0, "seeds": SEEDS, "train.epochs": EPOCHS, "train.threads": 1},
)
tr = Trainer(cfg)
task = tr.task
x, y = task.test_set(cfg.train.eval_batch)  # (B, T, 3), (B, T, 6)
inputs = torch.as_tensor(np.ascontiguousarray(x.transpose(1, 0, 2)))[None].expand(
    SEEDS, -1, -1, -1
)
targets = torch.as_tensor(np.ascontiguousarray(y.transpose(1, 0, 2)))[None].expand(
    SEEDS, -1, -1, -1
)
w = task.washout
names = ["Lx", "Ly", "Lz", "Rx", "Ry", "Rz"]
print(
    f"cpu-separation, λ = 0, {SEEDS} seeds, {EPOCHS} epochs x {cfg.train.updates_per_epoch} "
    f"GRU updates, sequences of {task.seq_len} steps, washout {w}, lr {cfg.optim.lr}"
)
print("epoch  updates  R2_all(mean of seeds)  R2_t>=washout  per-output R2 t>=washout (seed mean)")
tr.pretrain_critic()
t0 = time.perf_counter()


@torch.no_grad()
def score(epoch):
    x0 = torch.zeros(SEEDS, inputs.shape[2], cfg.network.hidden)
    out = tr.net(inputs, x0, None, n_transient=task.transient).outputs
    all_ = scores.r2(out, targets).mean(-1)
    late = scores.r2(out[:, w:], targets[:, w:])
    per = late.mean(0).numpy()
    print(
        f"{epoch:5d}  {epoch * cfg.train.updates_per_epoch:7d}  "
        f"{all_.mean().item():20.3f}  {late.mean(-1).mean().item():13.3f}  "
        + " ".join(f"{n} {v:.3f}" for n, v in zip(names, per)),
        flush=True,
    )


score(0)
while tr.epoch < EPOCHS:
    tr.train_epoch()
    if tr.epoch % 20 == 0:
        score(tr.epoch)
if tr.epoch % 20:
    score(tr.epoch)
print(f"# {time.perf_counter() - t0:.0f} s of training")
