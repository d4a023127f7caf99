"""The built-in `browser` tool: search, open and find, as gpt-oss was trained to use them."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from openai_harmony import ToolNamespaceConfig

from tools.base import BuiltinTool, ToolCall
from tools.browser.citations import Citation, find_citations, render_markdown
from tools.browser.display import (
    VIEW_TOKENS,
    BrowserState,
    find_page,
    harmony_token_counter,
    render,
)
from tools.browser.extract import html_to_page, text_to_page
from tools.browser.fetch import Fetcher, FetchError, FetchResult, HostPolicy, Resolver
from tools.browser.page import VIEW_SOURCE, Page, display_url
from tools.browser.search import SearchBackend, SearchError, make_search
from tools.errors import ToolRetry
from tools.text import neutralize

INVALID_ARGUMENTS = '{"error": "Invalid function arguments"}'
MAX_SEARCH_RESULTS = 20


class BrowserTool(BuiltinTool):
    """Web browsing for gpt-oss with a keyless search backend and guarded fetching.

    One instance is one conversation: it owns the cursor stack. Problems the
    model can fix (bad arguments, unknown cursor or link id, nothing found, a
    page that cannot be fetched) raise `ToolRetry` with the message the model
    reads, in the wording of the reference tool.
    """

    name = "browser"
    requires_approval = False
    timeout = 60.0

    def __init__(
        self,
        *,
        search: SearchBackend | str | None = None,
        fetcher: Fetcher | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        allow_hosts: Iterable[str] | None = None,
        count_tokens: Callable[[str], int] | None = None,
        view_tokens: int = VIEW_TOKENS,
        max_search_results: int = MAX_SEARCH_RESULTS,
    ) -> None:
        self._search: SearchBackend = (
            search if search is not None and not isinstance(search, str) else make_search(search)
        )
        self.fetcher = fetcher or Fetcher(
            client=http_client,
            transport=transport,
            resolver=resolver,
            policy=HostPolicy(allow_hosts) if allow_hosts is not None else None,
        )
        self._count_tokens = count_tokens
        self.view_tokens = view_tokens
        self.max_search_results = max_search_results
        self.state = BrowserState()

    # -- the agent's side -------------------------------------------------

    @property
    def search_backend(self) -> SearchBackend:
        return self._search

    @property
    def pages(self) -> tuple[Page, ...]:
        """The cursor stack: `pages[cursor]` is the page shown under `[cursor]`."""
        return tuple(self.state.stack)

    def namespace_config(self) -> ToolNamespaceConfig:
        config = ToolNamespaceConfig.browser()
        source = getattr(self._search, "source", "web")
        if source != "web":
            lines = config.description.split("\n")
            lines[-1] = f"sources={source}"
            config.description = "\n".join(lines)
        return config

    def reset(self) -> None:
        self.state.clear()

    async def aclose(self) -> None:
        await self.fetcher.aclose()
        await self._search.aclose()

    def citations(self, text: str) -> list[Citation]:
        """The citations in `text`, resolved against this conversation's pages."""
        return find_citations(text, self.state.stack)

    def render_citations(self, text: str) -> str:
        """`text` with its citations turned into Markdown links."""
        return render_markdown(text, self.state.stack)

    async def invoke(self, call: ToolCall) -> str:
        method = call.method or call.recipient.rsplit(".", 1)[-1]
        args = _parse_arguments(call.arguments)
        if method == "search":
            text = await self.search(**_pick(args, "query", "topn", "source"))
        elif method == "open":
            text = await self.open(**_pick(args, "id", "cursor", "loc", "num_lines", "view_source", "source"))
        elif method == "find":
            text = await self.find(**_pick(args, "pattern", "cursor"))
        else:
            raise ToolRetry(json.dumps({"error": f"Unknown function: {method}"}))
        return neutralize(text)

    # -- the model's functions ---------------------------------------------

    async def search(self, query: Any = None, topn: Any = 10, source: Any = None) -> str:
        if not isinstance(query, str) or not query.strip():
            raise ToolRetry("`query` is required: a non-empty string.")
        topn = min(max(_as_int(topn, "topn", 10), 1), self.max_search_results)
        try:
            hits = await self.search_backend.search(query.strip(), topn)
        except SearchError as exc:
            raise ToolRetry(f"Search failed: {exc}. {exc.advice}") from None
        if not hits:
            raise ToolRetry(f"No results found for `{query}`. Try a different query.")
        items = "".join(
            f'<li><a href="{html.escape(h.url, quote=True)}">{html.escape(h.title)}</a> {html.escape(h.snippet)}</li>'
            for h in hits
        )
        page = html_to_page(f"<html><body><ul>{items}</ul></body></html>", url="", title=query.strip())
        page.kind = "search"
        return self._show(page, 0, -1)

    async def open(
        self,
        id: Any = -1,
        cursor: Any = -1,
        loc: Any = -1,
        num_lines: Any = -1,
        view_source: Any = False,
        source: Any = None,
    ) -> str:
        cursor = _as_int(cursor, "cursor", -1)
        loc = _as_int(loc, "loc", -1)
        num_lines = _as_int(num_lines, "num_lines", -1)
        view_source = view_source is True or str(view_source).lower() == "true"
        if isinstance(id, str) and id.strip().lstrip("-").isdigit():
            id = int(id)
        if id is None:
            id = -1

        if isinstance(id, str):
            url = id.strip()
            if "://" not in url:
                url = "https://" + url
            page = await self._load(url, view_source, refresh=True)
        elif isinstance(id, int) and not isinstance(id, bool):
            current = self.state.page_at(cursor)
            if id < 0:
                page = await self._load(current.cite_url, True) if view_source else current
            else:
                target = current.urls.get(str(id))
                if target is None:
                    raise ToolRetry(f"Invalid link id `{id}`.")
                snippet = (current.snippets or {}).get(str(id))
                if snippet is not None and snippet.page is not None and not view_source:
                    page = snippet.page
                    if loc < 0:
                        loc = snippet.line_idx - 4 if snippet.line_idx > 4 else snippet.line_idx
                else:
                    page = await self._load(target, view_source)
        else:
            raise ToolRetry("`id` must be a link id (number) or a URL (string).")
        return self._show(page, max(loc, 0), num_lines)

    async def find(self, pattern: Any = None, cursor: Any = -1) -> str:
        if not isinstance(pattern, str) or not pattern:
            raise ToolRetry("`pattern` is required: a non-empty string.")
        page = self.state.page_at(_as_int(cursor, "cursor", -1))
        if page.kind == "find":
            raise ToolRetry("Cannot run `find` on a find results page. Pass the `cursor` of the page to search.")
        return self._show(find_page(page, pattern), 0, -1)

    # -- helpers -------------------------------------------------------------

    def _show(self, page: Page, loc: int, num_lines: int) -> str:
        cursor = self.state.push(page)
        try:
            return render(page, cursor, loc, num_lines, count_tokens=self._counter(), view_tokens=self.view_tokens)
        except BaseException:
            self.state.pop()
            raise

    def _counter(self) -> Callable[[str], int]:
        if self._count_tokens is None:
            try:
                self._count_tokens = harmony_token_counter()
            except Exception:
                self._count_tokens = lambda text: len(text) // 4 + 1
        return self._count_tokens

    async def _load(self, url: str, view_source: bool, refresh: bool = False) -> Page:
        if url.startswith(VIEW_SOURCE):
            url, view_source = url[len(VIEW_SOURCE) :], True
        key = VIEW_SOURCE + url if view_source else url
        if not refresh and (page := self.state.cached(key)) is not None:
            return page
        try:
            result = await self.fetcher.fetch(url)
        except FetchError as exc:
            raise ToolRetry(f"Error fetching URL `{display_url(url)[:1024]}`: {exc}") from None
        try:
            page = _to_page(result, view_source)
        except ValueError as exc:  # a converter refused the text: the page is unreadable, not the tool broken
            shown = display_url(url)[:1024]
            raise ToolRetry(f"Error reading URL `{shown}`: the page cannot be displayed ({exc}).") from None
        if result.truncated:
            mb = self.fetcher.max_bytes / 1_000_000
            page.text += f"\n\n[Page truncated: only the first {mb:g} MB were read.]"
        self.state.remember(page, key)
        if result.url != url:
            self.state.remember(page, VIEW_SOURCE + result.url if view_source else result.url)
        return page


def _to_page(result: FetchResult, view_source: bool) -> Page:
    if view_source:
        return text_to_page(result.text, VIEW_SOURCE + result.url, f"Source of {display_url(result.url)}")
    if result.is_html:
        return html_to_page(result.text, result.url)
    return text_to_page(result.text, result.url)


def _parse_arguments(raw: str) -> dict[str, Any]:
    if not raw or not raw.strip():
        return {}
    try:
        args = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        raise ToolRetry(INVALID_ARGUMENTS) from None
    if not isinstance(args, dict):
        raise ToolRetry(INVALID_ARGUMENTS)
    return args


def _pick(args: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: args[k] for k in names if k in args}


def _as_int(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise ToolRetry(f"`{name}` must be a number.")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ToolRetry(f"`{name}` must be a number, not `{value}`.") from None
