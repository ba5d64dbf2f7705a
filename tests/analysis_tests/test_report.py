"""The HTML report built from the fixture study in a real SQLite MLflow store, and its CLI."""

from __future__ import annotations

import base64
import logging
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.report import build_report, findings
from analysis.runs import load_study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[2]


class _Tags(HTMLParser):
    """Collects the attributes of every start tag."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str]]]:
    p = _Tags()
    p.feed(html)
    return p.tags


def _findings(html: str) -> str:
    m = re.search(r'<p class="findings" id="findings">(.*?)</p>', html, re.S)
    assert m, "the report has no findings paragraph"
    return m.group(1)


def test_report_embeds_every_figure_as_png(grid_report):
    html = grid_report.path.read_text()
    imgs = [a for t, a in _tags(html) if t == "img"]
    pngs = sorted(p for p in grid_report.out_dir.glob("*.png"))
    assert len(imgs) == len(pngs) >= 5
    beside = {p.read_bytes() for p in pngs}
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(a["src"].split(",", 1)[1], validate=True)
        assert data[:8] == PNG_MAGIC and data in beside
        assert a.get("alt")


def test_report_is_self_contained(grid_report):
    tags = _tags(grid_report.path.read_text())
    assert not [t for t, _ in tags if t in ("script", "link", "iframe")]
    for _, a in tags:
        for key in ("src", "href"):
            assert not a.get(key, "").startswith(("http:", "https:", "file:", "//"))


def test_report_findings_give_a_verdict_per_cell_never_pooled(grid_report):
    # The fixture's λ > 0 seeds all have q_func_z rise 5-7 evaluations before q_struct_z.
    # A verdict is per cell of λ × K (the cells of a grid share seed values, so pooling K would
    # count a seed twice): λ = 0.1, K = 2: 4 decided seeds, exact sign test p = 2 / 2^4 = 0.125;
    # K = 3: 3 seeds, p = 0.25; λ = 0.3, K = 2: p = 0.125 (its K = 3 trial diverged and is
    # excluded). BH over the 3 treated cells: 0.1875, 0.25, 0.1875: every cell inconclusive,
    # although every decided seed is function-first: 3-4 seeds cannot show an order.
    text = _findings(grid_report.path.read_text())
    v = grid_report.findings.verdicts.set_index(["mi.weight", "partition.groups"])
    assert v.loc[(0.1, 2), ["n_seeds", "n_func_first", "n_struct_first", "n_tie", "n_neither"]
                 ].tolist() == [4, 4, 0, 0, 0]
    assert v.loc[(0.1, 2), "p_sign"] == pytest.approx(2 / 2 ** 4)
    assert v.loc[(0.1, 2), "p_sign_bh"] == pytest.approx(0.1875)
    assert v.loc[(0.1, 3), "p_sign_bh"] == pytest.approx(0.25)
    assert set(v["verdict"]) == {"inconclusive"}
    assert (0.3, 3) not in v.index
    assert v.loc[(0.0, 2), "n_neither"] == 4 and v.loc[(0.0, 3), "n_neither"] == 3
    assert "Verdicts are per cell of mi.weight × partition.groups" in text
    assert "λ = 0.1, partition.groups = 2 (4 seeds: function first 4" in text
    assert "inconclusive (sign test, BH-adjusted p = 0.19)" in text
    assert "Overall the timing is inconclusive" in text
    assert "False emergence at λ = 0: q_func_z 0 of 7 seeds" in text
    assert "3 seed(s) of trials cut short (trial diverged) are excluded" in text
    assert "Wilcoxon" not in text and "median lag" not in text
    cal = grid_report.findings.calibration
    assert cal is not None and cal.false_function_first <= cal.alpha


def test_report_leads_with_the_verdicts_and_ends_with_provenance(grid_report):
    html = grid_report.path.read_text()
    order = [html.index(f"<h2>{h}</h2>") for h in (
        "Findings", "Timing verdicts", "Time to emergence (Kaplan–Meier)", "Calibration",
        "MI audit", "Phase diagrams", "Provenance")]
    assert order == sorted(order)
    assert "Not measured in this study: q_struct_delta_z, nmi_func, nmi_struct." in html


def test_report_findings_state_accuracy_drop_and_failures(grid_report):
    text = _findings(grid_report.path.read_text())
    assert grid_report.findings.accuracy_drop_at == 0.3
    assert "starts to drop at λ = 0.3" in text
    assert "1 trial(s) failed and 1 diverged" in text
    assert "7 trials (5 finished, 1 diverged, 1 failed) and 21 analysed seeds" in text


def test_report_provenance_names_commit_versions_failures_and_dropped_runs(grid_report,
                                                                          fixture_study):
    html = grid_report.path.read_text()
    for needle in ("0123456789abcdef0123456789abcdef01234567", "torch 2.13.0",
                   "worker died before the first evaluation", "MI estimate is not finite",
                   fixture_study.orphan_run_id, "sampler: grid"):
        assert needle in html


def test_report_writes_csv_tables_beside_it(grid_report, fixture_study):
    out = grid_report.out_dir
    seeds = pd.read_csv(out / "seeds.csv")
    assert len(seeds) == 21
    by_lam = pd.read_csv(out / "pooled_by_mi_weight.csv").set_index("mi.weight")
    assert by_lam.loc[0.1, "median_lag"] == fixture_study.known_median_lag
    assert "verdict" not in by_lam.columns  # pooled over K: descriptive, never a verdict
    cells = pd.read_csv(out / "verdicts_by_cell.csv")
    assert len(cells) == 5 and cells["n_seeds"].sum() == 18  # the diverged cell is excluded
    excluded = pd.read_csv(out / "timing_excluded.csv")
    assert len(excluded) == 3 and set(excluded["reason"]) == {"trial diverged"}
    km = pd.read_csv(out / "kaplan_meier_medians.csv")
    assert set(km["metric"]) == {"func", "struct"}
    phase = pd.read_csv(out / "phase_mi_weight__partition_groups.csv")
    assert len(phase) == 6 and phase["n_seeds"].sum() == 21
    assert {p.name for p in grid_report.files} == {p.name for p in out.iterdir()} - {"report.html"}


def test_report_is_logged_to_study_run(grid_report, fixture_study):
    from mlflow import MlflowClient

    assert grid_report.logged_run_id == fixture_study.study_run_id
    client = MlflowClient(tracking_uri=fixture_study.tracking_uri)
    logged = {f.path for f in client.list_artifacts(fixture_study.study_run_id, "report")}
    assert "report/report.html" in logged
    assert {f"report/{p.name}" for p in grid_report.files} <= logged


def test_report_on_running_study_says_so(fixture_study, tmp_path):
    rep = build_report(fixture_study.running_name, tracking_uri=fixture_study.tracking_uri,
                       out_dir=tmp_path, log_to_mlflow=False)
    html = rep.path.read_text()
    assert 'class="banner"' in html and "still running" in html
    assert rep.findings.n_running == 1 and rep.findings.n_seeds == 3  # the running trial left out
    assert "1 trial(s) have not finished" in _findings(html)


def test_report_on_empty_study_has_nothing_to_show(fixture_study, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="analysis"):
        rep = build_report(fixture_study.empty_name, tracking_uri=fixture_study.tracking_uri,
                           out_dir=tmp_path, log_to_mlflow=False)
    html = rep.path.read_text()
    assert html.count("Nothing to show") >= 3 and "nothing to show" in caplog.text
    assert "no finished seeds yet" in _findings(html)
    assert not [t for t, _ in _tags(html) if t == "img"]


@pytest.mark.slow  # a fresh interpreter imports MLflow, pandas, SciPy and matplotlib: ~5 s
def test_cli_report_prints_path_and_exits_zero(fixture_study, tmp_path):
    out = tmp_path / "cli"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "report", fixture_study.name, "--tracking-uri",
         fixture_study.tracking_uri, "--out", str(out), "--no-log"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
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


def test_findings_are_reproducible_with_same_generator(fixture_study, grid_report):
    study = load_study(fixture_study.name, fixture_study.tracking_uri)
    again = findings(study, rng=np.random.default_rng(0))
    assert again.text == grid_report.findings.text


def _synthetic_study(firsts_treated: list[str], with_z: bool = True):
    """A StudyData of λ = 0 controls (pure-noise z) and λ = 0.1 seeds with the given outcomes."""
    from analysis.runs import StudyData

    epochs = np.arange(0, 501, 25, dtype=float)
    rng = np.random.default_rng(5)
    curves, seeds = [], []
    for trial, lam, firsts in (("c", 0.0, ["neither"] * 6), ("t", 0.1, firsts_treated)):
        for s, f in enumerate(firsts):
            zf = rng.normal(0, 0.8, epochs.size)
            zs = rng.normal(0, 0.3, epochs.size)
            t_f = {"function": 100.0, "structure": 300.0}.get(f, np.nan)
            t_s = {"function": 300.0, "structure": 100.0}.get(f, np.nan)
            if np.isfinite(t_f):
                zf += 10.0 * (epochs >= t_f)
                zs += 10.0 * (epochs >= t_s)
            row = {"trial_id": trial, "run_id": trial, "seed": s, "epoch": epochs,
                   "q_func": 0.0, "q_struct": 0.0, "accuracy": 0.95}
            if with_z:
                row |= {"q_func_z": zf, "q_struct_z": zs}
            curves.append(pd.DataFrame(row))
    curves = pd.concat(curves, ignore_index=True)
    from study.contract.outcomes import seed_table

    for trial, lam in (("c", 0.0), ("t", 0.1)):
        tab = seed_table(curves[curves["trial_id"] == trial].drop(columns=["trial_id", "run_id"]),
                         task="working_memory")
        seeds.append(tab.assign(trial_id=trial, run_id=trial, status="finished", running=False,
                                **{"mi.weight": lam, "train.eval_every": 25}))
    trials = pd.DataFrame({"trial_id": ["c", "t"], "run_id": ["c", "t"],
                           "status": ["finished"] * 2, "mi.weight": [0.0, 0.1]})
    return StudyData(name="synthetic", tracking_uri="", experiment_id="0", study_run_id=None,
                     status="finished", tags={}, task="working_memory", swept=["mi.weight"],
                     trials=trials, seeds=pd.concat(seeds, ignore_index=True), curves=curves,
                     dropped=pd.DataFrame())


def test_findings_say_inconclusive_when_the_data_are():
    f = findings(_synthetic_study(["function", "structure"] * 3), rng=np.random.default_rng(0))
    v = f.verdicts.set_index("mi.weight")
    assert len(v) == 2  # one row per λ: controls never pooled with treated seeds
    assert v.loc[0.1, ["n_func_first", "n_struct_first"]].tolist() == [3, 3]
    assert v.loc[0.1, "verdict"] == "inconclusive"
    assert "Overall the timing is inconclusive" in f.text
    assert f.calibration is not None and f.calibration.n_seeds == 6


def test_findings_state_a_clear_order_and_not_inconclusive():
    f = findings(_synthetic_study(["function"] * 6), rng=np.random.default_rng(0))
    assert f.verdicts.set_index("mi.weight").loc[0.1, "verdict"] == "function first"
    assert "inconclusive" not in f.text.split("λ = 0.1")[1].split(".")[0]
    assert "Overall the timing is inconclusive" not in f.text


def test_findings_without_z_scores_say_not_measured():
    f = findings(_synthetic_study(["function"] * 6, with_z=False), rng=np.random.default_rng(0))
    assert not f.measured and "not measured in this study" in f.text
    assert "function first" not in f.text


def test_cli_timing_prints_verdicts_and_writes_json(fixture_study, tmp_path, capsys):
    import json

    out = tmp_path / "timing.json"
    assert main(["timing", fixture_study.name, "--tracking-uri", fixture_study.tracking_uri,
                 "--json", str(out)]) == 0
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


def test_report_tests_the_claims_per_cell_against_the_cells_controls(grid_report):
    claims = grid_report.findings.claims
    assert len(claims) and set(claims["claim"]) == {"accuracy", "functional", "structural", "mi"}
    assert (pd.to_numeric(claims["mi.weight"]) > 0).all()  # controls are the reference, no row
    assert "partition.groups" in claims  # per cell of K, never pooled over it
    assert (claims["n"] <= 4).all()  # at most the seeds of one trial are paired
    assert (grid_report.out_dir / "claims_by_cell.csv").exists()
    text = _findings(grid_report.path.read_text())
    assert "Claims, each (cell, λ) against the same cell" in text
    cal = grid_report.findings.claims_calibration
    assert cal is not None and (cal["rejected"] <= 0.07).all()
