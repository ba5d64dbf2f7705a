"""Tests of study/training/checkpoint.py through `train()`: a resumed run gives the
uninterrupted curves bit for bit, and a checkpoint written with another config is refused."""

from __future__ import annotations

import pytest
from tiny_trial import same, tiny

from study.training import RecordingReporter, train


def test_train_resume_gives_the_uninterrupted_curves(tmp_path):
    cfg = tiny()
    full = train(cfg, checkpoint_dir=tmp_path / "full")

    class Kill(RecordingReporter):
        def report(self, record, checkpoint):
            super().report(record, checkpoint)
            if record.epoch == 2:
                raise KeyboardInterrupt  # the process dies right after the epoch-2 checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(cfg, reporter=Kill(), checkpoint_dir=tmp_path / "cut")
    resumed_rep = RecordingReporter()
    resumed = train(
        cfg, reporter=resumed_rep, checkpoint_dir=tmp_path / "cut", resume_from=tmp_path / "cut"
    )
    assert [r.epoch for r in resumed_rep.records] == [4, 6]  # only the new evaluations
    assert [r.epoch for r in resumed.history] == [0, 2, 4, 6]
    for a, b in zip(full.history, resumed.history):
        assert same(a.metrics, b.metrics)  # bit for bit, every metric of every seed


def test_train_resume_rejects_a_different_config(tmp_path):
    train(tiny(**{"train.epochs": 2}), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"different config \(mi.weight: 0.1 -> 0.3"):
        train(tiny(**{"mi.weight": 0.3}), resume_from=tmp_path)
    # more epochs is a legal continuation
    more = train(tiny(**{"train.epochs": 4}), resume_from=tmp_path)
    assert [r.epoch for r in more.history] == [0, 2, 4]
