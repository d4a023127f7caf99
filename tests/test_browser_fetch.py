"""The page fetcher: address checks on every hop, limits, content types, decoding."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fake_web import allow_only_loopback, requested_url

from tools.browser.fetch import ALLOW_HOSTS_ENV, Fetcher, FetchError, HostPolicy

PUBLIC = "93.184.216.34"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Only loopback connections are possible in these tests."""
    allow_only_loopback(monkeypatch)


def fake_resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    resolve.calls = calls
    return resolve


def make_fetcher(handler, table=None, **kwargs) -> Fetcher:
    table = {"site.example.com": [PUBLIC], **(table or {})}
    kwargs.setdefault("policy", HostPolicy())
    return Fetcher(transport=httpx.MockTransport(handler), resolver=fake_resolver(table), **kwargs)


def html(body: str, status: int = 200, **headers) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "text/html; charset=utf-8", **headers}, text=body)


def run(coro):
    return asyncio.run(coro)


def test_fetches_a_public_page():
    fetcher = make_fetcher(lambda request: html("<p>hello</p>"))
    result = run(fetcher.fetch("https://site.example.com/a"))
    assert result.is_html and result.text == "<p>hello</p>" and result.url == "https://site.example.com/a"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:11434/api/tags",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.8/",
        "http://192.168.1.1/admin",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ],
)
@pytest.mark.security
def test_non_public_addresses_are_refused(url):
    fetcher = make_fetcher(lambda request: pytest.fail("request sent"))
    with pytest.raises(FetchError, match="non-public address"):
        run(fetcher.fetch(url))


@pytest.mark.security
def test_host_names_are_checked_after_resolution():
    fetcher = make_fetcher(lambda request: pytest.fail("request sent"), {"intranet.example.com": [PUBLIC, "10.1.2.3"]})
    with pytest.raises(FetchError, match="`intranet.example.com` resolves to the non-public address 10.1.2.3"):
        run(fetcher.fetch("https://intranet.example.com/"))


@pytest.mark.security
def test_redirect_to_a_private_address_is_refused_on_that_hop():
    seen = []

    def handler(request):
        seen.append(requested_url(request))
        return httpx.Response(302, headers={"location": "http://metadata.example.com/latest/"})

    fetcher = make_fetcher(handler, {"metadata.example.com": ["169.254.169.254"]})
    with pytest.raises(FetchError, match="169.254.169.254"):
        run(fetcher.fetch("https://site.example.com/go"))
    assert seen == ["https://site.example.com/go"]
    assert fetcher._resolver.calls == ["site.example.com", "metadata.example.com"]


def test_redirects_are_followed_one_hop_at_a_time_with_a_limit():
    def handler(request):
        n = int(request.url.path.strip("/") or 0)
        if n < 3:
            return httpx.Response(301, headers={"location": f"/{n + 1}"})
        return html(f"<p>arrived at {n}</p>")

    result = run(make_fetcher(handler).fetch("https://site.example.com/0"))
    assert result.url == "https://site.example.com/3" and "arrived at 3" in result.text
    with pytest.raises(FetchError, match="Too many redirects"):
        run(make_fetcher(handler, max_redirects=2).fetch("https://site.example.com/0"))


def test_allow_hosts_opens_chosen_intranet_hosts(monkeypatch):
    monkeypatch.setenv(ALLOW_HOSTS_ENV, "wiki.corp, 10.9.0.0/16")
    table = {"wiki.corp": ["10.0.0.5"], "build.corp": ["10.9.1.1"], "other.corp": ["10.7.0.1"]}
    fetcher = Fetcher(transport=httpx.MockTransport(lambda r: html("<p>ok</p>")), resolver=fake_resolver(table))
    assert run(fetcher.fetch("http://wiki.corp/page")).text == "<p>ok</p>"
    assert run(fetcher.fetch("http://build.corp/")).text == "<p>ok</p>"
    with pytest.raises(FetchError, match="non-public"):
        run(fetcher.fetch("http://other.corp/"))


@pytest.mark.security
def test_only_http_and_https():
    fetcher = make_fetcher(lambda request: pytest.fail("request sent"))
    for url in ("file:///etc/passwd", "ftp://site.example.com/x", "gopher://site.example.com/"):
        with pytest.raises(FetchError, match="Only http and https"):
            run(fetcher.fetch(url))


