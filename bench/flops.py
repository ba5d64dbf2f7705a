"""Matrix-product FLOPs of a trial, from its config: per epoch, per evaluation, per trial.

    from flops import trial_flops; trial_flops(cfg)  ->  nested dict of FLOPs (floats)

Counts the multiply-adds of every matrix product the training loop needs (2 FLOPs each: a
(m × k)·(k × n) product is 2·m·k·n), at the algorithmic minimum: a linear layer's backward is
one product for the weight gradient and one for the input gradient, and only where a gradient
is needed (the critic's inputs are data in a critic step; its weights are frozen in the
network's penalty; a network's inputs and noise are data). Element-wise work (tanh, noise,
optimiser updates, log-sum-exp) is not counted: the floor below is products only.

Notation: S seeds, B sequences per batch, T_tr transient steps (no gradient), T_seg scored
steps, N units, I inputs, O outputs; R = S·P critic replicas for P penalty terms, M rows per
critic estimate, da and db the widths of the two sides (padded to the largest term), H the
critic width, D its depth (D − 1 hidden H × H layers).

Per epoch (`train.updates_per_epoch` rounds of critic steps and one network step):
- critic batches: the recurrence, forward only, transient and segment (one batch per round
  when critic.reuse_batch, else one per critic step);
- critic steps: the critic on the joint rows (a, b) and on the shuffled rows (a, b'), forward,
  and the backward of both (weight gradients; the first layer needs no input gradient);
- network step: the recurrence forward (transient without gradient, segment with it), its
  backward (per step: one product back through W, one into dL/dW), the input projection and
  readout with their weight gradients, and the penalty: the critic's forward on the network's
  rows and its backward to those rows (no weight gradients);
- evaluation, amortised: one evaluation every `train.eval_every` epochs (network forward on
  `train.eval_batch` sequences with readout, the critic's MI value, the Gaussian plug-in MI of
  the activity and of its sequence-shuffled null, the functional correlations, D_corr's
  cross-correlations, the ΔW block contrasts with their null partitions) and the held-out MI
  critic every `train.heldout_mi_every` evaluations.
Per trial: critic pre-training + epochs + (epochs / eval_every + 1) evaluations. Not modelled:
the dense start's light evaluations (`train.dense_until`) and the lesions (`train.lesion_every`:
each lesion is one more network forward on the evaluation batch).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["trial_flops", "sizes", "critic_flops", "recurrence_step_flops"]


def _mm(m: float, k: float, n: float) -> float:
    return 2.0 * m * k * n


def sizes(cfg: Any) -> dict[str, int]:
    """The shapes the FLOP count needs, read from a TrialConfig (and its task's constants)."""
    from study.core.mi import penalty_terms
    from study.core.partition import groups

    task = cfg.task
    if task.name == "working_memory":
        n_bits = cfg.n_bits
        n_in, n_out = 2 * n_bits, n_bits
        transient, segment = task.wm.transient, task.wm.segment
    elif task.name == "chaos_separation":
        n_in, n_out = 3, 6  # study.core.tasks.chaos.ChaosSeparation
        transient, segment = 0, task.chaos.n_samples - task.chaos.drop
    else:
        raise ValueError(f"flops.sizes(): no shapes known for task {task.name!r}")
    k = cfg.partition.groups
    n = cfg.network.hidden
    if k >= 2:
        terms = penalty_terms(groups(n, k, cfg.partition.sizes), cfg.mi.penalty)
        n_terms, da, db = len(terms.names), terms.a_index.shape[1], terms.b_index.shape[1]
    else:
        n_terms = da = db = 0
    return {
        "S": cfg.seeds,
        "B": task.batch,
        "T_tr": transient,
        "T_seg": segment,
        "N": n,
        "I": n_in,
        "O": n_out,
        "K": k,
        "P": n_terms,
        "da": da,
        "db": db,
        "gates": 3 if cfg.network.kind == "gru" else 1,
    }


def recurrence_step_flops(z: dict[str, int], batch: int) -> float:
    """One step of S networks on `batch` sequences: h_{t−1} · W (N × gates·N)."""
    return _mm(z["S"] * batch, z["N"], z["gates"] * z["N"])


def critic_flops(
    replicas: int,
    rows: int,
    da: int,
    db: int,
    width: int,
    depth: int,
    *,
    estimator: str = "dv",
    nce_block: int = 128,
) -> dict[str, float]:
    """One estimate of `replicas` critics on `rows` rows: forward products by branch, and the
    backward of a critic update (weight gradients) and of the network's penalty (input
    gradients). DV and MINE score the joint and the shuffled rows; InfoNCE scores every pair
    within blocks of nce_block rows (rows·nce_block head rows)."""
    r, m, h = replicas, rows, width
    proj_a, proj_b = _mm(r * m, da, h), _mm(r * m, db, h)
    per_row_head = (depth - 1) * _mm(1, h, h) + _mm(1, h, 1)
    hidden_out = r * per_row_head
    if estimator == "infonce":
        head_rows = (m // nce_block) * nce_block * nce_block
        head = hidden_out * head_rows
        fwd = {"project_a": proj_a, "project_b": proj_b, "head_pairs": head}
        # weight grads of all layers; inputs: none (update) / a and b (penalty)
        update_bwd = proj_a + proj_b + 2 * head
        penalty_bwd = proj_a + proj_b + head
        return {
            "forward": fwd,
            "forward_total": sum(fwd.values()),
            "update_backward": update_bwd,
            "penalty_backward": penalty_bwd,
        }
    head = hidden_out * m
    fwd = {"joint": proj_a + proj_b + head, "shuffled": proj_b + head}
    # update: dW of every layer (= its forward) + dX of the head's layers (= their forward)
    update_bwd = proj_a + 2 * proj_b + 2 * (2 * head)
    # penalty: dX of every layer, a and both b branches included (no weight gradients)
    penalty_bwd = proj_a + 2 * proj_b + 2 * head
    return {
        "forward": fwd,
        "forward_total": sum(fwd.values()),
        "update_backward": update_bwd,
        "penalty_backward": penalty_bwd,
    }


def _rows(pairs: int, available: int) -> int:
    return pairs if 0 < pairs < available else available


def trial_flops(cfg: Any) -> dict[str, Any]:
    """FLOPs of one trial of `cfg` (a TrialConfig), by part; see the module docstring."""
    z = sizes(cfg)
    s, b, t_tr, t_seg, n, n_in, n_out = (z[k] for k in ("S", "B", "T_tr", "T_seg", "N", "I", "O"))
    g = z["gates"]
    c, tc, m = cfg.critic, cfg.train, cfg.mi
    step = recurrence_step_flops(z, b)
    in_proj = _mm(s * b, n_in, g * n)  # per step
    readout = _mm(s * b, n, n_out)  # per step
    has_mi = z["K"] >= 2
    penalised = has_mi and m.weight > 0

    # -- critic round (per update) --
    batches = (1 if c.reuse_batch else c.steps) if (has_mi and c.steps) else 0
    critic_batch = {
        "transient": batches * t_tr * (step + in_proj),
        "segment": batches * t_seg * (step + in_proj),
    }
    rows = _rows(m.pairs, t_seg * b)
    r = s * z["P"]
    est = m.estimator
    cf = (
        critic_flops(
            r, rows, z["da"], z["db"], c.width, c.depth, estimator=est, nce_block=m.nce_block
        )
        if has_mi
        else None
    )
    n_steps = c.steps if has_mi else 0
    if cf is None:
        critic_steps = {"forward_joint": 0.0, "forward_shuffled": 0.0, "backward": 0.0}
    elif est == "infonce":
        critic_steps = {
            "forward_joint": n_steps * cf["forward_total"],
            "forward_shuffled": 0.0,
            "backward": n_steps * cf["update_backward"],
        }
    else:
        critic_steps = {
            "forward_joint": n_steps * cf["forward"]["joint"],
            "forward_shuffled": n_steps * cf["forward"]["shuffled"],
            "backward": n_steps * cf["update_backward"],
        }

    # -- network step (per update) --
    network = {
        "recurrence_forward_transient": t_tr * (step + in_proj),
        "recurrence_forward_segment": t_seg * (step + in_proj),
        "readout_forward": t_seg * readout,
        "recurrence_backward": t_seg * 2 * step,
        "input_readout_backward": t_seg * (in_proj + 2 * readout),
        "penalty_forward": cf["forward_total"] if penalised else 0.0,
        "penalty_backward": cf["penalty_backward"] if penalised else 0.0,
    }
    u = tc.updates_per_epoch
    epoch = {
        "critic_batches": {k: u * v for k, v in critic_batch.items()},
        "critic_steps": {k: u * v for k, v in critic_steps.items()},
        "network_step": {k: u * v for k, v in network.items()},
    }
    epoch_total = sum(sum(part.values()) for part in epoch.values())

    # -- evaluation --
    be = tc.eval_batch if task_eval_batch(cfg) is None else task_eval_batch(cfg)
    m_all = t_seg * be
    eval_step = recurrence_step_flops(z, be)
    ev = {
        "network_forward": (t_tr + t_seg) * (eval_step + _mm(s * be, n_in, g * n))
        + t_seg * _mm(s * be, n, n_out)
    }
    if has_mi:
        cm = critic_flops(
            r,
            _rows(m.pairs, m_all),
            z["da"],
            z["db"],
            c.width,
            c.depth,
            estimator=est,
            nce_block=m.nce_block,
        )
        ev["critic_value"] = cm["forward_total"]
        ev["gaussian_mi_and_null"] = 2 * _mm(s * n, m_all, n)
    ev["functional_correlations"] = _mm(s * n, m_all, n)
    washout = cfg.task.wm.washout if cfg.task.name == "working_memory" else cfg.task.chaos.washout
    ev["d_corr_cross_correlations"] = _mm(s * n, (t_seg - washout) * be, n_out)
    # z-scores of Q against train.null_partitions random partitions: A·H with H (N, R·K), and
    # the degrees' d·H, for the functional, structural and ΔW graphs (+ the GRU's two gates
    # and the sum of its three blocks)
    n_graphs = 3 + (3 if cfg.network.kind == "gru" else 0)
    cols = tc.null_partitions * z["K"]
    ev["modularity_null_partitions"] = n_graphs * (_mm(s * n, n, cols) + _mm(s, n, cols))
    # the block contrast D of ΔW and its z-score: d·H with H (N, K) and (N, (R + 1)·K), for
    # W_rec (the GRU: U_h, U_z, U_r and their sum)
    n_changes = 4 if cfg.network.kind == "gru" else 1
    ev["dw_block_contrasts"] = n_changes * (_mm(s * n, n, z["K"]) + _mm(s * n, n, cols + z["K"]))
    eval_total = sum(ev.values())
    heldout_total = 0.0
    n_evals = tc.epochs // tc.eval_every + 1 + (1 if tc.epochs % tc.eval_every else 0)
    n_heldout = 0
    if has_mi and tc.heldout_mi_every:
        h = m.heldout
        n_test = max(2, int(round(be * h.test_fraction)))
        train_rows = t_seg * (be - n_test)
        hr = 2 * s * z["P"]
        hc = critic_flops(hr, min(h.batch, train_rows), z["da"], z["db"], h.width, h.depth)
        test = critic_flops(hr, t_seg * n_test, z["da"], z["db"], h.width, h.depth)
        heldout_total = (
            h.steps * (hc["forward_total"] + hc["update_backward"]) + 4 * test["forward_total"]
        )  # 4 = heldout_mi's repeats
        evals_idx = range(n_evals)
        n_heldout = sum(1 for i in evals_idx if i % tc.heldout_mi_every == 0 or i == n_evals - 1)
    evaluation = {
        "per_evaluation": ev,
        "per_evaluation_total": eval_total,
        "heldout_per_run": heldout_total,
        "evaluations": n_evals,
        "heldout_runs": n_heldout,
    }
    eval_trial = n_evals * eval_total + n_heldout * heldout_total
    eval_per_epoch = eval_trial / max(tc.epochs, 1)

    # -- pre-training --
    pre = 0.0
    if has_mi and c.pretrain_steps:
        chunk = c.steps if c.reuse_batch and c.steps else 1
        n_batches = math.ceil(c.pretrain_steps / chunk) if c.reuse_batch else c.pretrain_steps
        pre = n_batches * (t_tr + t_seg) * (step + in_proj) + c.pretrain_steps * (
            cf["forward_total"] + cf["update_backward"]
        )
    return {
        "sizes": z,
        "critic_rows": rows if has_mi else 0,
        "per_epoch": epoch,
        "per_epoch_total": epoch_total,
        "evaluation": evaluation,
        "evaluation_per_epoch_amortised": eval_per_epoch,
        "per_epoch_with_evaluation": epoch_total + eval_per_epoch,
        "pretraining": pre,
        "per_trial": pre + tc.epochs * epoch_total + eval_trial,
    }


def task_eval_batch(cfg: Any) -> int | None:
    """Sequences per evaluation: the task's fixed test pool when it has one (chaos), else None
    (train.eval_batch)."""
    if cfg.task.name == "chaos_separation":
        return min(cfg.train.eval_batch, cfg.task.chaos.n_test)
    return None
