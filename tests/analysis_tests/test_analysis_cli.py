"""The analysis command line (analysis.__main__): report, timing and calibrate, exit codes and
one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.__main__ import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a fresh interpreter imports MLflow, pandas, SciPy and matplotlib: ~5 s
def test_cli_report_prints_path_and_exits_zero(fixture_study, tmp_path):
    out = tmp_path / "cli"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "report",
            fixture_study.name,
            "--tracking-uri",
            fixture_study.tracking_uri,
            "--out",
            str(out),
            "--no-log",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path == out / "report.html" and path.is_file()


@pytest.mark.parametrize("debug", [False, True])
def test_cli_missing_study_exits_two_with_one_line(fixture_study, capsys, debug):
    argv = ["report", "no-such-study", "--tracking-uri", fixture_study.tracking_uri, "--no-log"]
    assert main(argv + (["--debug"] if debug else [])) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: load_study(): no study 'no-such-study'")
    assert ("Traceback" in err) is debug


def test_cli_missing_store_exits_two(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("STUDY_HOME", str(tmp_path / "home"))
    assert main(["report", "demo"]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("command", ["report", "timing"])
def test_cli_empty_study_name_exits_two_with_one_line(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STUDY_HOME", str(tmp_path / "home"))
    assert main([command, " "]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the study name must not be empty, but got ' '"]


def test_cli_usage_error_exits_two(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report"])  # STUDY missing: argparse's usage error
    assert exc.value.code == 2


@pytest.mark.parametrize("bug", [TypeError, ValueError, KeyError])
@pytest.mark.parametrize("debug", [False, True])
def test_cli_bug_is_a_runtime_failure_not_bad_input(bug, debug, monkeypatch, capsys):
    import analysis.runs

    def broken(*args, **kwargs):
        raise bug("a bug inside the analysis at postgresql://me:s3cret@db/x")

    monkeypatch.setattr(analysis.runs, "load_study", broken)
    if debug:  # the traceback, not swallowed
        with pytest.raises(bug, match="a bug inside"):
            main(["timing", "demo", "--debug"])
        return
    assert main(["timing", "demo"]) == 1  # never 2: a bug is not bad input
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bug.__name__}: ")
    assert "a bug inside" in err[0] and "s3cret" not in err[0] and "--debug" in err[0]


def test_cli_timing_prints_verdicts_and_writes_json(fixture_study, tmp_path, capsys):
    import json

    out = tmp_path / "timing.json"
    assert (
        main(
            [
                "timing",
                fixture_study.name,
                "--tracking-uri",
                fixture_study.tracking_uri,
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "function first" in printed and "median final values per λ" in printed
    got = json.loads(out.read_text())
    v = {(r["mi.weight"], r["partition.groups"]): r for r in got["verdicts"]}  # per cell
    assert v[(0.1, 2)]["verdict"] == "inconclusive" and v[(0.1, 2)]["n_func_first"] == 4
    assert got["false_emergence"] == {"func": [0, 7], "struct": [0, 7]}
    assert got["calibration"]["false_function_first"] <= 0.05
    assert {r["mi.weight"] for r in got["finals"]} == {0.0, 0.1, 0.3}


def test_cli_calibrate_prints_rates(capsys):
    assert main(["calibrate", "--cells", "20", "--epochs", "500"]) == 0
    lines = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert float(lines["false_function_first"]) <= 0.05 and lines["n_cells"] == "20"


def test_cli_calibrate_bad_input_is_one_line(capsys):
    assert main(["calibrate", "--func-rho", "1.5"]) == 2  # a bad declared noise model: input
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "func noise must have a finite sd >= 0 and 0 <= rho < 1" in err[0]
