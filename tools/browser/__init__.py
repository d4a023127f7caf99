"""The built-in `browser` tool (search, open, find) and helpers for its citations."""

from tools.browser.citations import Citation, find_citations, render_markdown, split_partial
from tools.browser.search import DdgsSearch, SearchBackend, SearchError, SearchHit, SearxngSearch, make_search
from tools.browser.tool import BrowserTool

__all__ = [
    "BrowserTool",
    "Citation",
    "DdgsSearch",
    "SearchBackend",
    "SearchError",
    "SearchHit",
    "SearxngSearch",
    "find_citations",
    "make_search",
    "render_markdown",
    "split_partial",
]
