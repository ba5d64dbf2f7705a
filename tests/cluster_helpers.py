"""Helpers shared by the tests that start real clusters (imported as a plain module: the name
`conftest` is ambiguous between test folders)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCAL_UP = REPO / "cluster" / "local-up.sh"
LOCAL_DOWN = REPO / "cluster" / "local-down.sh"


def free_port() -> int:
    # Ephemeral ports (32768-60999 on Linux) lie outside Ray's default worker range 10002-19999.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "STUDY_HOME")}
    env["RAY_AUTH_MODE"] = "disabled"  # explicit for every command (docs/stack.md §0.3)
    env.update(extra)
    return env


def session_pids(sid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,sid=,stat="], capture_output=True, text=True, check=True
    ).stdout
    return [
        int(p)
        for p, s, st in (line.split() for line in out.splitlines())
        if int(s) == sid and not st.startswith("Z")
    ]


def kill_all(pids) -> None:
    """SIGKILL each pid; one that is already gone is fine."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
