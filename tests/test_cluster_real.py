"""The cluster path's real parts on one machine: PostgreSQL, several Ray nodes, a tracking outage.

- PostgreSQL: a real server (Debian's `postgresql`: `initdb` + `pg_ctl`, loopback only, password
  auth) holds the Optuna storage and the backend of a real `mlflow server`; the study driver is
  SIGKILLed mid-study and the study run again, as the SQLite path is in tests/study_tests.
- Multi-node Ray: `ray.cluster_utils.Cluster` with a head of 0 CPUs (as the KubeRay head) and two
  1-CPU worker nodes; a worker node is removed mid-study and its trial resumes on the other node
  from its checkpoint.
- Tracking outage: the `mlflow server` is killed mid-study and restarted on the same port and
  store; MLflow's client retries (urllib3, backoff 0, 4, 8, 16 ... s) carry the trial through.

Each test asserts the same counts: trial runs = complete Optuna trials, 0 duplicate trial ids,
0 runs RUNNING, every curve step logged exactly once; the counts are printed (`-s` shows them).
Marked `cluster` and `slow`. On 2 cores shared with other jobs (load ~10) they took 169 s
(PostgreSQL), 62 s (nodes) and 216 s (outage, 52 s of it the server's restart).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from cluster_helpers import free_port, kill_all
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search_spaces" / "smoke.yaml"
MLFLOW = Path(sys.executable).parent / "mlflow"

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


# --- helpers -------------------------------------------------------------------------------------


def write_spec(
    tmp_path: Path,
    name: str,
    values,
    *,
    epochs: int,
    every: int = 4,
    concurrency: int = 1,
    max_failures: int = 1,
) -> Path:
    spec = {
        "name": name,
        "base": str(SMOKE),
        "trial": {
            "train": {
                "epochs": epochs,
                "eval_every": every,
                "checkpoint_every": every,
                "snapshot_every": 0,
                "threads": 1,
            }
        },
        "search": {"mi.weight": {"values": list(values)}},
        "sampler": {"name": "grid", "seed": 0},
        "objectives": [{"metric": "final.q_func", "direction": "maximize"}],
        "concurrency": concurrency,
        "resources": {"cpu": 1},
        "max_failures": max_failures,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _get(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        return r.read()


class MlflowServer:
    """`mlflow server` on 127.0.0.1 in its own session, so it can be killed and started again on
    the same port and store."""

    def __init__(self, backend: str, artifacts: Path, log: Path, port: int | None = None):
        self.backend, self.artifacts, self.log = backend, artifacts, log
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(MLFLOW),
                    "server",
                    "--backend-store-uri",
                    self.backend,
                    "--artifacts-destination",
                    str(self.artifacts),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.artifacts.parent,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if _get(self.uri + "/health").strip() == b"OK":
                    return
            except OSError:
                pass
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not come up"
            time.sleep(0.5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def _ray_pids(marker: str) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if marker in line]


def _cli_env(home: Path, ray_tmp: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "STUDY_OPTUNA_STORAGE")
    }
    env.update(
        STUDY_HOME=str(home),
        RAY_TMPDIR=ray_tmp,
        RAY_AUTH_MODE="disabled",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def _trial_runs(client: MlflowClient, name: str) -> list:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return []
    return [
        r
        for r in client.search_runs([exp.experiment_id], max_results=1000)
        if r.data.tags.get("study.role") == "trial"
    ]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the study exited ({proc.returncode}) before {what}")
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def fault_counts(
    client: MlflowClient, name: str, storage: str, n_trials: int, steps: list[int]
) -> dict[str, int]:
    """The counts every fault test asserts, as a dict (printed by the tests)."""
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    trial_runs = [r for r in runs if r.data.tags["study.role"] == "trial"]
    ids = [r.data.tags["study.trial_id"] for r in trial_runs]
    study = optuna.load_study(study_name=name, storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    curve = {
        r.data.tags["study.trial_id"]: sorted(
            m.step for m in client.get_metric_history(r.info.run_id, "q_func")
        )
        for r in trial_runs
    }
    counts = {
        "trial_runs": len(trial_runs),
        "complete_trials": len(complete),
        "duplicate_trial_ids": len(ids) - len(set(ids)),
        "running": sum(r.info.status == "RUNNING" for r in runs),
        "curve_steps": sum(len(s) for s in curve.values()),
        "curve_steps_expected": n_trials * len(steps),
        "study_runs": sum(r.data.tags["study.role"] == "study" for r in runs),
    }
    assert counts["trial_runs"] == counts["complete_trials"] == n_trials, counts
    assert counts["duplicate_trial_ids"] == 0 and counts["running"] == 0, counts
    assert counts["study_runs"] == 1, counts
    assert all(s == steps for s in curve.values()), curve  # each step once, none lost
    assert all(r.data.tags["study.status"] == "finished" for r in trial_runs)
    return counts


def kill_and_resume(
    cmd: list[str], env: dict[str, str], client: MlflowClient, name: str, ray_tmp: str
) -> subprocess.CompletedProcess:
    """Runs the study CLI, SIGKILLs the driver once a trial has logged a curve point, cleans up
    the Ray processes it orphaned, and runs the same command again to the end."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for(
            lambda: any("q_func" in r.data.metrics for r in _trial_runs(client, name)),
            300,
            "a trial's first evaluation",
            proc,
        )
        os.killpg(proc.pid, signal.SIGKILL)  # the driver dies without any cleanup
        proc.wait(timeout=30)
    finally:
        kill_all(_ray_pids(ray_tmp))  # Ray's own processes outlive a SIGKILLed driver
    time.sleep(1)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    kill_all(_ray_pids(ray_tmp))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "(resumed)" in again.stdout
    return again


