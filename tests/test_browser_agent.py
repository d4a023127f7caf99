"""End to end: a scripted gpt-oss searches, opens a result, finds a phrase and cites it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fake_web import requested_url

from agent import Agent
from agent.backends import ScriptedBackend, call, final
from tools.browser import BrowserTool, SearchHit

PAGES = Path(__file__).parent / "data" / "pages"
GUIDE_URL = "https://tidewater.example.com/guides/herons.html"


pytestmark = pytest.mark.usefixtures("no_network")


class FakeSearch:
    source = "web"

    async def search(self, query, topn):
        return [
            SearchHit("Herons of the Tidewater", GUIDE_URL, "A field guide to herons."),
            SearchHit("Green heron", "https://birds.example.org/green-heron", "A small heron."),
        ][:topn]

    async def aclose(self):
        pass


def make_browser() -> BrowserTool:
    def site(request: httpx.Request) -> httpx.Response:
        if requested_url(request) == GUIDE_URL:
            return httpx.Response(
                200, headers={"content-type": "text/html"}, content=(PAGES / "guide.html").read_bytes()
            )
        return httpx.Response(404)

    async def resolver(host, port):
        return ["93.184.216.34"]

    return BrowserTool(search=FakeSearch(), transport=httpx.MockTransport(site), resolver=resolver, allow_hosts=[])


def test_search_open_find_and_cite():
    browser = make_browser()
    backend = ScriptedBackend(
        [
            call("browser.search", {"query": "heron eats fish whole", "topn": 2}, reasoning="Search the web."),
            call("browser.open", {"id": 0}, reasoning="The field guide looks right."),
            call("browser.find", {"pattern": "swallows fish"}, reasoning="Look for the fact."),
            final(
                "The great blue heron swallows its fish whole【2†L1-L2】.",
                reasoning="Found it at the find result.",
            ),
        ]
    )
    with Agent(backend=backend, tools=[browser]) as agent:
        result = agent.run("Does the great blue heron chew its fish?")
    backend.assert_complete()

    outputs = [record.output for record in result.tool_calls]
    assert [record.call.recipient for record in result.tool_calls] == [
        "browser.search",
        "browser.open",
        "browser.find",
    ]
    assert all(record.error is None for record in result.tool_calls)
    assert outputs[0].startswith("[0] heron eats fish whole") and "【0†Herons of the Tidewater" in outputs[0]
    assert outputs[1].startswith(f"[1] Tidewater Field Guide: Herons ({GUIDE_URL})")
    assert outputs[2].startswith("[2] Find results for text: `swallows fish`")

    guide = browser.pages[1]
    line = next(i for i, text in enumerate(guide.lines) if "swallows fish whole" in text)
    (citation,) = browser.citations(result.output)
    assert citation.url == GUIDE_URL and citation.valid
    assert (citation.line_start, citation.line_end) == (line, line + 1)
    assert "swallows fish whole" in " ".join(citation.lines)
    link = f"[tidewater.example.com L{line}-L{line + 1}]({GUIDE_URL})"
    assert browser.render_citations(result.output) == f"The great blue heron swallows its fish whole ({link})."


def test_browser_is_a_builtin_by_name():
    with Agent(backend=ScriptedBackend([]), tools=["browser"]) as agent:
        (config,) = agent.settings.builtins
        assert config.name == "browser"
