"""What the browser keeps of a page: its text, its title and its numbered links."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import quote, urlsplit

WRAP_WIDTH = 80
VIEW_SOURCE = "view-source:"
# Kept as they are in a displayed URL: its syntax, and escapes already made.
_URL_SYNTAX = "!#$%&'()*+,-./:;=?@[]_~"


@dataclass(frozen=True)
class Snippet:
    """Where a link of a find-result page points: a line of the searched page."""

    url: str
    line_idx: int
    page: Page | None = None


@dataclass
class Page:
    """A page as the model reads it.

    `text` is the whole document; `lines` is that text wrapped at 80 columns,
    which is what the `L{n}:` numbers and citations refer to. `urls` maps a link
    id (as shown in `【id†text】`) to an absolute URL. `snippets` is set only on
    find-result pages. `line_map` maps a line of a find-result page to the line
    of the searched page it shows (None for the block headings).
    """

    url: str
    title: str
    text: str
    urls: dict[str, str] = field(default_factory=dict)
    snippets: dict[str, Snippet] | None = None
    line_map: list[int | None] | None = None
    source_url: str | None = None  # the page a find-result page was made from
    kind: str = "page"  # "page", "search" or "find"

    @cached_property
    def lines(self) -> list[str]:
        return wrap_lines(self.text)

    @property
    def cite_url(self) -> str:
        """The URL a citation of this page should link to."""
        url = self.source_url if self.source_url is not None else self.url
        return url.removeprefix(VIEW_SOURCE)


def wrap_lines(text: str, width: int = WRAP_WIDTH) -> list[str]:
    """Split `text` into lines of at most `width` columns, keeping spaces and empty lines."""
    piece = _piece_pattern(width)
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
        else:
            out.extend(piece.findall(line))
    return out


@functools.cache
def _piece_pattern(width: int) -> re.Pattern[str]:
    # The longest piece that fits: all that is left, else up to a space, else a hard cut.
    return re.compile(rf".{{1,{width}}}\Z|.{{1,{width}}}(?<=\s)|.{{{width}}}", re.DOTALL)


def display_url(url: str) -> str:
    """`url` as the model may read it: anything but printable ASCII percent-encoded.

    A URL comes from the page or its server, so unescaped it could spell link
    or citation markers (`【2†L1-L3】`), Harmony tokens or line breaks.
    """
    return quote(url, safe=_URL_SYNTAX)


def get_domain(url: str) -> str:
    """The host part of `url` ("" when it has none)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""
