"""The public face of `analysis` for notebooks: every advertised name resolves lazily, the
tables agree with the report's, and docs/example.ipynb runs against the fixture study."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import analysis

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "example.ipynb"


def test_every_public_name_resolves_and_none_is_a_submodule():
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(analysis.__path__)}
    assert not submodules & set(analysis.__all__)  # `import analysis.x` would shadow it
    for name in analysis.__all__:
        assert callable(getattr(analysis, name)), name
    with pytest.raises(AttributeError, match="no_such_table"):
        analysis.no_such_table  # noqa: B018


def test_importing_analysis_loads_nothing_heavy():
    code = (
        "import sys, analysis; "
        "print([m for m in ('pandas', 'mlflow', 'matplotlib', 'torch', 'scipy') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_api_tables_are_the_reports(fixture_study, grid_report):
    data = analysis.load_study(fixture_study.name, fixture_study.tracking_uri)
    out = grid_report.out_dir
    claims = analysis.claims_by_cell(data)
    pd.testing.assert_frame_equal(
        claims.reset_index(drop=True), pd.read_csv(out / "claims_by_cell.csv"), check_dtype=False
    )
    timing = analysis.timing_verdicts(data)
    assert list(timing.columns[:5]) == ["mi.weight", "partition.groups", "verdict", "n", "why"]
    saved = pd.read_csv(out / "timing_verdicts.csv")
    assert timing["verdict"].tolist() == saved["verdict"].tolist()
    matrix = analysis.verdict_matrix(data)
    timing_row = "Timing, function vs Q(|W|)"  # one row per ordering measured (ΔW is not)
    assert list(matrix.index) == [*grid_report.findings.matrix.claims, timing_row]
    assert matrix.loc["Accuracy kept", "λ=0.3 · K=2"] == "breaks"
    assert matrix.loc[timing_row, "λ=0 · K=2"] == "neither emerged"
    excluded = analysis.timing_excluded(data)
    assert set(excluded["reason"]) == {"failed the task", "trial diverged"}
    phase = analysis.phase_cells(data, "mi.weight", "partition.groups")
    assert phase["n_seeds"].sum() == 21
    assert len(analysis.mi_audit_table(data)) == 3  # one row per λ
    imp = analysis.importance_table(data, evaluators=("ped_anova",), n_repeats={"ped_anova": 2})
    assert set(imp["evaluator"]) == {"PED-ANOVA (top 10 % of trials vs all)"}
    lim = analysis.lambda_limits(data)
    assert lim["estimate"].isna().all() and lim["message"].str.contains("four trials").all()
    shown = analysis.display_table(claims)
    assert "λ" in shown.columns and "mi.weight" not in shown.columns


def test_example_notebook_runs_against_the_fixture_study(fixture_study, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MISTUDY_EXAMPLE_STUDY", fixture_study.name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fixture_study.tracking_uri)
    # the kernel imports the same `analysis` as this test (a worktree, or the installed one)
    root = str(Path(analysis.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("ename")]
    assert not errors
    assert f"{fixture_study.name}: 7 trials" in text
    assert "grid - Grid:" in text
    for needle in ("Accuracy kept", "neither emerged", "failed the task", "PED-ANOVA"):
        assert needle in text, needle
