"""Search backends: ddgs (faked below its HTTP layer), SearXNG (respx), selection, rate limit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
import respx

from agent.errors import ConfigurationError
from tools.browser.search import (
    DdgsSearch,
    RateLimiter,
    SearchError,
    SearchHit,
    SearxngSearch,
    make_search,
)


pytestmark = pytest.mark.usefixtures("no_network")


def run(coro):
    return asyncio.run(coro)


def free_limiter() -> RateLimiter:
    return RateLimiter(1.0, clock=lambda: 0.0, sleep=lambda s: None)


class FakeDDGS:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def __call__(self):
        return self

    def text(self, query, **kwargs):
        self.calls.append((query, kwargs))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_ddgs_hits_are_mapped_and_trimmed():
    rows = [
        {"title": "Heron", "href": "https://en.wikipedia.org/wiki/Heron", "body": "w " * 2000},
        {"title": "No link", "href": "", "body": "x"},
        {"title": "Birds", "href": "https://birds.example.org/", "body": "All about birds."},
    ]
    fake = FakeDDGS([rows])
    backend = DdgsSearch(ddgs_factory=fake, limiter=free_limiter(), backend="duckduckgo,brave")
    hits = run(backend.search("herons", 5))
    assert [h.url for h in hits] == ["https://en.wikipedia.org/wiki/Heron", "https://birds.example.org/"]
    assert len(hits[0].snippet) <= 300 and hits[1] == SearchHit(
        "Birds", "https://birds.example.org/", "All about birds."
    )
    assert fake.calls[0][1]["max_results"] == 5 and fake.calls[0][1]["backend"] == "duckduckgo,brave"


def test_ddgs_failure_is_retried_once_then_reported():
    from ddgs.exceptions import DDGSException

    fake = FakeDDGS([DDGSException("DNSError: boom"), [{"title": "t", "href": "https://e.example.com/", "body": ""}]])
    assert len(run(DdgsSearch(ddgs_factory=fake, limiter=free_limiter()).search("q", 3))) == 1
    fake = FakeDDGS([DDGSException("DNSError: boom"), DDGSException("DNSError: again")])
    with pytest.raises(SearchError, match="again"):
        run(DdgsSearch(ddgs_factory=fake, limiter=free_limiter()).search("q", 3))
    assert len(fake.calls) == 2


def test_ddgs_no_results_is_an_empty_list():
    from ddgs.exceptions import DDGSException

    fake = FakeDDGS([DDGSException("No results found.")])
    assert run(DdgsSearch(ddgs_factory=fake, limiter=free_limiter()).search("zzzz", 3)) == []
    assert len(fake.calls) == 1


DDG_HTML = """<html><body>
<div class="result results_links"><div class="links_main result__body">
  <h2 class="result__title"><a class="result__a" href="https://example.com/a">Example A</a></h2>
  <a class="result__snippet" href="https://example.com/a">Snippet A text</a>
</div></div>
<div class="result results_links"><div class="links_main result__body">
  <h2 class="result__title"><a class="result__a" href="https://example.org/b">Example B</a></h2>
  <a class="result__snippet" href="https://example.org/b">Snippet B text</a>
</div></div>
</body></html>"""


def test_ddgs_adapter_end_to_end_below_its_http_client(monkeypatch):
    import ddgs.http_client as hc

    requests = []

    def fake_request(self, method, url, *args, **kwargs):
        requests.append((method, url))
        return hc.Response(SimpleNamespace(status_code=200, content=DDG_HTML.encode(), text=DDG_HTML))

    monkeypatch.setattr(hc.HttpClient, "request", fake_request)
    backend = DdgsSearch(backend="duckduckgo", limiter=free_limiter())
    hits = run(backend.search("example", 10))
    assert hits[:2] == [
        SearchHit("Example A", "https://example.com/a", "Snippet A text"),
        SearchHit("Example B", "https://example.org/b", "Snippet B text"),
    ]
    assert all("duckduckgo.com" in url for _, url in requests)


def test_rate_limiter_spaces_calls():
    now = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds

    limiter = RateLimiter(1.0, clock=lambda: now[0], sleep=sleep)
    limiter.wait()
    limiter.wait()
    now[0] += 0.25
    limiter.wait()
    now[0] += 5
    limiter.wait()
    assert slept == [1.0, 0.75]


def test_ddgs_calls_go_through_the_limiter():
    waits = []
    limiter = RateLimiter(1.0, clock=lambda: 0.0, sleep=waits.append)
    fake = FakeDDGS([[], []])
    backend = DdgsSearch(ddgs_factory=fake, limiter=limiter)
    run(backend.search("a", 1))
    run(backend.search("b", 1))
    assert waits == [1.0]


SEARX = "http://127.0.0.1:8888"


@respx.mock
def test_searxng_json_api():
    route = respx.get(f"{SEARX}/search").mock(
        return_value=httpx.Response(
            200,
            json={
                "results": [
                    {"url": "https://a.example.com/", "title": "A", "content": "about a"},
                    {"url": "https://b.example.com/", "title": "B", "content": "about b"},
                    {"title": "no url"},
                ]
            },
        )
    )
    hits = run(SearxngSearch(SEARX + "/").search("tides", 1))
    assert hits == [SearchHit("A", "https://a.example.com/", "about a")]
    params = route.calls.last.request.url.params
    assert params["q"] == "tides" and params["format"] == "json"


@respx.mock
def test_searxng_errors_are_explained():
    respx.get(f"{SEARX}/search").mock(return_value=httpx.Response(403))
    with pytest.raises(SearchError, match="enable `json`"):
        run(SearxngSearch(SEARX).search("q", 3))
    respx.get(f"{SEARX}/search").mock(return_value=httpx.Response(200, text="<html>not json</html>"))
    with pytest.raises(SearchError, match="did not answer JSON"):
        run(SearxngSearch(SEARX).search("q", 3))
    respx.get(f"{SEARX}/search").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(SearchError, match="unreachable"):
        run(SearxngSearch(SEARX).search("q", 3))


def test_backend_is_chosen_by_argument_or_environment(monkeypatch):
    monkeypatch.delenv("OSS_AGENT_SEARCH", raising=False)
    monkeypatch.delenv("OSS_AGENT_SEARXNG_URL", raising=False)
    assert isinstance(make_search(), DdgsSearch)
    with pytest.raises(ConfigurationError, match="OSS_AGENT_SEARXNG_URL"):
        make_search("searxng")
    monkeypatch.setenv("OSS_AGENT_SEARCH", "searxng")
    monkeypatch.setenv("OSS_AGENT_SEARXNG_URL", SEARX)
    backend = make_search()
    assert isinstance(backend, SearxngSearch) and backend.base_url == SEARX
    assert isinstance(make_search("ddgs"), DdgsSearch)
    with pytest.raises(ConfigurationError, match="unknown search backend"):
        make_search("bing")
