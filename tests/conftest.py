"""Shared fixtures: a real Ray head + MLflow server started with cluster/local-up.sh."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest
from cluster_helpers import LOCAL_DOWN, LOCAL_UP, free_port, kill_all, script_env, session_pids


@pytest.fixture
def local_cluster(tmp_path):
    """Runs local-up.sh on free ports; always tears down, even when the test fails."""
    home = tmp_path / "home"
    ports = {k: free_port() for k in ("ray", "dashboard", "client", "agent", "mlflow")}
    ray_tmp = tempfile.mkdtemp(prefix="mst-", dir="/tmp")  # short: Ray's socket paths
    env = script_env(STUDY_HOME=str(home), STUDY_RAY_TEMP_DIR=ray_tmp)
    sids: list[int] = []
    try:
        up = subprocess.run(
            [
                str(LOCAL_UP),
                "--num-cpus",
                "1",
                "--ray-port",
                str(ports["ray"]),
                "--dashboard-port",
                str(ports["dashboard"]),
                "--client-port",
                str(ports["client"]),
                "--agent-port",
                str(ports["agent"]),
                "--mlflow-port",
                str(ports["mlflow"]),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=400,
        )
        # Read now: the test's own local-down removes the files, even if it then fails.
        sids = [int(f.read_text()) for f in (home / "run").glob("*.pid")]
        # local-up turns Ray token auth on: later commands need its token (RAY_AUTH_TOKEN_PATH)
        env.update(
            {
                k: v
                for k, v in re.findall(r"^export (\w+)=(\S+)$", up.stdout, flags=re.M)
                if k.startswith("RAY_AUTH_")
            }
        )
        yield {"up": up, "home": home, "ports": ports, "env": env}
    finally:
        subprocess.run(
            [str(LOCAL_DOWN), "--study-home", str(home), "--grace", "5"],
            env=env,
            capture_output=True,
            timeout=120,
        )
        for sid in sids:  # last resort, only for the sessions this fixture started
            kill_all(session_pids(sid))
        shutil.rmtree(ray_tmp, ignore_errors=True)
