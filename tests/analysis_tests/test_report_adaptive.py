"""The report of a real 60-trial TPE search (tests/analysis_tests/adaptive_study.py): an adaptive
search is judged per bin of λ, its findings stay short, and it shows which hyperparameters
matter and how the metrics respond to each continuous key."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from report_html import findings_text as _findings
from report_html import start_tags as _tags

pytestmark = pytest.mark.slow


def test_adaptive_findings_are_short_and_never_list_trials(adaptive_report):
    rep = adaptive_report.report
    fnd = rep.findings
    assert fnd.n_trials == 60 and fnd.cells.design.kind == "adaptive"
    lines = _findings(rep.path.read_text()).splitlines()
    assert lines == fnd.lines and 5 <= len(lines) <= 15
    # no sentence names a trial, and none is per trial: 60 trials, at most 15 sentences
    assert not [line for line in lines if re.search(r"trial_\d", line)]
    assert lines[1].startswith("Adaptive search (")
    assert "λ in 4 log-spaced bins" in lines[1] and "pooled: optim.lr" in lines[1]
    assert any(line.startswith("Most important key by fANOVA") for line in lines)


def test_adaptive_cells_are_bins_of_lambda_by_k(adaptive_report):
    rep = adaptive_report.report
    cut = rep.findings.cells
    assert cut.keys == ["mi.weight", "partition.groups"] and cut.pooled == ["optim.lr"]
    labels = set(cut.cell_seeds["mi.weight"])
    assert labels <= set(cut.binning.labels) and len(cut.binning.labels) == 4
    matrix = rep.findings.matrix
    assert len(matrix.cells) <= 8  # 4 bins × 2 values of K, never 60 trials
    claims = pd.read_csv(rep.out_dir / "claims_by_bin.csv")
    assert set(claims["mi.weight"]) <= labels and set(claims["partition.groups"]) <= {2, 3}
    timing = pd.read_csv(rep.out_dir / "timing_verdicts.csv")
    assert len(timing) <= 8 and set(timing["mi.weight"]) <= labels
    html = rep.path.read_text()
    assert cut.binning.statement in html  # the binning is stated


def test_adaptive_report_shows_importance_responses_contours_and_limits(adaptive_report):
    rep = adaptive_report.report
    out = rep.out_dir
    names = {p.name for p in rep.files}
    for png in (
        "verdict_matrix.png",
        "importance.png",
        "parallel_coordinates.png",
        "response_mi_weight.png",
        "response_optim_lr.png",
        "contour_mi_weight__optim_lr_functional.png",
    ):
        assert png in names, png
    imp = pd.read_csv(out / "importance.csv")
    evaluators = set(imp["evaluator"])
    assert evaluators == {
        "fANOVA (random forest, 16 trees)",
        "PED-ANOVA (top 10 % of trials vs all)",
    }
    ranked = imp.dropna(subset=["importance"])
    assert set(ranked["param"]) == {"mi.weight", "partition.groups", "optim.lr"}
    assert (ranked["q05"] <= ranked["q95"]).all() and (ranked["n_repeats"] >= 5).all()
    lim = pd.read_csv(out / "lambda_limits.csv").set_index("metric")
    assert lim.loc["accuracy", "n_trials"] >= 4 and lim.loc["accuracy", "ci_lo"] < 1.0
    html = rep.path.read_text()
    for heading in ("Response to the hyperparameters", "Which hyperparameters matter"):
        assert f"<h2>{heading}</h2>" in html


def test_adaptive_report_is_self_contained_and_rounded(adaptive_report):
    rep = adaptive_report.report
    html = rep.path.read_text()
    tags = _tags(html)
    assert not [t for t, _ in tags if t in ("script", "link", "iframe")]
    for _, a in tags:
        for key in ("src", "href"):
            assert not a.get(key, "").startswith(("http:", "https:", "file:", "//"))
    decimals = re.compile(r"\d\.(\d+)")
    for cell in re.findall(r"<td>(.*?)</td>", html):
        m = decimals.search(cell)
        assert m is None or len(m.group(1)) <= 4, cell


def test_adaptive_study_is_cheap_enough_for_ci(adaptive_report):
    # budget: the whole suite in 20 minutes on 2 cores; this study and its report, about a
    # minute alone (recorded, checked loosely: a loaded machine is slower)
    total = sum(adaptive_report.seconds.values())
    print(f"adaptive study: {adaptive_report.seconds}")
    assert total < 600
