"""The reports in headless chromium at a laptop's viewport: the first screen holds the verdict
matrix, every image loads, the page reaches nothing outside itself, sections open on a click.
The grid fixture study and a 60-trial TPE search (adaptive_study.py) are both rendered."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("aiohttp", reason="aiohttp (from ray[default]) drives chromium")
from test_browser import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]

WIDTH, HEIGHT = 1280, 800  # the first screen

LAYOUT_JS = """JSON.stringify((() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.top, r.bottom, r.width]; };
  const img = document.querySelector('#answer img');
  const urls = [];
  for (const e of document.querySelectorAll('[src],[href]'))
    urls.push(e.getAttribute('src') || e.getAttribute('href'));
  return {
    matrix: img ? box(img) : null,
    matrixLoaded: img ? img.complete && img.naturalWidth > 0 : false,
    findings: box(document.querySelector('#findings')),
    images: Array.from(document.images).map(i => i.complete && i.naturalWidth > 0),
    urls: urls.map(u => u.slice(0, 30)),
    resources: performance.getEntriesByType('resource').map(r => r.name.slice(0, 60)),
    sections: document.querySelectorAll('details.section').length,
    open: document.querySelectorAll('details.section[open]').length,
  };
})())"""
OPENED_JS = "document.querySelector('details#claims_per_cell').open"


async def _render(url: str, profile, shot) -> dict:
    from cdp import with_page

    async def body(page):
        await page.goto(url)
        await page.wait_text("Findings", "Provenance")
        seen = json.loads(await page.eval(LAYOUT_JS))
        await page.screenshot(shot)
        await page.click_text("summary", "Claims per cell")
        await asyncio.sleep(0.3)
        seen["opened"] = await page.eval(OPENED_JS)
        seen["errors"] = page.errors()
        return seen

    return await with_page(profile, body, WIDTH, HEIGHT)


def _check_first_screen(seen: dict, n_png: int) -> None:
    assert seen["errors"] == []
    assert seen["matrixLoaded"] and seen["matrix"][1] <= HEIGHT  # the whole matrix is visible
    assert seen["matrix"][2] > 200  # drawn at a readable size, not squeezed
    assert seen["findings"][0] < HEIGHT  # the findings start on the first screen too
    assert len(seen["images"]) == n_png and all(seen["images"])
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in seen["urls"]), seen["urls"]
    assert not [r for r in seen["resources"] if not r.startswith("data:")]
    assert seen["sections"] >= 10 and seen["open"] == 0  # the details wait for a click
    assert seen["opened"] is True


def test_grid_report_first_screen_holds_the_verdict_matrix(grid_report, tmp_path):
    seen = asyncio.run(
        _render(grid_report.path.as_uri(), tmp_path / "profile", tmp_path / "grid.png")
    )
    _check_first_screen(seen, len(list(grid_report.out_dir.glob("*.png"))))


def test_adaptive_report_first_screen_holds_the_verdict_matrix(adaptive_report, tmp_path):
    rep = adaptive_report.report
    seen = asyncio.run(_render(rep.path.as_uri(), tmp_path / "profile", tmp_path / "tpe.png"))
    _check_first_screen(seen, len(list(rep.out_dir.glob("*.png"))))
