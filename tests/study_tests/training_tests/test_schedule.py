"""The evaluation schedule (study/training/schedule.py) and `train()` on it: a dense start,
light evaluations, checkpoints and snapshots at their own cadence, a resume that reproduces
the schedule, and the config keys' validation (exit 2 naming file and key)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_trial import tiny

from study.spec import ConfigError, load_trial_config
from study.training import EvalSchedule, RecordingReporter, train

REPO = Path(__file__).resolve().parents[3]


def _brute(s: EvalSchedule) -> list[int]:
    """The evaluation epochs by their definition: 0, every multiple of `every`, the last
    epoch, and every multiple of `dense_every` up to `dense_until`."""
    return [
        e
        for e in range(s.epochs + 1)
        if e % s.every == 0 or e == s.epochs or (e <= s.dense_until and e % s.dense_every == 0)
    ]


@pytest.mark.parametrize(
    "epochs, every, until, dense",
    [
        (20, 5, 0, 1),
        (23, 5, 0, 1),
        (23, 5, 7, 1),
        (23, 5, 12, 2),
        (23, 6, 30, 4),  # the dense phase runs past the end
        (24, 6, 11, 4),  # dense_every does not divide every
        (7, 3, 7, 2),  # the last epoch is a dense one
        (0, 1, 0, 1),
    ],
)
def test_schedule_counts_what_the_definition_lists(epochs, every, until, dense):
    s = EvalSchedule(epochs, every, until, dense)
    want = _brute(s)
    assert [e for e in range(-2, epochs + 3) if s.due(e)] == want
    assert s.count() == len(want)
    for pos, e in enumerate(want):
        assert s.index(e) == pos  # the position of each evaluation, counted not listed
    for e in range(epochs + 3):
        assert s.index(e) == sum(x < e for x in want)
    assert s.dense_extra() == len(want) - len(_brute(EvalSchedule(epochs, every)))
    light = [e for e in want if s.is_light(e)]
    assert light == [e for e in want if not (e % every == 0 or e == epochs)]
    assert not any(
        EvalSchedule(epochs, every, until, dense, light=False).is_light(e) for e in want
    )


def test_a_schedule_without_dense_phase_counts_like_before():
    # no dense phase: the regular cadence, epoch // every for every regular epoch
    s = EvalSchedule(1000, 25)
    assert s.count() == 41 and s.dense_extra() == 0
    assert all(s.index(e) == e // 25 for e in range(0, 1001, 25))
    assert EvalSchedule(1000, 25, 50, 1).dense_extra() == 50 - 2  # 1..50 less 25 and 50


DENSE = {
    "train.epochs": 8,
    "train.eval_every": 4,
    "train.dense_until": 3,
    "train.checkpoint_every": 4,
    "train.snapshot_every": 4,
    "train.heldout_mi_every": 0,
}
HEAVY = ("mi", "mi_gauss", "nmi_func", "q_func_found", "d_out", "d_corr")
LIGHT = ("accuracy", "task_loss", "q_func_z", "q_struct_z", "dw_block_z", "w_between_ratio")


def test_train_evaluates_densely_early_and_keeps_checkpoints_and_snapshots_on_cadence(tmp_path):
    rep = RecordingReporter()
    res = train(tiny(**DENSE), reporter=rep, checkpoint_dir=tmp_path)
    assert res.status == "finished"
    assert [r.epoch for r in rep.records] == [0, 1, 2, 3, 4, 8]
    assert [e for e, _ in rep.checkpoints] == [0, 4, 8]  # checkpoint_every, not the dense ones
    assert [e for e, _ in rep.snapshots] == [0, 4, 8]
    for rec in rep.records:
        light = rec.epoch in (1, 2, 3)
        for name in LIGHT:
            if not (name == "dw_block_z" and rec.epoch == 0):  # no change yet at epoch 0
                assert all(math.isfinite(x) for x in rec.metrics[name]), (rec.epoch, name)
        for name in HEAVY:
            assert all(math.isnan(x) == light for x in rec.metrics[name]), (rec.epoch, name)
    full = train(tiny(**DENSE, **{"train.dense_light": False}))
    assert all(math.isfinite(x) for x in full.history[1].metrics["mi"])


def test_the_dense_schedule_never_changes_training(tmp_path):
    dense = train(tiny(**DENSE))
    sparse = train(tiny(**{**DENSE, "train.dense_until": 0}))
    assert [r.epoch for r in sparse.history] == [0, 4, 8]
    by_epoch = {r.epoch: r for r in dense.history}
    for rec in sparse.history:  # the same networks at the shared epochs, every metric alike
        other = by_epoch[rec.epoch]
        for name, values in rec.metrics.items():
            if name.startswith("mi"):  # the critic's `mi` draws from the evaluation stream
                continue
            assert np.array_equal(values, other.metrics[name], equal_nan=True), name


class _KeepCheckpoint(RecordingReporter):
    """Copies the checkpoint written at `epoch` aside (the file is overwritten later)."""

    def __init__(self, epoch: int, into: Path):
        super().__init__()
        self.epoch, self.into = epoch, into

    def report(self, record, checkpoint):
        super().report(record, checkpoint)
        if checkpoint is not None and record.epoch == self.epoch:
            self.into.mkdir()
            shutil.copy(checkpoint, self.into / checkpoint.name)


def test_a_resume_inside_the_dense_phase_reproduces_the_schedule(tmp_path):
    cfg = tiny(
        **{
            **DENSE,
            "train.dense_until": 6,
            "train.eval_every": 2,
            "train.checkpoint_every": 2,
            "train.snapshot_every": 0,
            "train.lesion_every": 3,
        }
    )
    whole = train(cfg, reporter=_KeepCheckpoint(4, tmp_path / "at4"), checkpoint_dir=tmp_path)
    resumed = train(cfg, resume_from=tmp_path / "at4")
    assert [r.epoch for r in whole.history] == [0, 1, 2, 3, 4, 5, 6, 8]
    assert [r.epoch for r in resumed.history] == [0, 1, 2, 3, 4, 5, 6, 8]
    for a, b in zip(whole.history, resumed.history):
        for name in a.metrics:
            assert np.array_equal(a.metrics[name], b.metrics[name], equal_nan=True), (
                a.epoch,
                name,
            )
    lesioned = [
        r.epoch
        for r in resumed.history
        if math.isfinite(r.metrics["lesion_reset_rec_q_func_z"][0])
    ]
    assert lesioned == [0, 3, 6, 8]  # evaluations 0, 3, 6 of the schedule and the last


def test_held_out_mi_follows_the_regular_evaluations():
    res = train(
        tiny(
            **{
                **DENSE,
                "train.heldout_mi_every": 1,
                "mi.heldout.steps": 2,
                "train.dense_light": False,
            }
        )
    )
    computed = [r.epoch for r in res.history if math.isfinite(r.metrics["mi_heldout"][0])]
    assert computed == [0, 4, 8]  # not at the dense epochs 1, 2, 3


@pytest.mark.parametrize(
    "override, pattern",
    [
        ({"train.dense_until": -1}, r"train\.dense_until.*greater than or equal to 0"),
        ({"train.dense_every": 0}, r"train\.dense_every.*greater than or equal to 1"),
        ({"train.lesion_every": -2}, r"train\.lesion_every.*greater than or equal to 0"),
        ({"train.dense_light": "sometimes"}, r"train\.dense_light"),
        (
            {"train.dense_until": 50, "train.dense_every": 30},
            r"train\.dense_every must be at most train\.eval_every",
        ),
        ({"train.dense_until": 10**9}, r"train\.dense_until"),
    ],
)
def test_bad_schedule_keys_are_config_errors(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_trial_config(overrides=override)


def test_a_dense_start_as_sparse_as_the_regular_cadence_is_allowed_and_adds_nothing():
    cfg = load_trial_config(
        overrides={"train.epochs": 10, "train.eval_every": 1, "train.dense_until": 5}
    )
    assert EvalSchedule.of(cfg.train).dense_extra() == 0


def test_a_bad_schedule_key_in_a_file_exits_2_naming_file_and_key(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: x\ntrial: {train: {epochs: 10, eval_every: 5, dense_until: 4, dense_every: 0}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "study", "validate", str(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2, out.stderr
    assert "bad.yaml" in out.stderr and "trial.train.dense_every" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
