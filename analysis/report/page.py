"""The report's HTML page: the answer first (the verdict matrix and the findings block), then
sections a reader can skip (collapsible ``<details>``, one per heading) of paragraphs, embedded
figures and tables, the files written beside it (a PNG per figure, a CSV per named table), and
its style.

The page is one self-contained file: figures are embedded as base64 PNG, the CSS is inline, and
there is no script or external link. Every HTML table goes through
:func:`analysis.tables.display_table` (p-values to 2 significant figures, effects to 3, readable
column names, no sentinels, onsets at the first evaluation as "≤ t"); the CSV beside it keeps
the machine table.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.figures import to_png
from analysis.tables import display_table

__all__ = ["CSS", "Page", "slug"]

_log = logging.getLogger("analysis.report")


class Page:
    """Accumulates HTML sections, embedded figures and the files written beside the report."""

    def __init__(self, out_dir: Path, *, left_censored: dict[str, Any] | None = None):
        self.out_dir = out_dir
        self.body: list[str] = []
        self.files: list[Path] = []
        self.answer: list[str] = []  # the verdict matrix, shown before the findings
        self.left_censored = dict(left_censored or {})  # onset column -> first evaluation
        self._open = False

    def h2(self, title: str, *, open: bool = False) -> None:
        """Start a section: a collapsible block headed `title` (open when `open`) that holds
        everything added until the next heading."""
        self._close()
        anchor = slug(title).lower() or "section"
        self.body.append(
            f'<details class="section" id="{anchor}"{" open" if open else ""}>'
            f"<summary><h2>{html.escape(title)}</h2></summary>"
        )
        self._open = True

    def _close(self) -> None:
        if self._open:
            self.body.append("</details>")
            self._open = False

    def p(self, text: str, cls: str = "") -> None:
        """A paragraph of plain text (escaped), of CSS class `cls` if given."""
        c = f' class="{cls}"' if cls else ""
        self.body.append(f"<p{c}>{html.escape(text)}</p>")

    def nothing(self, what: str) -> None:
        """Say, on the page and in the log, that a section has nothing to show and why."""
        _log.warning("report: nothing to show for %s.", what)
        self.p(f"Nothing to show: {what}.", "empty")

    def figure(self, fig: Any, name: str, caption: str, *, answer: bool = False) -> None:
        """A matplotlib figure embedded as PNG, also written beside the page as `name`.png;
        with `answer`, at the top of the page before the findings (the verdict matrix)."""
        png = to_png(fig)
        path = self.out_dir / f"{name}.png"
        path.write_bytes(png)
        self.files.append(path)
        data = base64.b64encode(png).decode("ascii")
        w, h = _png_size(png)
        (self.answer if answer else self.body).append(
            f'<figure><img alt="{html.escape(caption)}" width="{w}" height="{h}" '
            f'src="data:image/png;base64,{data}">'
            f'<figcaption>{html.escape(caption)} <span class="file">({path.name})</span>'
            "</figcaption></figure>"
        )

    def table(
        self,
        df: pd.DataFrame,
        name: str | None = None,
        *,
        max_rows: int = 200,
        names: dict[str, str] | None = None,
        left_censored: dict[str, Any] | None = None,
    ) -> None:
        """The first `max_rows` rows of a table (none for 0) as the reader's table
        (:func:`analysis.tables.display_table`, onset columns left-censored at the first
        evaluation; `left_censored` adds columns to the page's), and all of it, machine names
        and full precision, as `name`.csv."""
        if name is not None:
            path = self.out_dir / f"{name}.csv"
            df.to_csv(path, index=False)
            self.files.append(path)
        if max_rows > 0:
            names = None if names is None else {**_display_names(), **names}
            censored = {**self.left_censored, **(left_censored or {})}
            shown = display_table(df.head(max_rows), names=names, left_censored=censored).to_html(
                index=False, border=0, classes="t", escape=True
            )
            self.body.append(f'<div class="scroll">{shown}</div>')
        if len(df) > max_rows:
            rest = f"{len(df) - max_rows} more rows" if max_rows > 0 else f"{len(df)} rows"
            self.p(f"({rest} in {name}.csv beside this report.)")

    def pre(self, text: str) -> None:
        """Preformatted text (escaped)."""
        self.body.append(f"<pre>{html.escape(text)}</pre>")

    def document(
        self, name: str, findings: str, notes: list[str], n_running: int | None = None
    ) -> str:
        """The whole page: title, a banner when `n_running` is given (the study is still
        running), the answer (the verdict matrix, then the findings block, one sentence of
        `findings` a line), the sections added so far and the data notes."""
        self._close()
        head = (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>Study report: {html.escape(name)}</title><style>{CSS}</style></head>"
        )
        banner = ""
        if n_running is not None:
            banner = (
                f'<p class="banner">This study is still running ({n_running} trial(s) '
                "unfinished): the report shows the trials finished so far.</p>"
            )
        notes_html = ""
        if notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            notes_html = (
                '<details class="section" id="data_notes"><summary><h2>Data notes</h2>'
                f"</summary><ul>{items}</ul></details>"
            )
        lines = "".join(f"<li>{html.escape(t)}</li>" for t in findings.splitlines() if t)
        return (
            f"{head}<body><h1>Study report: {html.escape(name)}</h1>{banner}"
            f'<section class="answer" id="answer">{"".join(self.answer)}'
            f'<h2>Findings</h2><ul class="findings" id="findings">{lines}</ul></section>'
            f'<p class="hint">Details follow in sections that open on a click.</p>'
            f"{''.join(self.body)}{notes_html}</body></html>"
        )


CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
h1{margin:.2em 0;font-size:1.5em} h2{font-size:1.2em;margin:.3em 0}
details.section{border-top:1px solid #ccc;padding:.2em 0}
details.section>summary{cursor:pointer} summary h2{display:inline}
.answer figure{margin:.3em 0} .answer h2{margin-top:.2em}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em}
.findings{background:#eef6ee;border-left:4px solid #4a4;padding:.4em 1em .4em 2em;margin:.3em 0}
.findings li{margin:.1em 0} .hint{color:#777;font-size:.85em}
.empty{color:#777;font-style:italic} figure{margin:1em 0} img{max-width:100%;height:auto}
figcaption{font-size:.9em;color:#555} .file{color:#999}
table.t{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.t td,table.t th{border:1px solid #ddd;padding:2px 6px;text-align:right}
.scroll{overflow-x:auto}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
"""


def _display_names() -> dict[str, str]:
    from analysis.tables import DISPLAY_NAMES

    return dict(DISPLAY_NAMES)


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def slug(*keys: str) -> str:
    """A file-name stem of dotted keys: other characters become ``_``, keys join with ``__``."""
    return "__".join(re.sub(r"[^A-Za-z0-9]+", "_", k).strip("_") for k in keys)
