"""bench/flops.py, the FLOP model behind the benchmark floor: a closed form on a tiny config,
and agreement with torch's own count of the products the training loop runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bench"))

from flops import critic_flops, trial_flops  # noqa: E402

from study.spec import load_trial_config  # noqa: E402
from study.training.loop import Trainer  # noqa: E402

TINY_WM = {
    "seeds": 1,
    "network.hidden": 2,
    "partition.groups": 2,
    "task.wm.n_bits": 2,
    "task.wm.transient": 1,
    "task.wm.segment": 2,
    "task.batch": 1,
    "critic.width": 16,
    "critic.depth": 2,
    "critic.steps": 3,
    "critic.reuse_batch": True,
    "mi.pairs": 0,
    "train.updates_per_epoch": 1,
    "mi.heldout.steps": 10,
    "train.null_partitions": 20,
}


def test_tiny_wm_epoch_closed_form():
    """S = B = 1, N = 2 (groups of 1 unit: da = db = 1), I = 4, O = 2, T = 1 + 2, H = 16.

    Per step: recurrence 2·1·2·2 = 8, input projection 2·4·2 = 16, readout 2·2·2 = 8.
    Critic on M = 2 rows: a and b projections 2·2·1·16 = 64 each, head per row
    2·16·16 + 2·16 = 544, so 1088 per branch; forward joint 64 + 64 + 1088 = 1216,
    shuffled 64 + 1088 = 1152; update backward 64 + 2·64 + 4·1088 = 4544; penalty backward
    64 + 2·64 + 2·1088 = 2368. Epoch: critic batch 3·24 = 72, three critic steps
    3·(1216 + 1152 + 4544) = 20736, network step 24 + 48 + 16 (readout) + 32 (BPTT, 2·2·8)
    + 64 (W_in and readout gradients, 2·(16 + 16)) + 2368 + 2368 = 4920; total 25728.
    """
    cfg = load_trial_config(REPO / "search_spaces" / "cpu-wm.yaml", TINY_WM)
    f = trial_flops(cfg)
    ep = f["per_epoch"]
    assert ep["critic_batches"] == {"transient": 24.0, "segment": 48.0}
    assert ep["critic_steps"] == {
        "forward_joint": 3648.0,
        "forward_shuffled": 3456.0,
        "backward": 13632.0,
    }
    assert ep["network_step"] == {
        "recurrence_forward_transient": 24.0,
        "recurrence_forward_segment": 48.0,
        "readout_forward": 16.0,
        "recurrence_backward": 32.0,
        "input_readout_backward": 64.0,
        "penalty_forward": 2368.0,
        "penalty_backward": 2368.0,
    }
    assert f["per_epoch_total"] == 25728.0


def test_critic_flops_scale_with_rows_and_replicas():
    one = critic_flops(1, 100, 24, 24, 64, 2)
    assert critic_flops(3, 100, 24, 24, 64, 2)["forward_total"] == 3 * one["forward_total"]
    assert critic_flops(1, 300, 24, 24, 64, 2)["update_backward"] == 3 * one["update_backward"]
    # InfoNCE's head sees every pair in a block: nce_block times the rows
    nce = critic_flops(1, 256, 24, 24, 64, 2, estimator="infonce", nce_block=128)
    assert nce["forward"]["head_pairs"] == 256 * 128 * (2 * 64 * 64 + 2 * 64)


@pytest.mark.parametrize(
    "preset,over",
    [
        ("cpu-wm", TINY_WM),
        (
            "cpu-wm",
            {
                "seeds": 2,
                "network.hidden": 9,
                "partition.groups": 3,
                "task.wm.n_bits": "groups",
                "task.wm.transient": 3,
                "task.wm.segment": 5,
                "task.batch": 2,
                "critic.width": 16,
                "critic.steps": 2,
                "critic.depth": 3,
                "critic.reuse_batch": False,
                "mi.pairs": 6,
                "mi.heldout.steps": 10,
                "train.null_partitions": 20,
            },
        ),
        (
            "cpu-separation",
            {
                "seeds": 2,
                "network.hidden": 8,
                "task.chaos.n_samples": 30,
                "task.chaos.drop": 20,
                "task.chaos.washout": 2,
                "task.batch": 2,
                "task.chaos.n_train": 8,
                "task.chaos.n_test": 4,
                "critic.width": 16,
                "mi.pairs": 0,
                "train.eval_batch": 4,
                "train.updates_per_epoch": 2,
                "mi.heldout.steps": 10,
                "train.null_partitions": 20,
            },
        ),
    ],
)
def test_model_counts_what_the_loop_runs(preset, over, tmp_path, monkeypatch):
    """torch's FlopCounterMode over one real epoch and one real evaluation of the torch code
    (the compiled kernels are invisible to it; they run the same products): the model's epoch
    is exact (the GRU's code skips one step's product into the zero initial state, which the
    model counts), an evaluation within 5 % (small products of the modularity statistics are
    not modelled), the held-out MI run within 3 %."""
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path))
    monkeypatch.setenv("STUDY_NATIVE", "0")  # torch ops only: the counter sees every product
    # the model counts full evaluations on the regular cadence: no dense start, no lesions
    over = {**over, "train.dense_until": 0, "train.lesion_every": 0}
    cfg = load_trial_config(REPO / "search_spaces" / f"{preset}.yaml", over)
    assert cfg.train.eval_every > 1  # epoch 1 below is off the cadence: no held-out critic
    model = trial_flops(cfg)
    tr = Trainer(cfg)
    with FlopCounterMode(display=False) as fc:
        tr.train_epoch()
    counted = fc.get_total_flops()
    z = model["sizes"]
    skipped = (
        2 * z["S"] * z["B"] * z["N"] * 3 * z["N"] * cfg.train.updates_per_epoch
        if cfg.network.kind == "gru"
        else 0
    )
    assert counted == model["per_epoch_total"] - skipped
    assert tr.epoch == 1  # an evaluation without the held-out critic
    with FlopCounterMode(display=False) as fc:
        tr.evaluate()
    per_eval = model["evaluation"]["per_evaluation_total"]
    assert abs(fc.get_total_flops() - per_eval) <= 0.05 * per_eval
    tr.epoch = 0  # the first evaluation runs the held-out critic too
    with FlopCounterMode(display=False) as fc:
        tr.evaluate()
    heldout = model["evaluation"]["heldout_per_run"]
    assert abs(fc.get_total_flops() - per_eval - heldout) <= 0.03 * heldout
