"""The MI metrics in the training loop (the training critic's value, the Gaussian plug-in and
the held-out estimate with their null floors, on schedule), a trial checkpoint written before
the estimators kept their own state resuming bit for bit, and the warning load_study gives when
a study sweeps K or N with clean_partner noise.
"""

from pathlib import Path

import numpy as np
import pytest

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"

TINY = {
    "task.batch": 4,
    "task.wm.transient": 20,
    "task.wm.segment": 40,
    "network.hidden": 12,
    "partition.groups": 3,
    "task.wm.n_bits": 3,
    "critic.width": 16,
    "critic.steps": 1,
    "critic.pretrain_steps": 2,
    "mi.pairs": 0,
    "mi.heldout.steps": 5,
    "mi.heldout.width": 8,
    "train.epochs": 4,
    "train.eval_every": 1,
    "train.eval_batch": 12,
    "train.heldout_mi_every": 2,
    "train.snapshot_every": 0,
    "train.threads": 1,
    "seeds": 2,
    "train.device": "cpu",
}


def _curves(**over):
    from study.contract.names import MI_METRICS
    from study.spec import load_trial_config
    from study.training import train

    res = train(load_trial_config(overrides={**TINY, **over}))
    assert res.status == "finished"
    assert set(MI_METRICS) <= set(res.history[0].metrics)
    return res


def test_trainer_logs_every_mi_metric_and_heldout_on_schedule():
    res = _curves()
    assert [r.epoch for r in res.history] == [0, 1, 2, 3, 4]
    for i, rec in enumerate(res.history):
        m = {k: np.array(v) for k, v in rec.metrics.items()}
        for k in ("mi", "mi_gauss", "mi_gauss_null"):
            assert np.isfinite(m[k]).all(), (i, k)
        due = i % 2 == 0  # evaluations 0, 2 and 4 (the last)
        assert np.isfinite(m["mi_heldout"]).all() == due, i
        assert np.isfinite(m["mi_heldout_null"]).all() == due, i
    assert "eval.mi.heldout" in res.timings
    # the plug-in sees the penalty's noise: never above the noise-free plug-in
    assert all(g >= 0 for r in res.history for g in r.metrics["mi_gauss"])


def test_heldout_estimate_changes_no_other_metric_and_can_be_off():
    on, off = _curves(), _curves(**{"train.heldout_mi_every": 0})
    for a, b in zip(on.history, off.history):
        for k in a.metrics:
            if k.startswith("mi_heldout"):
                assert np.isnan(b.metrics[k]).all()
            else:
                assert np.array_equal(a.metrics[k], b.metrics[k], equal_nan=True), k
    assert "eval.mi.heldout" not in off.timings


def _spec(tmp_path, mode, search):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "trial": {"mi": {"noise_mode": mode}},
                "search": search,
                "sampler": {"name": "grid", "seed": 0},
                "objectives": [{"metric": "final.q_func", "direction": "maximize"}],
            }
        )
    )
    return path


@pytest.mark.parametrize("key", ["partition.groups", "network.hidden"])
def test_load_study_warns_when_sweeping_k_or_n_with_clean_partner(tmp_path, key):
    from study.spec import CleanPartnerWarning, load_study

    values = [2, 3] if key == "partition.groups" else [20, 40]
    with pytest.warns(CleanPartnerWarning, match=f"sweeps {key} with mi.noise_mode"):
        load_study(_spec(tmp_path, "clean_partner", {key: {"values": values}}))


def test_load_study_is_quiet_for_noisy_partner_or_no_k_n_sweep(tmp_path, recwarn):
    from pathlib import Path

    from study.spec import CleanPartnerWarning, load_study

    load_study(_spec(tmp_path, "noisy_partner", {"partition.groups": {"values": [2, 3]}}))
    load_study(_spec(tmp_path, "clean_partner", {"mi.weight": {"values": [0.0, 0.1]}}))
    root = Path(__file__).resolve().parents[3] / "search_spaces"
    for name in ("phase-wm", "demo", "pareto-wm"):  # not paper reproductions: noisy_partner
        load_study(root / f"{name}.yaml")
    assert not [w for w in recwarn if issubclass(w.category, CleanPartnerWarning)]


def test_a_trial_checkpoint_from_before_estimator_state_resumes_as_that_code_ran_on(
    tmp_path, monkeypatch
):
    # a MINE trial's checkpoint at epoch 1 written by the code whose SubgroupMI held MINE's
    # moving average as the module buffer `log_ema`, and that code's uninterrupted history to
    # epoch 3 (checkpoints/make_before_estimator_state.py): resuming reproduces it bit for bit
    # on the torch code that recorded it (the compiled kernels agree to float rounding only)
    import torch

    monkeypatch.setenv("STUDY_NATIVE", "0")

    from study.spec import trial_config_from_dict
    from study.training import train

    saved = torch.load(CHECKPOINTS / "trial_before_estimator_state.pth", weights_only=True)
    checkpoint = saved["checkpoint"]
    assert checkpoint["epoch"] == 1 and "log_ema" in checkpoint["mi"]["module"]
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    res = train(trial_config_from_dict(checkpoint["config"]), resume_from=tmp_path)
    assert res.status == "finished"
    assert [r.epoch for r in res.history] == [r["epoch"] for r in saved["history"]] == [0, 1, 2, 3]
    for got, want in zip(res.history, saved["history"]):
        assert set(want["metrics"]) <= set(got.metrics)  # metrics added since are extra
        for k, v in want["metrics"].items():
            assert np.array_equal(got.metrics[k], v, equal_nan=True), (got.epoch, k)
