"""A tiny web on 127.0.0.1 for browser tests that run real programs: a SearXNG JSON API and one page."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from fake_ollama import LocalServer

PAGES = Path(__file__).parent / "data" / "pages"


def builtin_call(recipient: str, payload: str, analysis: str = "Use the tool.") -> str:
    """Raw Ollama text of a built-in call (`browser.*`, `python`), as gpt-oss writes it."""
    return (
        f"<|channel|>analysis<|message|>{analysis}<|end|><|start|>assistant"
        f"<|channel|>analysis to={recipient} code<|message|>{payload}"
    )


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if url.path == "/search" and parse_qs(url.query).get("format") == ["json"]:
            hits = [{"title": "Herons of the Tidewater", "url": f"{base}/guide.html", "content": "A field guide."}]
            body, ctype = json.dumps({"results": hits}).encode(), "application/json"
        elif url.path == "/guide.html":
            body, ctype = (PAGES / "guide.html").read_bytes(), "text/html; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class FakeWeb(LocalServer):
    """Serve the site on 127.0.0.1 until `stop()` (or `lifetime` s)."""

    def __init__(self, lifetime: float = 120.0) -> None:
        super().__init__(_Site, lifetime=lifetime)

    def env(self) -> dict[str, str]:
        """Environment that points the browser at this site."""
        return {
            "OSS_AGENT_SEARCH": "searxng",
            "OSS_AGENT_SEARXNG_URL": self.url,
            "OSS_AGENT_BROWSER_ALLOW_HOSTS": "127.0.0.1",
        }


def requested_url(request) -> str:
    """The URL a pinned browser request asked for: it is sent to the checked address, with the Host header."""
    return str(request.url.copy_with(netloc=request.headers["host"].encode("ascii")))


LOOPBACK = ("127.0.0.1", "::1")


def allow_only_loopback(monkeypatch) -> None:
    """Make any name lookup or connection other than to loopback fail the test."""
    import socket

    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            raise AssertionError(f"a browser test tried to resolve {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise AssertionError(f"a browser test tried to connect to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