# --- PostgreSQL ----------------------------------------------------------------------------------


def _pg_bin(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return candidates[-1] if candidates else None


def _db_user() -> str | None:
    """initdb refuses to run as root: as root, the server runs as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL on 127.0.0.1 (password auth), with databases `optuna`, `mlflow`."""
    psycopg = pytest.importorskip("psycopg", reason="the [cluster] extra (psycopg) is needed")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    user = _db_user()
    if os.geteuid() == 0 and user is None:
        pytest.skip("running as root without a `postgres` user to run the server as")
    as_user = ["runuser", "-u", user, "--"] if user else []
    root = Path(tempfile.mkdtemp(prefix="mpg-", dir="/tmp"))  # short: the socket path
    data, password, port = root / "data", "s3cret-pw", free_port()
    (root / "pw").write_text(password + "\n")
    if user:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chown(root / "pw", pw.pw_uid, pw.pw_gid)
    os.chmod(root, 0o700)
    try:
        subprocess.run(
            [
                *as_user,
                initdb,
                "-D",
                str(data),
                "-U",
                "mistudy",
                f"--pwfile={root / 'pw'}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *as_user,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        base = f"mistudy:{password}@127.0.0.1:{port}"
        with psycopg.connect(f"postgresql://{base}/postgres", autocommit=True) as conn:
            for db in ("optuna", "mlflow"):
                conn.execute(f"CREATE DATABASE {db}")
        yield {
            "optuna": f"postgresql+psycopg://{base}/optuna",
            "mlflow": f"postgresql+psycopg://{base}/mlflow",
            "password": password,
        }
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_study_killed_and_resumed_without_duplicates(postgres, tmp_path):
    home = tmp_path / "home"
    (tmp_path / "artifacts").mkdir()
    server = MlflowServer(postgres["mlflow"], tmp_path / "artifacts", tmp_path / "mlflow.log")
    ray_tmp = tempfile.mkdtemp(prefix="mpr-", dir="/tmp")
    spec = write_spec(tmp_path, "pg", [0.0, 0.3], epochs=16)
    env = _cli_env(
        home, ray_tmp, MLFLOW_TRACKING_URI=server.uri, STUDY_OPTUNA_STORAGE=postgres["optuna"]
    )
    try:
        server.start()
        client = MlflowClient(server.uri)
        kill_and_resume(
            [sys.executable, "-m", "study", "run", str(spec), "-q", "--num-cpus", "1"],
            env,
            client,
            "pg",
            ray_tmp,
        )
        counts = fault_counts(client, "pg", postgres["optuna"], 2, list(range(0, 17, 4)))
    finally:
        server.kill()
        kill_all(_ray_pids(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print("postgres fault counts:", json.dumps(counts))
    # both stores really are PostgreSQL: Optuna's and MLflow's tables are there
    import psycopg

    plain = postgres["optuna"].replace("+psycopg", "")
    with psycopg.connect(plain) as conn:
        n = conn.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    assert n == 2
    with psycopg.connect(plain.rsplit("/", 1)[0] + "/mlflow") as conn:
        n = conn.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0]
    assert n == 3  # the study run and two trial runs


# --- several Ray nodes ---------------------------------------------------------------------------


def _results(experiment: Path) -> dict[str, list[dict]]:
    """Tune's result.json lines per trial id (every report, with the node that made it)."""
    out = {}
    for path in experiment.glob("*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if lines:
            out[lines[0]["trial_id"]] = lines
    return out


def test_worker_node_removed_mid_study_trials_resume_on_the_other(tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from study.service.driver import run_study
    from study.spec import load_study

    home = tmp_path / "home"
    monkeypatch.setenv("STUDY_HOME", str(home))
    for var in ("MLFLOW_TRACKING_URI", "STUDY_OPTUNA_STORAGE", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    # 60 epochs: the node is removed once both trials pass epoch 8, so the moved trial has most of
    # its run left (with 24 epochs an idle machine could finish it before the removal landed)
    spec = write_spec(tmp_path, "nodes", [0.0, 0.3], epochs=60, concurrency=2, max_failures=2)
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        ray.init(address=cluster.address, log_to_driver=False)
        head_id = cluster.head_node.node_id
        worker_ids = {w.node_id for w in workers}
        outcome: list = []
        errors: list = []

        def drive():
            try:
                outcome.append(run_study(load_study(spec), verbose=0))
            except BaseException as e:
                errors.append(e)

        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        experiment = home / "ray" / "nodes"
        # both trials running, each past its first checkpoint (epoch 4), one on each worker
        placed = wait_for(
            lambda: (
                lambda r: (
                    r
                    if len(r) == 2
                    and all(max(x["epoch"] for x in lines) >= 8 for lines in r.values())
                    else None
                )
            )(_results(experiment)),
            300,
            "both trials past their first checkpoint",
        )
        nodes = {tid: lines[-1]["node_id"] for tid, lines in placed.items()}
        assert set(nodes.values()) == worker_ids  # one trial per worker, none on the head
        driver_node = ray.get_runtime_context().get_node_id()
        victim = next(w for w in workers if w.node_id != driver_node)  # never the driver's
        moved = next(t for t, n in nodes.items() if n == victim.node_id)
        assert max(x["epoch"] for x in placed[moved]) < 60  # still running when removed
        cluster.remove_node(victim, allow_graceful=False)
        driver.join(timeout=400)
        assert not driver.is_alive(), "the study did not finish after the node was removed"
        assert not errors, errors
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert outcome[0].n_errors == 0
    results = _results(experiment)
    seen = {n for lines in results.values() for n in (x["node_id"] for x in lines)}
    assert head_id not in seen and seen <= worker_ids
    lines = results[moved]
    after = [x for x in lines if x["node_id"] != victim.node_id]
    assert after and {x["node_id"] for x in after} == worker_ids - {victim.node_id}
    before = max(x["epoch"] for x in lines if x["node_id"] == victim.node_id)
    assert min(x["epoch"] for x in after) > 0  # resumed from a checkpoint, not from scratch
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    counts = fault_counts(
        client, "nodes", f"sqlite:///{home / 'optuna.db'}", 2, list(range(0, 61, 4))
    )
    counts.update(
        moved_trial_last_epoch_on_removed_node=before,
        moved_trial_first_epoch_after=min(x["epoch"] for x in after),
    )
    print("multi-node fault counts:", json.dumps(counts))


# --- tracking outage -----------------------------------------------------------------------------

OUTAGE_S = 12  # at least; a 30 s outage costs CI time, the mechanism (connect retries) is the
# same: the client's retries wait about 0, 4, 8, 16, 32, 64 s, two minutes in all


def test_tracking_server_outage_loses_no_metric(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "artifacts").mkdir()
    server = MlflowServer(
        f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts", tmp_path / "mlflow.log"
    )
    ray_tmp = tempfile.mkdtemp(prefix="mor-", dir="/tmp")
    spec = write_spec(tmp_path, "outage", [0.1], epochs=16, every=2)
    env = _cli_env(home, ray_tmp, MLFLOW_TRACKING_URI=server.uri)
    proc = None
    try:
        server.start()
        client = MlflowClient(server.uri)
        log = open(tmp_path / "study.log", "wb")  # a file: a full pipe would block the study
        proc = subprocess.Popen(
            [sys.executable, "-m", "study", "run", str(spec), "-q", "--num-cpus", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: any(
                len(client.get_metric_history(r.info.run_id, "q_func")) >= 2
                for r in _trial_runs(client, "outage")
            ),
            300,
            "two evaluations logged",
            proc,
        )
        (run,) = _trial_runs(client, "outage")
        trial_id = run.data.tags["study.trial_id"]
        work = list(Path(tempfile.gettempdir()).glob(f"mistudy-{trial_id}-*"))
        assert work, "the trial's working folder (its checkpoints) was not found"

        def saved() -> float:
            return max(
                (f.stat().st_mtime for w in work for f in (w / "ckpt").glob("*")), default=0.0
            )

        # kill the server the moment the trial saves a checkpoint: it logs that evaluation
        # right after (then writes its outputs and logs its provisional summary), so its
        # logging calls run into the outage
        last, deadline = saved(), time.monotonic() + 300
        while saved() == last:
            assert proc.poll() is None and time.monotonic() < deadline, "no next checkpoint"
            time.sleep(0.01)
        down = time.time()
        server.kill()
        time.sleep(OUTAGE_S)
        up = time.time()
        server.start()
        back = time.time()
        proc.wait(timeout=500)
        log.close()
        assert proc.returncode == 0, (tmp_path / "study.log").read_text()[-3000:]
        # Each point is stamped just before its request. The outage fell inside the trial
        # (points on both sides), and the trial did not go on without the server: at most the
        # one call that then blocked, retrying, was stamped while it was down (an evaluation
        # takes about a second, so dropped or buffered points would be many), and the next
        # point came once the server was back. Each step is there once (below): nothing was
        # dropped, and the request cut off by the kill was retried without a duplicate.
        stamps = sorted(
            m.timestamp / 1000
            for key in ("q_func", "final.q_func")
            for m in client.get_metric_history(run.info.run_id, key)
        )
        before = [t for t in stamps if t <= down]
        during = [t for t in stamps if down < t <= up]
        after = [t for t in stamps if t > up]
        assert before and after, "the outage did not fall mid-trial"
        assert len(during) <= 1, f"{len(during)} points stamped while the server was down"
        gap = after[0] - (during or before)[-1]
        counts = fault_counts(
            client, "outage", f"sqlite:///{home / 'optuna.db'}", 1, list(range(0, 17, 2))
        )
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        server.kill()
        kill_all(_ray_pids(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
    counts.update(
        outage_s=OUTAGE_S,
        server_back_after_s=round(back - down, 1),
        logging_blocked_s=round(gap, 1),
        points_stamped_during_outage=len(during),
    )
    print("outage counts:", json.dumps(counts))
