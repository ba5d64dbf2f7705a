"""The compiled CPU kernels are optional: without a compiler, or when the build fails, training
runs the torch code, warns in one line and never raises; builds that start together do not clash.

These run where no compiler is installed too (the fallback is what a clean machine sees); the
ones that need a working compiler skip, saying so.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study.core import _native, _scan
from study.core._native import draws
from study.spec import load_trial_config
from study.training.loop import Trainer

REPO = Path(__file__).resolve().parents[3]
HAVE_COMPILER = any(shutil.which(c) for c in ("g++", "c++"))

TINY_WM = {
    "seeds": 2,
    "network.hidden": 8,
    "partition.groups": 2,
    "task.wm.transient": 10,
    "task.wm.segment": 20,
    "task.batch": 3,
    "critic.width": 16,
    "critic.pretrain_steps": 2,
    "mi.pairs": 32,
    "train.updates_per_epoch": 2,
}


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """Nothing loaded or warned yet in this process, an empty cache, STUDY_NATIVE unset."""
    monkeypatch.setattr(_native, "_loaded", {})
    monkeypatch.setattr(_native, "_warned", False)
    monkeypatch.setattr(_native, "build_log", {})
    monkeypatch.setenv("STUDY_NATIVE_CACHE", str(tmp_path / "native"))
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path / "cache"))
    for name in ("STUDY_NATIVE", "MISTUDY_NATIVE", "CXX"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "native"


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "study.core._native"]


def _train(monkeypatch) -> dict[str, torch.Tensor]:
    """Critic pre-training and one epoch of a tiny cpu-wm population: its weights after."""
    cfg = load_trial_config(REPO / "search_spaces" / "cpu-wm.yaml", TINY_WM)
    tr = Trainer(cfg)
    tr.pretrain_critic()
    tr.train_epoch()
    return {k: v.detach().clone() for k, v in tr.net.snapshot().items()}


def test_a_missing_compiler_means_the_torch_code_and_one_warning(fresh, monkeypatch, caplog):
    """CXX names a compiler that is not there: every load is None, the build is tried once per
    library, one warning line for the process, and training gives the torch code's weights bit
    for bit (STUDY_NATIVE=0)."""
    monkeypatch.setenv("STUDY_NATIVE", "0")
    want = _train(monkeypatch)
    monkeypatch.delenv("STUDY_NATIVE")
    monkeypatch.setenv("CXX", str(fresh.parent / "no-such-g++"))
    with caplog.at_level(logging.WARNING, logger="study.core._native"):
        assert _native.load("rng") is None and _native.load("kernels") is None
        assert not _scan.native_scan()
        got = _train(monkeypatch)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    lines = _warnings(caplog)
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert "no-such-g++" in lines[0] and "torch code" in lines[0]
    for name in ("rng", "kernels"):
        assert _native.build_log[name].startswith("unavailable: the C++ compiler CXX=")
    assert not fresh.exists() or not any(fresh.glob("*.so"))


def test_a_failing_compiler_means_the_torch_code(fresh, monkeypatch, caplog):
    """A compiler that runs and fails (exit 1, nothing written): None, one warning, the draws
    are torch's."""
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` program to stand in for a failing compiler")
    monkeypatch.setenv("CXX", false)
    with caplog.at_level(logging.WARNING, logger="study.core._native"):
        assert _native.load("rng") is None
        g, ref = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        assert torch.equal(draws.randn((1000,), g), torch.randn(1000, generator=ref))
    lines = _warnings(caplog)
    assert len(lines) == 1 and "failed on rng.cpp (exit 1)" in lines[0], lines
    assert list(fresh.iterdir()) == [p for p in fresh.iterdir() if p.suffix == ".lock"]


@pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler (g++ or c++) here")
def test_a_compile_error_is_one_line_naming_the_error(fresh, monkeypatch, caplog, tmp_path):
    bad = tmp_path / "bad.cpp"
    bad.write_text("int f() { return undeclared_name; }\n")
    monkeypatch.setattr(_native, "_HERE", tmp_path)
    monkeypatch.setitem(_native.LIBRARIES, "rng", ("bad.cpp", ()))
    with caplog.at_level(logging.WARNING, logger="study.core._native"):
        assert _native.load("rng") is None
    lines = _warnings(caplog)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "bad.cpp" in lines[0] and "undeclared_name" in lines[0]


def test_an_unknown_mode_is_an_error(fresh, monkeypatch):
    monkeypatch.setenv("STUDY_NATIVE", "fast")
    with pytest.raises(ValueError, match=r"STUDY_NATIVE must be one of 1, exact, 0.*'fast'"):
        _native.load("rng")


_LOADER = (
    "import sys\n"
    "from study.core import _native\n"
    "lib = _native.load('rng')\n"
    "print('ok' if lib is not None else 'none', _native.build_log.get('rng'))\n"
)


@pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler (g++ or c++) here")
def test_processes_that_start_together_build_once(fresh):
    """Four processes load the same library from one empty cache at once (as Ray's trial
    workers do): all get it, one of them compiled it, the cache holds one object and no
    temporary file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDY_", "MISTUDY_", "CXX"))}
    env.update(PYTHONPATH=str(REPO), STUDY_NATIVE_CACHE=str(fresh))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOADER],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    lines = [o.strip() for o, _ in outs]
    assert all(line.startswith("ok ") for line in lines), lines
    assert sum(" built " in f" {line} " for line in lines) == 1, lines
    objects = sorted(p.name for p in fresh.iterdir() if not p.name.endswith(".lock"))
    assert len(objects) == 1 and objects[0].endswith(".so"), objects
