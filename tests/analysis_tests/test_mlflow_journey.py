"""Job 2 of the three, in a real browser: a finished study browsed in `mlflow server`'s UI.

A real two-trial study (the CLI on an embedded Ray, so every tag, name and description comes from
study/tracking.py), its report built by `analysis`, a real `mlflow server` on 127.0.0.1, and
headless chromium over DevTools walking: experiment list → the study (its description) → the
"Trials" saved view (swept parameter and summary metrics as columns) → one trial → its q_func
curve → the study run (its description) → the report artifact rendered inline. Assertions are
on the rendered DOM text, compared with what MLflow's API holds; a PNG of every step is written to
$JOURNEY_SCREENSHOTS (default: the test's tmp folder). 126 s on 2 busy cores (load ~10): 90 s for
the study, its report and the server, 36 s for the walk.

What MLflow 3.17.2's UI honours (read in its JS bundle, checked here): the GenAI/"Model training"
view is a browser-wide switch (localStorage `mlflow.workflowType`, default GenAI, or the URL's
`?workflowType=machine_learning`), not the experiment's `mlflow.experimentKind` tag (read only
when that switch is compiled out); saved runs-table views are experiment tags
`mlflow.sharedViewState.<id>`, opened by `?viewStateShareKey=<id>` or the Views menu; the
experiment's and run's `mlflow.note.content` render as markdown with links (opened in a new tab,
so the test follows their href).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_browser import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (apt-get install -y --no-install-recommends chromium)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
NAME = "journey"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        return r.read()


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A finished two-trial study (mi.weight 0 and 0.3) run by the CLI, and its report."""
    from analysis.report import build_report

    root = tmp_path_factory.mktemp("journey")
    home = root / "home"
    spec = {
        "name": NAME,
        "base": str(REPO / "search_spaces" / "smoke.yaml"),
        "trial": {
            "train": {
                "epochs": 4,
                "eval_every": 2,
                "checkpoint_every": 2,
                "snapshot_every": 0,
                "threads": 1,
            }
        },
        "search": {"mi.weight": {"values": [0.0, 0.3]}},
        "sampler": {"name": "grid", "seed": 0},
        "objectives": [{"metric": "final.q_func", "direction": "maximize"}],
        "concurrency": 2,
        "resources": {"cpu": 1},
    }
    path = root / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(spec))
    ray_tmp = tempfile.mkdtemp(prefix="mjy-", dir="/tmp")  # short: Ray's socket paths
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "STUDY_OPTUNA_STORAGE")
    }
    env.update(STUDY_HOME=str(home), RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "study", "run", str(path), "-q", "--num-cpus", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    uri = f"sqlite:///{home / 'mlflow.db'}"
    report = build_report(NAME, tracking_uri=uri, out_dir=root / "report")
    assert report.logged_run_id
    return {"uri": uri, "root": root}


@pytest.fixture(scope="module")
def mlflow_ui(finished_study):
    """`mlflow server` on a free loopback port over the study's SQLite store."""
    port = _free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    log = open(finished_study["root"] / "mlflow-server.log", "wb")
    proc = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--backend-store-uri",
            finished_study["uri"],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=finished_study["root"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _get(base + "/health").strip() == b"OK":
                    break
            except OSError:
                pass
            assert proc.poll() is None, (finished_study["root"] / "mlflow-server.log").read_text()
            assert time.monotonic() < deadline, "mlflow server did not come up"
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_browse_a_finished_study_from_the_experiment_list_to_its_report(
    finished_study, mlflow_ui, tmp_path
):
    import cdp
    from mlflow import MlflowClient

    client = MlflowClient(finished_study["uri"])
    exp = client.get_experiment_by_name(NAME)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    study_run = next(r for r in runs if r.data.tags["study.role"] == "study")
    trials = {r.info.run_name: r for r in runs if r.data.tags["study.role"] == "trial"}
    assert len(trials) == 2
    shots = Path(os.environ.get("JOURNEY_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    base = mlflow_ui

    async def journey(page: cdp.Page) -> None:
        # 1. the experiment list
        await page.goto(f"{base}/#/experiments")
        await page.wait_text(NAME, "Experiments")
        await page.screenshot(shots / "1-experiments.png")

        # 2. the study: its description leads on
        await page.click_text("a", NAME)
        await page.wait_text(f"Study {NAME}: trials table · study run · report")
        await page.screenshot(shots / "2-study.png")
        (view,) = await page.hrefs("trials table")
        assert "viewStateShareKey=trials" in view

        # 3. the trial runs, flat, with the swept parameter and summary metrics as columns
        await page.goto(f"{base}/{view}")
        text = await page.wait_text(*trials, "2 matching runs")
        for header in ("mi.weight", "final.q_func", "final.success_rate", "study.status"):
            assert header in text
        for run in trials.values():  # the numbers the table shows are the runs' metrics
            value = run.data.metrics["final.q_func"]
            assert await page.eval(f"String({value!r})") in text  # as JavaScript prints it
            assert run.data.params["mi.weight"] in text
        assert text.count("finished") >= 2
        await page.screenshot(shots / "3-trials.png")

        # 4. one trial, then its q_func curve among the model metrics
        name = next(n for n in trials if n.startswith("mi.weight=0.3 "))
        await page.click_text("a", name)
        await page.wait_text("Model metrics", "final.q_func", "Parameters")
        await page.screenshot(shots / "4-trial.png")
        await page.click_text("[role=tab], button, a, span", "Model metrics")
        await page.wait_text(f"{name} (accuracy)")
        await page.type_into("input[placeholder='Search metric charts']", "q_func")
        text = await page.wait_text(f"{name} (q_func)")
        assert f"{name} (accuracy)" not in text  # the search narrowed the charts
        steps = sorted(
            m.step for m in client.get_metric_history(trials[name].info.run_id, "q_func")
        )
        assert steps == [0, 2, 4]
        await page.screenshot(shots / "5-q_func.png")

        # 5. the study run: its description links the report
        await page.goto(
            f"{base}/#/experiments/{exp.experiment_id}/runs/"
            f"{study_run.info.run_id}?workflowType=machine_learning"
        )
        await page.wait_text("open the report", "Study run of")
        await page.screenshot(shots / "6-study-run.png")
        (report,) = await page.hrefs("open the report")
        assert report.endswith("/artifacts/report/report.html?workflowType=machine_learning")

        # 6. the report, rendered inline by the artifact viewer
        await page.goto(f"{base}/{report}")
        await page.wait_text("report.html", "curves.png")
        deadline = time.monotonic() + 60
        framed = ""
        while "Findings" not in framed and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            framed = await page.frame_text()
        assert f"Study report: {NAME}" in framed and "Findings" in framed
        assert "2 trials" in framed
        await page.screenshot(shots / "7-report.png")

    asyncio.run(cdp.with_page(tmp_path / "profile", journey, width=1600, height=900))
    assert sorted(p.name for p in shots.glob("*.png"))[:7] == [
        "1-experiments.png",
        "2-study.png",
        "3-trials.png",
        "4-trial.png",
        "5-q_func.png",
        "6-study-run.png",
        "7-report.png",
    ]
