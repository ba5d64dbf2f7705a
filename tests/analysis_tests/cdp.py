"""A small DevTools-protocol driver for headless chromium: navigate, wait for text, click,
screenshot. Used by the MLflow UI journey test; the report's own browser test (test_browser.py)
starts chromium the same way (its flags and DevTools URL reader are reused here).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import time
from pathlib import Path

import aiohttp
from test_browser import CHROMIUM, FLAGS, TIMEOUT, _devtools_url, _errors

# sandboxed iframes (MLflow's HTML artifact viewer) stay in the page's process, so the page's
# DevTools session sees them as child frames
IN_PROCESS_FRAMES = ["--disable-site-isolation-trials", "--disable-features=site-per-process"]


class Page:
    """One chromium page over CDP. Every wait has a deadline and says what it waited for."""

    def __init__(self, ws, events: list[dict]):
        self.ws, self.events, self._ids = ws, events, itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        i = next(self._ids)
        await self.ws.send_json({"id": i, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=TIMEOUT)
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def eval(self, expression: str):
        res = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error in {expression[:80]!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def text(self) -> str:
        """The visible text of the page and of same-origin iframes (the HTML artifact viewer)."""
        return await self.eval(
            "(() => { let t = document.body ? document.body.innerText : '';"
            " for (const f of document.querySelectorAll('iframe')) {"
            "  try { t += '\\n' + f.contentDocument.body.innerText; } catch (e) {} }"
            " return t; })()"
        )

    async def wait_text(self, *needles: str, timeout: float = 60.0) -> str:
        """Polls until every needle is in the rendered text; returns that text."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = await self.text() or ""
            if all(n in text for n in needles):
                return text
            await asyncio.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise AssertionError(
            f"not rendered within {timeout:.0f} s: {missing}; page text starts {text[:600]!r}"
        )

    async def click_text(self, selector: str, needle: str, timeout: float = 30.0) -> None:
        """Clicks, with real mouse events at its centre, the last element matching `selector`
        whose own text contains `needle` (the innermost one: React menus and tabs react to
        pointer events, not to `element.click()`)."""
        js = (
            "(() => { const els = Array.from(document.querySelectorAll("
            f"{json.dumps(selector)})).filter(e => e.innerText && "
            f"e.innerText.includes({json.dumps(needle)}));"
            " const el = els[els.length - 1]; if (!el) return null;"
            " el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            xy = await self.eval(js)
            if xy:
                x, y = xy
                for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
                    await self.call(
                        "Input.dispatchMouseEvent",
                        type=kind,
                        x=x,
                        y=y,
                        button="left",
                        clickCount=1,
                    )
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"no {selector} with text {needle!r} to click")

    async def type_into(self, selector: str, text: str) -> None:
        """Focuses the first element matching `selector` and types `text` as keyboard input."""
        found = await self.eval(
            f"(() => {{ const el = document.querySelector("
            f"{json.dumps(selector)}); if (el) el.focus(); return !!el; }})()"
        )
        assert found, f"no {selector} to type into"
        await self.call("Input.insertText", text=text)

    async def hrefs(self, needle: str) -> list[str]:
        """The href of every link whose text contains `needle`."""
        return await self.eval(
            "Array.from(document.querySelectorAll('a')).filter(a => a.innerText.includes("
            f"{json.dumps(needle)})).map(a => a.getAttribute('href'))"
        )

    async def frame_text(self) -> str:
        """The text of every child frame (the artifact viewer shows HTML in a sandboxed iframe
        whose document the page's own scripts cannot read; DevTools can)."""
        tree = (await self.call("Page.getFrameTree"))["frameTree"]
        texts = []
        for child in tree.get("childFrames", []):
            world = await self.call(
                "Page.createIsolatedWorld", frameId=child["frame"]["id"], worldName="journey"
            )
            res = await self.call(
                "Runtime.evaluate",
                expression="document.body.innerText",
                contextId=world["executionContextId"],
                returnByValue=True,
            )
            texts.append(res["result"].get("value") or "")
        return "\n".join(texts)

    async def screenshot(self, path: Path) -> Path:
        res = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(res["data"]))
        return path

    def errors(self) -> list[str]:
        return _errors(self.events)


async def with_page(profile: Path, body, width: int = 1400, height: int = 900):
    """Starts chromium, opens its page, runs `await body(page)`, always stops the browser."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        *IN_PROCESS_FRAMES,
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ws_url = await asyncio.wait_for(_devtools_url(proc), TIMEOUT)
        port = re.search(r":(\d+)/", ws_url).group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                target = next(t for t in await r.json() if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws, [])
                for method in ("Runtime.enable", "Log.enable", "Page.enable"):
                    await page.call(method)
                await page.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                return await body(page)
    finally:
        proc.terminate()
        await proc.wait()
