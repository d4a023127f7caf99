"""Citations of browsed pages in the model's answer.

The model cites with `【{cursor}†L{a}-L{b}】` or `【{cursor}†L{a}】`; the cursor
is an index into the browser's page stack and the lines are the `L{n}`
numbers of that page. A citation of a find-result page resolves to the page
that was searched, with its own line numbers; a citation of a search-result
page resolves to the first result shown in the cited lines. Unknown cursors
stay as they were written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.browser.page import Page, get_domain

CITATION_RE = re.compile(r"【(\d+)†([^†】]+)(?:†[^†】]*)?】")
_RANGE_RE = re.compile(r"^\s*L(\d+)(?:\s*[-–]\s*L?(\d+))?\s*$")
_PARTIAL_RE = re.compile(r"【\d*(?:†[^†】]*(?:†[^†】]*)?)?$")
_LINK_ID_RE = re.compile(r"【(\d+)†")


@dataclass(frozen=True)
class Citation:
    """One citation marker found in a text, resolved against the page stack."""

    start: int  # offsets of the marker in the text
    end: int
    marker: str
    cursor: int
    url: str | None  # None: the cursor or the cited result is unknown
    title: str = ""
    domain: str = ""
    line_start: int | None = None  # lines of the page at `url`
    line_end: int | None = None
    lines: list[str] = field(default_factory=list)  # the cited lines as the model saw them
    valid: bool = False  # the cursor exists and the line range lies within its page

    @property
    def line_label(self) -> str:
        if self.line_start is None:
            return ""
        if self.line_end is None or self.line_end == self.line_start:
            return f"L{self.line_start}"
        return f"L{self.line_start}-L{self.line_end}"


def find_citations(text: str, pages: Sequence[Page]) -> list[Citation]:
    """Every citation marker in `text`, resolved against `pages` (the cursor stack)."""
    return [_resolve(m, pages) for m in CITATION_RE.finditer(text)]


def _resolve(match: re.Match[str], pages: Sequence[Page]) -> Citation:
    cursor = int(match.group(1))
    base: dict[str, Any] = {"start": match.start(), "end": match.end(), "marker": match.group(0), "cursor": cursor}
    if not 0 <= cursor < len(pages):
        return Citation(url=None, **base)
    page = pages[cursor]
    lines = page.lines
    first = last = -1  # no line range given
    if m := _RANGE_RE.match(match.group(2)):
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
    in_range = 0 <= first <= last < len(lines)
    cited = lines[first : last + 1] if in_range else []

    url: str | None = page.cite_url
    start: int | None = first if first >= 0 else None
    end: int | None = last if first >= 0 else None
    if page.kind == "find" and page.line_map is not None:
        span = range(first, last + 1) if in_range else range(0)
        mapped = [n for i in span if i < len(page.line_map) and (n := page.line_map[i]) is not None]
        start, end = (min(mapped), max(mapped)) if mapped else (None, None)
    elif page.kind == "search":
        ids = [i for line in cited for i in _LINK_ID_RE.findall(line) if i in page.urls]
        url = page.urls[ids[0]] if ids else None
        start = end = None
    if not url:
        return Citation(url=None, lines=cited, **base)
    return Citation(
        url=url,
        title=page.title if page.kind == "page" else get_domain(url),
        domain=get_domain(url),
        line_start=start,
        line_end=end,
        lines=cited,
        valid=in_range,
        **base,
    )


def render_markdown(text: str, pages: Sequence[Page]) -> str:
    """`text` with resolved citations replaced by Markdown links (`([domain L9-L11](url))`)."""
    out: list[str] = []
    last = 0
    for c in find_citations(text, pages):
        out.append(text[last : c.start])
        last = c.end
        if c.url is None:
            out.append(c.marker)
            continue
        label = f"{c.domain} {c.line_label}".strip() if c.valid else c.domain
        space = "" if c.start == 0 or text[c.start - 1].isspace() else " "
        out.append(f"{space}([{label}]({_md_url(c.url)}))")
    out.append(text[last:])
    return "".join(out)


def split_partial(text: str) -> tuple[str, str]:
    """Split streamed `text` into what can be shown and an unfinished citation at its end."""
    m = _PARTIAL_RE.search(text)
    if m is None:
        return text, ""
    return text[: m.start()], text[m.start() :]


def _md_url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
