"""The analysis command line (analysis.__main__): report, timing and calibrate, exit codes and
one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
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
    argv = ["timing", fixture_study.name, "--tracking-uri", fixture_study.tracking_uri]
    assert main([*argv, "--json", str(out), "--n-sim", "4"]) == 0
    printed = capsys.readouterr().out
    assert "inconclusive (power)" in printed and "median final values per λ" in printed
    assert "calibration at this study's design" in printed
    got = json.loads(out.read_text())
    assert got["by"] == ["mi.weight", "partition.groups"]
    v = {(r["mi.weight"], r["partition.groups"], r["struct"]): r for r in got["verdicts"]}
    # the fixture has no ΔW curve: one ordering, function vs Q(|W|)
    assert {r["ordering"] for r in got["verdicts"]} == {"function vs Q(|W|)"}
    # q_struct follows q_func by 5-7 evaluations in every seed, but 4 seeds cannot reach the
    # level: the cell says so instead of ordering
    r = v[(0.1, 2, "q_struct_z")]
    assert r["verdict"] == "inconclusive (power)" and r["n_func_first"] == 4
    assert "cannot reach" in r["why"] and r["median_lag_evals"] == pytest.approx(6, abs=1)
    assert v[(0.0, 2, "q_struct_z")]["verdict"] == "neither emerged"
    assert v[(0.0, 2, "q_struct_z")]["control"] is True
    # λ = 0.3, K = 2 lost its accuracy (0.80): every seed failed the task
    assert v[(0.3, 2, "q_struct_z")]["verdict"] == "no seeds to time"
    assert v[(0.3, 2, "q_struct_z")]["n_failed"] == 4
    assert got["excluded"] == 3  # the diverged trial's seeds
    assert {r["n_seeds"] for r in got["calibration"]} == {3, 4}
    assert {r["family"] for r in got["calibration"]} == {2}
    assert {r["mi.weight"] for r in got["finals"]} == {0.0, 0.1, 0.3}


# ---- timing --curves: any curves table ---------------------------------------------------------


def _curves_table(seed: int = 0, n: int = 12) -> pd.DataFrame:
    """Cells 'lead' (structure 4 evaluations after function), 'same' (identical courses with
    amplitudes 18 and 7) and 'flat' (no rise), n seeds each, every 25 epochs to 1000; a falling
    column `fall` that drops 4 evaluations before function rises in every cell but 'flat'."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 1001.0, 25.0)
    rise = lambda m, a: a / (1.0 + np.exp(-(t - m) / 50.0))  # noqa: E731
    rows = []
    for cell, lag in (("lead", 100.0), ("same", 0.0), ("flat", None)):
        for s in range(n):
            m = rng.uniform(300.0, 550.0)
            on = lag is not None
            rows.append(
                pd.DataFrame(
                    {
                        "cell": cell,
                        "seed": s,
                        "epoch": t,
                        "q_func_z": (rise(m, 18.0) if on else 0) + rng.normal(0, 1, t.size),
                        "q_struct_z": (rise(m + (lag or 0), 7.0) if on else 0)
                        + rng.normal(0, 0.3, t.size),
                        "fall": -(rise(m - 100.0, 10.0) if on else 0) + rng.normal(0, 1, t.size),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


@pytest.mark.slow  # a fresh interpreter imports pandas and SciPy, then 72 curves: ~10 s
def test_cli_timing_curves_through_a_real_process(tmp_path):
    import json

    path = tmp_path / "curves.csv"
    _curves_table().to_csv(path, index=False)
    out = tmp_path / "timing.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "timing",
            "--curves",
            str(path),
            "--by",
            "cell",
            "--json",
            str(out),
            "--n-sim",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())  # strict JSON: no NaN
    verdicts = {r["cell"]: r["verdict"] for r in records}
    assert verdicts == {"flat": "neither emerged", "lead": "function first", "same": "co-emergent"}
    lead = next(r for r in records if r["cell"] == "lead")
    assert lead["median_lag_evals"] == pytest.approx(4.0, abs=0.5) and lead["n_seeds"] == 12
    assert "function first" in proc.stdout and "cell=lead" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "analysis", "timing", "--curves", str(path), "--by", "cel"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: --curves {path}: column 'cel' is missing (needed: seed, epoch, q_func_z, "
        "q_struct_z, cel; found: cell, seed, epoch, q_func_z, q_struct_z, fall)"
    ]


def test_cli_timing_curves_parquet_with_a_falling_structure_column(tmp_path, capsys):
    import json

    table = _curves_table(1)
    path = tmp_path / "curves.parquet"
    table[table["cell"] != "same"].to_parquet(path, index=False)
    out = tmp_path / "t.json"
    argv = ["timing", "--curves", str(path), "--by", "cell", "--struct", "fall"]
    assert main([*argv, "--struct-direction", "-1", "--n-sim", "0", "--json", str(out)]) == 0
    got = {r["cell"]: r for r in json.loads(out.read_text())}
    assert got["lead"]["verdict"] == "structure first"  # the fall leads function by 4
    assert got["lead"]["median_lag_evals"] == pytest.approx(-4.0, abs=0.5)
    assert got["flat"]["verdict"] == "neither emerged"
    assert "function (q_func_z) vs structure (fall), 2 cells" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "extra", "expected"),
    [
        (None, [], "error: --curves {path}: no such file"),
        ("txt", [], "error: --curves {path}: expected a .csv or .parquet file, but got '.txt'"),
        ("no_func", [], "error: --curves {path}: column 'q_func_z' is missing"),
        (
            "text",
            [],
            "error: --curves {path}: column 'q_struct_z' must hold numbers, but holds 'x'",
        ),
        ("dup", [], "error: --curves {path}: seed 0 repeats epoch 0; each seed needs one row"),
        ("ok", ["--by", "cell", "--n-sim", "-1"], "error: --n-sim: expected an integer >= 0"),
        ("ok", ["demo"], "error: timing: give a STUDY or --curves FILE (one of the two), but"),
    ],
)
def test_cli_timing_curves_bad_input_exits_two_with_one_line(
    make, extra, expected, tmp_path, capsys
):
    table = _curves_table(2, n=3)
    path = tmp_path / ("c.txt" if make == "txt" else "c.csv")
    if make == "no_func":
        table = table.drop(columns=["q_func_z"])
    elif make == "text":
        table["q_struct_z"] = table["q_struct_z"].astype(object)
        table.loc[5, "q_struct_z"] = "x"
    if make is not None:
        table.to_csv(path, index=False)  # "dup": no --by, so each seed repeats its epochs
    argv = ["timing", "--curves", str(path), *extra]
    if extra == ["demo"]:
        argv = ["timing", "demo", "--curves", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected.format(path=path)), err


def test_cli_timing_by_applies_to_curves_only(capsys):
    assert main(["timing", "demo", "--by", "cell"]) == 2
    assert "--by and --struct apply to --curves FILE" in capsys.readouterr().err


def test_cli_calibrate_prints_the_suite(capsys):
    assert main(["calibrate", "--cells", "4", "--epochs", "500", "--seeds", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:6] == ["scenario", "n", "fam", "cells", "false", "power"]
    names = [line[:22].strip() for line in lines[1:]]
    assert names[:5] == [
        "amplitude 1:4",
        "amplitude 1:2",
        "amplitude 1:1",
        "amplitude 2:1",
        "amplitude 4:1",
    ]
    assert len(names) == 15


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--func-rho", "1.5"], "the func model must have a finite amplitude, width > 0"),
        (["--struct-width", "0"], "the struct model must have"),
        (["--epochs", "50"], "--epochs/--eval-every: expected more than --run + 1 = 4"),
        (["--family", "0"], "--family: expected an integer >= 1, but got 0"),
    ],
)
def test_cli_calibrate_bad_input_is_one_line(argv, expected, capsys):
    assert main(["calibrate", *argv]) == 2  # a bad declared model: input
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
