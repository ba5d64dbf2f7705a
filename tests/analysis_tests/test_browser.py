"""The report renders in headless Debian chromium: every image loads, no console errors.

Talks to chromium over the DevTools protocol (``--remote-debugging-port``) with aiohttp's websocket
client (aiohttp comes with ray[default]). CI installs the browser with
``apt-get install -y --no-install-recommends chromium``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
aiohttp = pytest.importorskip("aiohttp", reason="aiohttp (from ray[default]) drives chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (apt-get install -y --no-install-recommends chromium)",
    ),
]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]
IMAGES_JS = (
    "JSON.stringify(Array.from(document.images).map("
    "i => ({ok: i.complete && i.naturalWidth > 0, src: i.src.slice(0, 40)})))"
)
TIMEOUT = 30.0


async def _devtools_url(proc: asyncio.subprocess.Process) -> str:
    """The browser's DevTools websocket URL, read from its stderr."""
    while True:
        line = await proc.stderr.readline()
        if not line:
            raise RuntimeError("chromium exited before DevTools started listening")
        m = re.search(rb"DevTools listening on (ws://\S+)", line)
        if m:
            return m.group(1).decode()


async def _visit(urls: list[str], profile: Path) -> dict[str, dict]:
    """Load each URL in one chromium; per URL: image load states and console/JS errors."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ws_url = await asyncio.wait_for(_devtools_url(proc), TIMEOUT)
        port = re.search(r":(\d+)/", ws_url).group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                page = next(t for t in await r.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = itertools.count(1)
                events: list[dict] = []

                async def call(method: str, **params) -> dict:
                    i = next(ids)
                    await ws.send_json({"id": i, "method": method, "params": params})
                    while True:
                        msg = await ws.receive_json(timeout=TIMEOUT)
                        if msg.get("id") == i:
                            return msg
                        events.append(msg)

                for method in ("Runtime.enable", "Log.enable", "Page.enable"):
                    await call(method)
                out = {}
                for url in urls:
                    events.clear()
                    await call("Page.navigate", url=url)
                    while not any(e.get("method") == "Page.loadEventFired" for e in events):
                        events.append(await ws.receive_json(timeout=TIMEOUT))
                    res = await call("Runtime.evaluate", expression=IMAGES_JS, returnByValue=True)
                    await call("Runtime.evaluate", expression="0")  # drain late console events
                    out[url] = {
                        "images": json.loads(res["result"]["result"]["value"]),
                        "errors": _errors(events),
                    }
                return out
    finally:
        proc.terminate()
        await proc.wait()


def _errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads among DevTools events."""
    errors = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.exceptionThrown":
            errors.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in (
            "error",
            "assert",
        ):
            errors.append(f"console.{p['type']}: {p.get('args')}")
        elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"log: {p['entry']['text']} ({p['entry'].get('url')})")
    return errors


def test_report_renders_in_chromium_without_errors(grid_report, tmp_path):
    broken = tmp_path / "broken.html"  # control: proves the checks can fail
    broken.write_text(
        '<html><body><img src="missing.png"><script>console.error("boom");</script></body></html>'
    )
    report_url, broken_url = grid_report.path.as_uri(), broken.as_uri()
    seen = asyncio.run(_visit([report_url, broken_url], tmp_path / "profile"))

    report = seen[report_url]
    assert report["errors"] == []
    assert len(report["images"]) == len(list(grid_report.out_dir.glob("*.png"))) >= 5
    assert all(img["ok"] for img in report["images"]), report["images"]

    control = seen[broken_url]
    assert not control["images"][0]["ok"]
    assert any("boom" in e for e in control["errors"])
    assert any("missing.png" in e for e in control["errors"])
