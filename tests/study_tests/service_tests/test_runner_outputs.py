"""How often a trial writes and logs its outputs (study/service/runner.py) and how its MLflow run
ends (study/service/tracking.py), on real tiny trials and a real SQLite MLflow store."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from tiny_trial import tiny

from study.service import runner
from study.service.runner import StageReporter, TrialRun, run_trial
from study.service.tracking import StudyTracker, TrialTracker


class _Files(StageReporter):
    """After each evaluation (the MLflow stage has run by then): when curves.parquet was last
    written and whether the figure exists."""

    def __init__(self, out):
        self.out, self.seen = out, []

    def report(self, record, checkpoint):
        curves = self.out / "curves.parquet"
        figure = self.out / "figures" / "q_curves.png"
        self.seen.append(
            (record.epoch, curves.stat().st_mtime_ns if curves.exists() else None, figure.exists())
        )


def _tracked_run(tmp_path, cfg, trial_id="t0"):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = StudyTracker(uri, "outputs", artifact_root=tmp_path / "artifacts")
    parent = study.start(tags={})
    tracker = TrialTracker(
        uri,
        study.experiment_id,
        parent,
        trial_id,
        study_name="outputs",
        task=cfg.task.name,
        params=cfg.flat(),
    )
    return TrialRun(cfg, tmp_path / "out", tracker), MlflowClient(uri)


@pytest.mark.parametrize("figure_every", [60.0, 0.0])
def test_outputs_are_written_once_per_evaluation_figure_at_the_end(
    tmp_path, monkeypatch, figure_every
):
    monkeypatch.setattr(runner, "PROVISIONAL_FIGURE_S", figure_every)
    cfg = tiny(**{"train.snapshot_every": 0})  # 6 epochs, evaluations and checkpoints every 2
    run, client = _tracked_run(tmp_path, cfg)
    files = _Files(run.out_dir)
    run_trial(run, [files], checkpoint_dir=tmp_path / "ckpt", provisional=True)
    assert [e for e, _, _ in files.seen] == [0, 2, 4, 6]
    stamps = [t for _, t, _ in files.seen]
    assert None not in stamps and len(set(stamps)) == 4  # tables rewritten at each checkpoint
    # the final outputs reuse the tables of the last checkpoint (same history): not rewritten
    assert (run.out_dir / "curves.parquet").stat().st_mtime_ns == stamps[-1]
    drawn = [f for _, _, f in files.seen]
    # a trial shorter than PROVISIONAL_FIGURE_S draws its figure once, at the end
    assert drawn == ([False] * 4 if figure_every else [True] * 4)
    assert (run.out_dir / "figures" / "q_curves.png").exists()
    rid = run.tracker.run_id
    arts = {a.path for a in client.list_artifacts(rid)}
    assert {"curves.parquet", "seeds.parquet", "config.yaml", "figures"} <= arts
    assert [a.path for a in client.list_artifacts(rid, "figures")] == ["figures/q_curves.png"]
    logged = client.download_artifacts(rid, "curves.parquet", str(tmp_path / "dl"))
    assert sorted(set(pd.read_parquet(logged)["epoch"])) == [0, 2, 4, 6]
    r = client.get_run(rid)
    assert r.info.status == "FINISHED" and r.data.tags["study.status"] == "finished"
    assert r.data.tags["study.message"] == "" and "final.q_func" in r.data.metrics


def test_trial_run_writes_only_what_changed(tmp_path):
    cfg = tiny(**{"train.epochs": 2, "train.snapshot_every": 0})
    run, _ = _tracked_run(tmp_path, cfg)
    from study.training import train

    history = train(cfg).history
    run.history = history[:1]
    names = lambda paths: sorted(p.relative_to(run.out_dir).as_posix() for p in paths)  # noqa: E731
    assert names(run.write_outputs(figure=False)) == [
        "config.yaml",
        "curves.parquet",
        "seeds.parquet",
    ]
    assert run.write_outputs(figure=False) == []  # nothing new to write
    assert names(run.write_outputs(figure=True)) == ["figures/q_curves.png"]
    assert run.write_outputs(figure=True) == []  # drawn for this history already
    run.history = history  # a new evaluation: the tables and (asked for) the figure again
    assert names(run.write_outputs(figure=True)) == [
        "curves.parquet",
        "figures/q_curves.png",
        "seeds.parquet",
    ]
    assert sorted(set(pd.read_parquet(run.out_dir / "curves.parquet")["epoch"])) == [0, 2]


def test_finish_logs_summary_and_status_once_resumed_or_not(tmp_path):
    cfg = tiny()
    run, client = _tracked_run(tmp_path, cfg)
    tracker = run.tracker
    summary = {"final.q_func": 0.25, "n_seeds": 2.0, "lag": float("nan")}
    tracker.finish("finished", summary=summary, step=6, message="")
    r = client.get_run(tracker.run_id)
    assert r.info.status == "FINISHED" and r.data.tags["study.status"] == "finished"
    assert r.data.metrics == {"final.q_func": 0.25, "n_seeds": 2.0}  # non-finite: not logged
    # the same trial found again (a resumed trial) ends where it ended: no point logged twice
    again = TrialTracker(
        tracker.client.tracking_uri,
        r.info.experiment_id,
        None,
        "t0",
        study_name="outputs",
        task=cfg.task.name,
        params={},
    )
    assert again.resumed and again.run_id == tracker.run_id
    again.finish("finished", summary={**summary, "n_seeds": 3.0}, step=6, message="")
    assert len(client.get_metric_history(tracker.run_id, "final.q_func")) == 1
    assert [m.value for m in client.get_metric_history(tracker.run_id, "n_seeds")] == [2.0, 3.0]
    # a failed trial: status and message, no summary metrics (a retry logs the real ones)
    failed, _ = _tracked_run(tmp_path, cfg, trial_id="t1")
    failed.tracker.finish("failed", summary=summary, step=2, message="RuntimeError: boom")
    r = client.get_run(failed.tracker.run_id)
    assert r.info.status == "FAILED" and r.data.tags["study.status"] == "failed"
    assert r.data.tags["study.message"] == "RuntimeError: boom" and r.data.metrics == {}
