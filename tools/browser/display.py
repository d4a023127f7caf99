"""The cursor stack and what the model sees of a page.

Every search, open and find (scrolling included) pushes a page on the stack,
so a cursor is an index that only grows. A view shows `[cursor] title (url)`,
the visible line range and the last line index, then numbered lines; the
window holds as many lines as fit in a token budget unless `num_lines` is set.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import quote

from tools.browser.page import Page, Snippet
from tools.errors import ToolRetry

VIEW_TOKENS = 1024
FIND_MAX_RESULTS = 50
FIND_CONTEXT_LINES = 4
MAX_HEADER_URL = 1024

# A link marker, or the part of one cut by line wrapping.
_LINK_RE = re.compile(r"【\d+†([^†】]*)(?:†[^†】]*)?】")
_LINK_HEAD_RE = re.compile(r"【\d+†([^†】]*)(?:†[^†】]*)?$")
_LINK_TAIL_RE = re.compile(r"^[^【】]*】")


def harmony_token_counter() -> Callable[[str], int]:
    """Count tokens with the gpt-oss Harmony encoding (special-token text counts as text)."""
    from tools.text import get_encoding

    enc = get_encoding()

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    return count


class BrowserState:
    """The pages of one conversation: the cursor stack and a bounded cache by URL."""

    def __init__(self, cache_size: int = 50) -> None:
        self.stack: list[Page] = []
        self._cache: OrderedDict[str, Page] = OrderedDict()
        self._cache_size = cache_size

    def clear(self) -> None:
        self.stack.clear()
        self._cache.clear()

    @property
    def last_cursor(self) -> int:
        return len(self.stack) - 1

    def push(self, page: Page) -> int:
        self.stack.append(page)
        if page.kind == "page" and page.url:
            self.remember(page)
        return self.last_cursor

    def pop(self) -> None:
        self.stack.pop()

    def remember(self, page: Page, key: str | None = None) -> None:
        key = key or page.url
        self._cache[key] = page
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def cached(self, key: str) -> Page | None:
        return self._cache.get(key)

    def page_at(self, cursor: int = -1) -> Page:
        """The page under `cursor` (-1: the latest); ToolRetry when there is none."""
        if not self.stack:
            raise ToolRetry("No pages to access! Use `search` or `open` with a URL first.")
        if cursor == -1:
            return self.stack[-1]
        if not 0 <= cursor < len(self.stack):
            raise ToolRetry(f"Cursor `{cursor}` is out of range. Available cursor indices: [0 - {self.last_cursor}].")
        return self.stack[cursor]


def window_end(lines: list[str], loc: int, num_lines: int, count_tokens: Callable[[str], int], view_tokens: int) -> int:
    """One past the last line shown from `loc`: `num_lines` lines, or what fits in `view_tokens`."""
    total = len(lines)
    if num_lines > 0:
        return min(loc + num_lines, total)
    used = 0
    end = loc
    # Count a chunk at a time; a line costs at least one token per 8 characters.
    while end < total:
        chunk_end = end
        budget_chars = (view_tokens - used) * 8
        size = 0
        while chunk_end < total and size < budget_chars:
            size += len(lines[chunk_end]) + 8
            chunk_end += 1
        numbered = [f"L{i}: {lines[i]}\n" for i in range(end, chunk_end)]
        costs = [count_tokens(line) for line in numbered]
        for cost in costs:
            if used + cost > view_tokens and end > loc:
                return end
            used += cost
            end += 1
        if used >= view_tokens:
            break
    return end


def render(
    page: Page,
    cursor: int,
    loc: int = 0,
    num_lines: int = -1,
    *,
    count_tokens: Callable[[str], int],
    view_tokens: int = VIEW_TOKENS,
) -> str:
    """The text the model reads for `page` under `cursor`, from line `loc`."""
    lines = page.lines
    total = len(lines)
    if loc >= total or loc < 0:
        raise ToolRetry(f"Invalid location parameter: `{loc}`. Cannot exceed page maximum of {total - 1}.")
    end = window_end(lines, loc, num_lines, count_tokens, view_tokens)
    header = f"[{cursor}] {page.title}"
    if page.url:
        header += f" ({page.url[:MAX_HEADER_URL]})"
    body = "\n".join(f"L{i}: {lines[i]}" for i in range(loc, end))
    return f"{header}\n**viewing lines [{loc} - {end - 1}] of {total - 1}**\n\n{body}"


def strip_links(line: str) -> str:
    """`line` with link markers reduced to their text (also markers cut by wrapping)."""
    if "【" not in line and "】" not in line:
        return line
    line = _LINK_TAIL_RE.sub("", line)
    line = _LINK_HEAD_RE.sub(lambda m: m.group(1), line)
    return _LINK_RE.sub(lambda m: m.group(1), line)


def find_page(page: Page, pattern: str) -> Page:
    """A find-result page listing the lines of `page` that contain `pattern` (any case)."""
    needle = pattern.lower()
    lines = [strip_links(line) for line in page.lines]
    chunks: list[str] = []
    line_map: list[int | None] = []
    snippets: dict[str, Snippet] = {}
    urls: dict[str, str] = {}
    i = 0
    while i < len(lines) and len(chunks) < FIND_MAX_RESULTS:
        if needle not in lines[i].lower():
            i += 1
            continue
        n = len(chunks)
        shown = lines[i : i + FIND_CONTEXT_LINES]
        if chunks:
            line_map.append(None)  # the blank line between blocks
        line_map.append(None)
        line_map.extend(range(i, i + len(shown)))
        chunks.append("\n".join([f"# 【{n}†match at L{i}】", *shown]))
        snippets[str(n)] = Snippet(url=page.url, line_idx=i, page=page)
        urls[str(n)] = page.url
        i += FIND_CONTEXT_LINES
    if chunks:
        text = "\n\n".join(chunks)
    else:
        text = f"No `find` results for pattern: `{pattern}`"
        line_map = [None]
    return Page(
        url=f"{page.url}/find?pattern={quote(pattern)}",
        title=f"Find results for text: `{pattern}` in `{page.title}`",
        text=text,
        urls=urls,
        snippets=snippets,
        line_map=line_map,
        source_url=page.cite_url,
        kind="find",
    )
