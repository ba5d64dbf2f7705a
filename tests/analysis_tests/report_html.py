"""Reading a report's HTML in tests: the attributes of every start tag, the findings block."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser


class _Tags(HTMLParser):
    """Collects the attributes of every start tag."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def start_tags(html: str) -> list[tuple[str, dict[str, str]]]:
    """(tag, attributes) of every start tag of the page, in order."""
    p = _Tags()
    p.feed(html)
    return p.tags


def findings_text(html: str) -> str:
    """The findings block, one sentence a line, unescaped (fails the test when the page has
    none)."""
    m = re.search(r'<ul class="findings" id="findings">(.*?)</ul>', html, re.S)
    assert m, "the report has no findings block"
    return "\n".join(unescape(t) for t in re.findall(r"<li>(.*?)</li>", m.group(1), re.S))
