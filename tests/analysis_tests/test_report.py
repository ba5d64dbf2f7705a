"""The HTML report built from the fixture study in a real SQLite MLflow store: the page, its
sections and the files beside it (analysis.report, .page, .sections)."""

from __future__ import annotations

import base64
import logging
import re

import pandas as pd
import pytest
from report_html import findings_text as _findings
from report_html import start_tags as _tags

from analysis.report import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


def test_report_leads_with_the_verdict_matrix_and_ends_with_provenance(grid_report):
    html = grid_report.path.read_text()
    matrix = html.index('alt="The answer: each claim per cell')
    order = [
        html.index(f"<h2>{h}</h2>")
        for h in (
            "Findings",
            "Claims per cell",
            "Timing verdicts",
            "Time to emergence (Kaplan–Meier)",
            "Calibration",
            "MI audit",
            "Phase diagrams",
            "Provenance",
        )
    ]
    assert matrix < order[0] and order == sorted(order)
    # every section after the answer is collapsible (closed until clicked), one per heading
    assert html.count('<details class="section"') == html.count("<summary><h2>") >= 10
    assert '<details class="section" id="claims_per_cell">' in html
    assert "Not measured in this study: q_struct_delta_z, nmi_func, nmi_struct." in html


def test_report_findings_block_is_short_and_lists_no_trials(grid_report):
    lines = grid_report.findings.lines
    assert 5 <= len(lines) <= 15
    assert not any("trial_0" in line for line in lines)
    html_lines = _findings(grid_report.path.read_text()).splitlines()
    assert html_lines == lines


def test_report_html_tables_are_rounded_and_readable(grid_report):
    html = grid_report.path.read_text()
    cells = re.findall(r"<td>(.*?)</td>", html)
    assert cells
    decimals = re.compile(r"\d\.(\d+)")
    for c in cells:
        m = decimals.search(c)
        assert m is None or len(m.group(1)) <= 4, c
        assert c not in ("nan", "NaN", "-1", "inf"), c
    heads = set(re.findall(r"<th>(.*?)</th>", html))
    assert {"λ", "K", "verdict", "p (BH)"} <= heads
    assert not {"n_in_direction", "mi.weight", "p_bh"} & heads


def test_report_provenance_names_commit_versions_failures_and_dropped_runs(
    grid_report, fixture_study
):
    html = grid_report.path.read_text()
    for needle in (
        "0123456789abcdef0123456789abcdef01234567",
        "torch 2.13.0",
        "worker died before the first evaluation",
        "MI estimate is not finite",
        fixture_study.orphan_run_id,
        "sampler: grid",
    ):
        assert needle in html


def test_report_writes_csv_tables_beside_it(grid_report, fixture_study):
    out = grid_report.out_dir
    seeds = pd.read_csv(out / "seeds.csv")
    assert len(seeds) == 21
    by_lam = pd.read_csv(out / "pooled_by_mi_weight.csv").set_index("mi.weight")
    # the half-rise lag of the fitted rises: the known one within half an evaluation (25 epochs)
    assert by_lam.loc[0.1, "median_lag"] == pytest.approx(fixture_study.known_median_lag, abs=12.5)
    assert by_lam.loc[0.1, ["n", "n_func_first", "n_struct_first"]].tolist() == [7, 7, 0]
    # pooled over K: descriptive counts, never a verdict or a p-value
    assert "verdict" not in by_lam.columns and not [c for c in by_lam if c.startswith("p_")]
    # the timing onsets: the fixture's half-rises sit 12.5 epochs before its t_func / t_struct,
    # medians over the 7 λ = 0.1 seeds 112.5 and 262.5
    onsets = pd.read_csv(out / "timing_onsets.csv").set_index("mi.weight")
    assert onsets.loc[0.1, "q_func_z"] == pytest.approx(112.5, abs=5.0)
    assert onsets.loc[0.1, "q_struct_z"] == pytest.approx(262.5, abs=5.0)
    assert "dw_block_z" not in onsets  # not measured in this study
    long = pd.read_csv(out / "timing_by_ordering.csv")
    assert set(long["ordering"]) == {"function vs Q(|W|)"} and len(long) == 6
    cells = pd.read_csv(out / "timing_verdicts.csv").set_index(["mi.weight", "partition.groups"])
    assert len(cells) == 6 and cells["n"].sum() == 14
    # λ = 0.3: K = 2 failed the task (accuracy 0.80), K = 3 diverged: no seed to time
    assert cells.loc[(0.3, 2), "verdict"] == cells.loc[(0.3, 3), "verdict"] == "no seeds to time"
    assert cells.loc[(0.3, 2), "why"] == "left out: 4 failed the task"
    excluded = pd.read_csv(out / "timing_excluded.csv")
    assert excluded["reason"].value_counts().to_dict() == {
        "failed the task": 4,
        "trial diverged": 3,
    }
    km = pd.read_csv(out / "kaplan_meier_medians.csv")
    assert set(km["metric"]) == {"func", "struct"}
    phase = pd.read_csv(out / "phase_mi_weight__partition_groups.csv")
    assert len(phase) == 6 and phase["n_seeds"].sum() == 21
    reg = pd.read_csv(out / "timing_regression.csv")
    assert "p_value" not in reg and "converged" in reg
    assert {p.name for p in grid_report.files} == {p.name for p in out.iterdir()} - {"report.html"}


def test_report_is_logged_to_study_run(grid_report, fixture_study):
    from mlflow import MlflowClient

    assert grid_report.logged_run_id == fixture_study.study_run_id
    client = MlflowClient(tracking_uri=fixture_study.tracking_uri)
    logged = {f.path for f in client.list_artifacts(fixture_study.study_run_id, "report")}
    assert "report/report.html" in logged
    assert {f"report/{p.name}" for p in grid_report.files} <= logged


def test_report_on_running_study_says_so(fixture_study, tmp_path):
    rep = build_report(
        fixture_study.running_name,
        tracking_uri=fixture_study.tracking_uri,
        out_dir=tmp_path,
        log_to_mlflow=False,
    )
    html = rep.path.read_text()
    assert 'class="banner"' in html and "still running" in html
    assert rep.findings.n_running == 1 and rep.findings.n_seeds == 3  # the running trial left out
    assert "1 trial(s) have not finished" in _findings(html)


def test_report_on_empty_study_has_nothing_to_show(fixture_study, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="analysis"):
        rep = build_report(
            fixture_study.empty_name,
            tracking_uri=fixture_study.tracking_uri,
            out_dir=tmp_path,
            log_to_mlflow=False,
        )
    html = rep.path.read_text()
    assert html.count("Nothing to show") >= 3 and "nothing to show" in caplog.text
    assert "no finished seeds yet" in _findings(html)
    assert 'id="answer"' in html  # no matrix to draw, the findings still lead
    assert not [t for t, _ in _tags(html) if t == "img"]
