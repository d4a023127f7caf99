"""Web search backends behind one small interface.

`DdgsSearch` (the default) needs no API key: it runs the synchronous `ddgs`
metasearch off the event loop, at most one query per `min_interval` seconds
in the whole process, and retries once. `SearxngSearch` queries a SearXNG
instance's JSON API. `make_search` picks one from an argument or from
`OSS_AGENT_SEARCH` (`ddgs` or `searxng`) and `OSS_AGENT_SEARXNG_URL`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from tools.errors import ConfigurationError

SEARCH_ENV = "OSS_AGENT_SEARCH"
SEARXNG_URL_ENV = "OSS_AGENT_SEARXNG_URL"
DDGS_BACKEND_ENV = "OSS_AGENT_DDGS_BACKEND"
SNIPPET_CHARS = 300


UNREACHABLE_MARKERS = (
    "dnserror",
    "connecterror",
    "connect error",
    "connection refused",
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "failed to lookup address",
    "network is unreachable",
    "getaddrinfo",
    "timed out",
    "timeout",
)


class SearchError(Exception):
    """The search backend failed; the message is meant for the model.

    `unreachable` says the service could not be reached at all (offline, DNS, timeouts),
    which another query cannot fix; `advice` says what the model should do instead.
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable

    @property
    def advice(self) -> str:
        if self.unreachable:
            return (
                "The search service cannot be reached from this machine (no network?), so another query "
                "will not help: answer without searching, and say that you could not search."
            )
        return "Try a different query."


def looks_unreachable(text: str) -> bool:
    """Whether an error text is a network failure (DNS, refused connection, timeout)."""
    lowered = text.lower()
    return any(marker in lowered for marker in UNREACHABLE_MARKERS)


@dataclass(frozen=True)
class SearchHit:
    title: str
    url: str
    snippet: str = ""


@runtime_checkable
class SearchBackend(Protocol):
    """Anything that can answer a web query with up to `topn` hits."""

    source: str  # shown as `sources=` in the tool description

    async def search(self, query: str, topn: int) -> list[SearchHit]:
        """Hits for `query` ([] when nothing matched); SearchError when the search failed."""
        ...

    async def aclose(self) -> None: ...


def _shorten(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class RateLimiter:
    """Space calls at least `min_interval` seconds apart, across threads."""

    def __init__(
        self,
        min_interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.min_interval = min_interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last: float | None = None

    def wait(self) -> None:
        """Block until the next call may start, and book it."""
        with self._lock:
            now = self._clock()
            if self._last is not None:
                delay = self._last + self.min_interval - now
                if delay > 0:
                    self._sleep(delay)
                    now = self._clock()
            self._last = now


@functools.cache
def _shared_ddgs_limiter() -> RateLimiter:
    return RateLimiter(1.0)


class DdgsSearch:
    """Keyless metasearch through `ddgs` (DuckDuckGo, Brave, Mojeek, Wikipedia, ...)."""

    source = "web"

    def __init__(
        self,
        *,
        backend: str | None = None,
        region: str = "us-en",
        safesearch: str = "moderate",
        timeout: float = 10.0,
        retries: int = 1,
        limiter: RateLimiter | None = None,
        ddgs_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.backend = backend or os.environ.get(DDGS_BACKEND_ENV) or "auto"
        self.region = region
        self.safesearch = safesearch
        self.timeout = timeout
        self.retries = retries
        self._limiter = limiter
        self._factory = ddgs_factory

    def _run(self, query: str, topn: int) -> list[dict[str, Any]]:
        from ddgs.exceptions import DDGSException, TimeoutException

        if self._factory is None:
            from ddgs import DDGS

            self._factory = lambda: DDGS(timeout=int(self.timeout))
        limiter = self._limiter or _shared_ddgs_limiter()
        last: Exception | None = None
        for _ in range(self.retries + 1):
            limiter.wait()
            try:
                return self._factory().text(
                    query,
                    region=self.region,
                    safesearch=self.safesearch,
                    max_results=topn,
                    backend=self.backend,
                )
            except DDGSException as exc:
                if "no results" in str(exc).lower():
                    return []
                last = exc
        message = str(last) or type(last).__name__
        raise SearchError(message, unreachable=isinstance(last, TimeoutException) or looks_unreachable(message))

    async def search(self, query: str, topn: int) -> list[SearchHit]:
        rows = await asyncio.to_thread(self._run, query, topn)
        hits = [
            SearchHit(
                title=_shorten(r.get("title") or r.get("href", ""), 200),
                url=r.get("href", ""),
                snippet=_shorten(r.get("body", "")),
            )
            for r in rows
            if r.get("href")
        ]
        return hits[:topn]

    async def aclose(self) -> None:
        return None


class SearxngSearch:
    """A SearXNG instance's JSON API (`search.formats` must include `json`)."""

    source = "web"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        categories: str = "general",
        language: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        base_url = base_url or os.environ.get(SEARXNG_URL_ENV)
        if not base_url:
            raise ConfigurationError(f"the SearXNG search backend needs a URL: pass base_url or set {SEARXNG_URL_ENV}")
        self.base_url = base_url.rstrip("/")
        self.categories = categories
        self.language = language
        self._client = client
        self._own_client = client is None
        self._transport = transport
        self.timeout = timeout

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport, timeout=self.timeout)
        return self._client

    async def search(self, query: str, topn: int) -> list[SearchHit]:
        params: dict[str, str | int] = {"q": query, "format": "json", "categories": self.categories, "pageno": 1}
        if self.language:
            params["language"] = self.language
        try:
            response = await self._http().get(f"{self.base_url}/search", params=params)
        except httpx.HTTPError as exc:
            message = f"SearXNG is unreachable ({type(exc).__name__}: {exc})"
            raise SearchError(message, unreachable=isinstance(exc, httpx.TransportError)) from None
        if response.status_code == 403:
            raise SearchError("SearXNG refused JSON output; enable `json` in `search.formats` of its settings")
        if response.status_code != 200:
            raise SearchError(f"SearXNG answered HTTP {response.status_code}")
        try:
            results = response.json().get("results", [])
        except (ValueError, AttributeError):
            raise SearchError("SearXNG did not answer JSON") from None
        hits: list[SearchHit] = []
        for r in results:
            if not isinstance(r, dict) or not r.get("url"):
                continue
            hits.append(
                SearchHit(
                    title=_shorten(r.get("title") or r["url"], 200),
                    url=r["url"],
                    snippet=_shorten(r.get("content", "")),
                )
            )
        return hits[:topn]

    async def aclose(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None


def make_search(name: str | None = None, **kwargs: Any) -> SearchBackend:
    """The backend called `name` (default: `OSS_AGENT_SEARCH`, else `ddgs`)."""
    name = (name or os.environ.get(SEARCH_ENV) or "ddgs").strip().lower()
    if name in ("ddgs", "duckduckgo"):
        return DdgsSearch(**kwargs)
    if name == "searxng":
        return SearxngSearch(**kwargs)
    raise ConfigurationError(f"unknown search backend {name!r}; use 'ddgs' or 'searxng'")
