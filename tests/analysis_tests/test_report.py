"""The HTML report built from the fixture study in a real SQLite MLflow store: the page, its
sections and the files beside it (analysis.report, .page, .sections)."""

from __future__ import annotations

import base64
import logging

import pandas as pd
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


def test_report_leads_with_the_verdicts_and_ends_with_provenance(grid_report):
    html = grid_report.path.read_text()
    order = [
        html.index(f"<h2>{h}</h2>")
        for h in (
            "Findings",
            "Timing verdicts",
            "Time to emergence (Kaplan–Meier)",
            "Calibration",
            "MI audit",
            "Phase diagrams",
            "Provenance",
        )
    ]
    assert order == sorted(order)
    assert "Not measured in this study: q_struct_delta_z, nmi_func, nmi_struct." in html


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
    assert not [t for t, _ in _tags(html) if t == "img"]
