"""The report's HTML page: sections of headings, paragraphs, embedded figures and tables, the
files written beside it (a PNG per figure, a CSV per named table), and its style.

The page is one self-contained file: figures are embedded as base64 PNG, the CSS is inline, and
there is no script or external link.
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

__all__ = ["CSS", "Page", "slug"]

_log = logging.getLogger("analysis.report")


class Page:
    """Accumulates HTML sections, embedded figures and the files written beside the report."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.body: list[str] = []
        self.files: list[Path] = []

    def h2(self, title: str) -> None:
        """A section heading."""
        self.body.append(f"<h2>{html.escape(title)}</h2>")

    def p(self, text: str, cls: str = "") -> None:
        """A paragraph of plain text (escaped), of CSS class `cls` if given."""
        c = f' class="{cls}"' if cls else ""
        self.body.append(f"<p{c}>{html.escape(text)}</p>")

    def nothing(self, what: str) -> None:
        """Say, on the page and in the log, that a section has nothing to show and why."""
        _log.warning("report: nothing to show for %s.", what)
        self.p(f"Nothing to show: {what}.", "empty")

    def figure(self, fig: Any, name: str, caption: str) -> None:
        """A matplotlib figure embedded as PNG, also written beside the page as `name`.png."""
        png = to_png(fig)
        path = self.out_dir / f"{name}.png"
        path.write_bytes(png)
        self.files.append(path)
        data = base64.b64encode(png).decode("ascii")
        self.body.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f'<figcaption>{html.escape(caption)} <span class="file">({path.name})</span>'
            "</figcaption></figure>"
        )

    def table(self, df: pd.DataFrame, name: str | None = None, *, max_rows: int = 200) -> None:
        """The first `max_rows` rows of a table (none for 0), and all of it as `name`.csv."""
        if name is not None:
            path = self.out_dir / f"{name}.csv"
            df.to_csv(path, index=False)
            self.files.append(path)
        if max_rows > 0:
            shown = df.head(max_rows).to_html(
                index=False, na_rep="–", border=0, classes="t", float_format=lambda v: f"{v:.4g}"
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
        running), the findings paragraph, the sections added so far and the data notes."""
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
            notes_html = f"<h2>Data notes</h2><ul>{items}</ul>"
        return (
            f"{head}<body><h1>Study report: {html.escape(name)}</h1>{banner}"
            f'<h2>Findings</h2><p class="findings" id="findings">{html.escape(findings)}'
            f"</p>{''.join(self.body)}{notes_html}</body></html>"
        )


CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em}
.findings{background:#eef6ee;border-left:4px solid #4a4;padding:.6em 1em;font-size:1.05em}
.empty{color:#777;font-style:italic} figure{margin:1em 0} img{max-width:100%}
figcaption{font-size:.9em;color:#555} .file{color:#999}
table.t{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.t td,table.t th{border:1px solid #ddd;padding:2px 6px;text-align:right}
.scroll{overflow-x:auto}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
"""


def slug(*keys: str) -> str:
    """A file-name stem of dotted keys: other characters become ``_``, keys join with ``__``."""
    return "__".join(re.sub(r"[^A-Za-z0-9]+", "_", k).strip("_") for k in keys)
