"""`study validate` / `study run` warn when a grid's seeds per cell cannot call a timing order of
2 evaluations (family: the treated cells; the default noise model's numbers in docs/timing.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from study.spec import load_study, timing_power_warning

REPO = Path(__file__).resolve().parents[3]


def _spec(tmp_path: Path, body: str, name: str = "s.yaml", weight: str = "") -> Path:
    """A grid spec in tmp_path (noisy_partner: no clean-partner warning on a K sweep)."""
    path = tmp_path / name
    mi = f"{{noise_mode: noisy_partner{', weight: ' + weight if weight else ''}}}"
    path.write_text(f"name: design\nsampler: {{name: grid}}\ntrial: {{mi: {mi}}}\n" + body)
    return path


# λ × K × N: 3 × 2 × 2 = 12 treated cells, 4 controls (the phase-cpu design)
PHASE = (
    "search:\n"
    "  mi.weight: {values: [0.0, 0.03, 0.1, 0.3]}\n"
    "  partition.groups: {values: [2, 3]}\n"
    "  network.hidden: {values: [24, 48]}\n"
)


def test_eight_seeds_in_twelve_treated_cells_warn_with_the_seeds_needed(tmp_path):
    msg = timing_power_warning(load_study(_spec(tmp_path, "seeds: 8\n" + PHASE)))
    assert msg is not None
    assert "8 seeds per cell cannot call a timing order of 2 evaluations" in msg
    assert "BH family of 12 treated cells" in msg
    assert "2/2^8 = 0.0078, is above α/12 = 0.0042" in msg
    assert "23 seeds per cell would" in msg  # docs/timing.md: a family of 12 needs 23
    assert "sd 2 regular evaluations, α = 0.05 after BH, 80 % power" in msg


def test_enough_seeds_do_not_warn(tmp_path):
    assert timing_power_warning(load_study(_spec(tmp_path, "seeds: 23\n" + PHASE))) is None


def test_a_small_family_reaches_the_level_but_not_the_lead(tmp_path):
    body = (
        "seeds: 8\nsearch:\n  mi.weight: {values: [0.0, 0.3]}\n"
        "  partition.groups: {values: [2, 3]}\n"
    )
    msg = timing_power_warning(load_study(_spec(tmp_path, body)))
    assert "BH family of 2 treated cells" in msg
    # 2.81 evaluations for the signed-rank test, plus the order test's resolution of 0.25
    assert "they detect a lead of 3.1 evaluations at 80 % power" in msg
    assert "16 seeds per cell would" in msg


def test_lambda_not_searched_counts_every_point_treated_or_none(tmp_path):
    grid = "seeds: 8\nsearch:\n  partition.groups: {values: [2, 3]}\n"
    treated = load_study(_spec(tmp_path, grid, "a.yaml", weight="0.3"))
    assert "BH family of 2 treated cells" in timing_power_warning(treated)
    control = load_study(_spec(tmp_path, grid, "b.yaml", weight="0.0"))
    assert timing_power_warning(control) is None


def test_samplers_without_fixed_cells_do_not_warn(tmp_path):
    path = tmp_path / "tpe.yaml"
    path.write_text(
        "name: tpe\nsampler: {name: tpe}\nseeds: 2\ntrials: 4\n"
        "search: {mi.weight: {type: float, low: 0.01, high: 1.0, log: true}}\n"
    )
    assert timing_power_warning(load_study(path)) is None


@pytest.mark.parametrize("seeds", [8, 23])
def test_study_validate_prints_the_warning_and_still_succeeds(tmp_path, seeds):
    spec = _spec(tmp_path, f"seeds: {seeds}\n" + PHASE)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(STUDY_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "study", "validate", str(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert ": ok — study 'design'" in out.stdout
    warned = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    if seeds == 8:
        assert len(warned) == 1 and f"{spec}: 8 seeds per cell cannot call" in warned[0]
    else:
        assert warned == []
