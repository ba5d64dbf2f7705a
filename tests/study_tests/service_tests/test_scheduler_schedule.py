"""The study driver's ASHA scheduler on a dense evaluation schedule: every evaluation is one Tune
result, so its max_t counts the dense evaluations too."""

from __future__ import annotations

from study.service.driver import _scheduler
from study.spec import load_study
from study.training import EvalSchedule


def test_asha_max_t_counts_every_evaluation_of_the_schedule(tmp_path):
    spec = tmp_path / "dense.yaml"
    spec.write_text(
        "name: dense\n"
        "trial:\n"
        "  train: {epochs: 100, eval_every: 25, dense_until: 20, dense_every: 2,\n"
        "          checkpoint_every: 25, snapshot_every: 25}\n"
        "search: {mi.weight: {values: [0.0, 0.1]}}\n"
        "scheduler: {grace_period: 2}\n"
    )
    study = load_study(spec)
    cfg = study.trial_config({})
    schedule = EvalSchedule.of(cfg.train)
    assert schedule.count() == 5 + 10  # 0, 25, ..., 100 and 2, 4, ..., 20
    asha = _scheduler(study, cfg)
    assert asha._max_t == 100 // 25 + 2 + 10 >= schedule.count()
    regular = study.trial_config({"train.dense_until": 0})
    assert _scheduler(study, regular)._max_t == 100 // 25 + 2  # as before without a dense start