def test_requests_go_to_the_checked_address_when_pinned():
    seen = []

    def handler(request):
        seen.append(request)
        return html("<p>pinned</p>")

    fetcher = make_fetcher(handler)
    result = run(fetcher.fetch("https://site.example.com:8443/a?b=1"))
    assert result.url == "https://site.example.com:8443/a?b=1"
    (request,) = seen
    assert request.url.host == PUBLIC and request.url.port == 8443 and request.url.query == b"b=1"
    assert request.headers["host"] == "site.example.com:8443"
    assert request.extensions["sni_hostname"] == "site.example.com"


def test_oversized_body_is_capped():
    fetcher = make_fetcher(lambda request: html("<p>" + "x" * 50_000 + "</p>"), max_bytes=10_000)
    result = run(fetcher.fetch("https://site.example.com/big"))
    assert len(result.text) == 10_000 and result.truncated


@pytest.mark.security
def test_streamed_body_stops_reading_at_the_cap():
    produced = []

    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self):
            for i in range(1000):
                produced.append(i)
                yield b"y" * 1000

    fetcher = make_fetcher(
        lambda r: httpx.Response(200, headers={"content-type": "text/plain"}, stream=Endless()),
        max_bytes=5000,
    )
    result = run(fetcher.fetch("https://site.example.com/stream"))
    assert len(result.text) == 5000 and result.truncated and len(produced) <= 6


@pytest.mark.parametrize("content_type", ["application/pdf", "image/png", "application/octet-stream"])
@pytest.mark.security
def test_binary_content_types_are_refused(content_type):
    fetcher = make_fetcher(
        lambda request: httpx.Response(200, headers={"content-type": content_type}, content=b"%PDF-1.7")
    )
    with pytest.raises(FetchError, match=f"Unsupported content type: {content_type}"):
        run(fetcher.fetch("https://site.example.com/file"))


def test_text_and_json_are_shown_raw_and_charset_comes_from_meta():
    fetcher = make_fetcher(
        lambda r: httpx.Response(200, headers={"content-type": "application/json"}, content=b'{"a": 1}')
    )
    result = run(fetcher.fetch("https://site.example.com/data.json"))
    assert not result.is_html and result.text == '{"a": 1}'
    body = '<html><head><meta charset="iso-8859-1"></head><body>Café</body></html>'.encode("latin-1")
    fetcher = make_fetcher(lambda r: httpx.Response(200, headers={"content-type": "text/html"}, content=body))
    assert "Café" in run(fetcher.fetch("https://site.example.com/")).text


def test_http_errors_and_timeouts_are_reported():
    fetcher = make_fetcher(lambda request: html("gone", status=404))
    with pytest.raises(FetchError, match="HTTP 404"):
        run(fetcher.fetch("https://site.example.com/missing"))

    def slow(request):
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(FetchError, match="timed out"):
        run(make_fetcher(slow).fetch("https://site.example.com/slow"))


def test_total_deadline():
    async def main():
        never = asyncio.Event()

        async def handler(request):
            await never.wait()

        fetcher = make_fetcher(handler, deadline=0.05)
        with pytest.raises(FetchError, match="timed out after 0.05 s"):
            await fetcher.fetch("https://site.example.com/hang")

    run(main())


def test_unresolvable_host():
    with pytest.raises(FetchError, match="Cannot resolve host `nowhere.example.com`"):
        run(make_fetcher(lambda r: html("")).fetch("https://nowhere.example.com/"))


def test_pinned_request_over_a_real_connection():
    """The default transport connects to the checked address and sends the original Host."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hosts = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hosts.append(self.headers["Host"])
            body = b"<p>served locally</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]

        async def main():
            fetcher = Fetcher(
                resolver=fake_resolver({"docs.intranet.test": ["127.0.0.1"]}),
                policy=HostPolicy(["127.0.0.1"]),
            )
            try:
                return await fetcher.fetch(f"http://docs.intranet.test:{port}/page")
            finally:
                await fetcher.aclose()

        result = run(main())
        assert result.text == "<p>served locally</p>"
        assert hosts == [f"docs.intranet.test:{port}"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.security
def test_loopback_stays_refused_without_the_allow_list():
    async def main():
        fetcher = Fetcher(resolver=fake_resolver({"docs.intranet.test": ["127.0.0.1"]}), policy=HostPolicy())
        try:
            await fetcher.fetch("http://docs.intranet.test:9/page")
        finally:
            await fetcher.aclose()

    with pytest.raises(FetchError, match="non-public address 127.0.0.1"):
        run(main())
