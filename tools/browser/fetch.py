"""Fetching pages for the model, safely.

Only http(s) URLs whose host resolves to public addresses are fetched; the
check runs on every redirect hop, after DNS resolution, and the request is
then sent to the address that was checked, whatever client or transport is
used (so a second DNS answer cannot point it elsewhere). URLs are parsed once,
by httpx, so the host that is checked is the host that is contacted.
`OSS_AGENT_BROWSER_ALLOW_HOSTS` (comma-separated host names, addresses or
networks) opens chosen intranet hosts. Bodies are read up to a byte cap, only
for an allow-list of text content types, within a deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from tools.browser.addresses import ALLOW_HOSTS_ENV, HostPolicy, is_public
from tools.browser.charset import decode, valid_text
from tools.browser.extract import clean_text
from tools.browser.page import display_url

__all__ = ["ALLOW_HOSTS_ENV", "FetchError", "FetchResult", "Fetcher", "HostPolicy", "decode", "is_public"]

MAX_BYTES = 5_000_000
MAX_REDIRECTS = 5
USER_AGENT = "Mozilla/5.0 (compatible; oss-agent browser)"

HTML_TYPES = frozenset(("text/html", "application/xhtml+xml"))
TEXT_TYPES = frozenset((
    "text/plain", "text/markdown", "text/x-markdown", "text/csv", "text/xml",
    "application/json", "application/xml", "application/rss+xml", "application/atom+xml",
))  # fmt: skip
_REDIRECTS = frozenset((301, 302, 303, 307, 308))

Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchError(Exception):
    """A page could not or may not be fetched; the message is meant for the model.

    The message never spells link or citation markers, whatever URL or server
    error it quotes.
    """

    def __init__(self, message: str) -> None:
        super().__init__(valid_text(clean_text(message)))


@dataclass(frozen=True)
class FetchResult:
    url: str  # after redirects
    content_type: str  # media type without parameters
    text: str
    is_html: bool
    truncated: bool = False


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, via the system resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Fetcher:
    """Fetch one URL at a time with the checks above; raise FetchError on refusal or failure."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        policy: HostPolicy | None = None,
        max_bytes: int = MAX_BYTES,
        max_redirects: int = MAX_REDIRECTS,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        deadline: float = 20.0,
    ) -> None:
        self._client = client
        self._own_client = client is None
        self._transport = transport
        self._resolver = resolver or system_resolver
        self.policy = policy if policy is not None else HostPolicy.from_env()
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.deadline = deadline

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                follow_redirects=False,
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5",
                },
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    async def fetch(self, url: str) -> FetchResult:
        try:
            return await asyncio.wait_for(self._fetch(url), timeout=self.deadline)
        except asyncio.TimeoutError:
            raise FetchError(f"timed out after {self.deadline:g} s") from None
        except httpx.TimeoutException:
            raise FetchError("timed out") from None
        except httpx.InvalidURL as exc:  # also raised for a malformed redirect target
            raise FetchError(f"Invalid URL: {exc}") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from None

    async def check(self, url: str) -> tuple[httpx.URL, str]:
        """Validate `url`; return it parsed and the checked address to connect to."""
        try:
            parsed = httpx.URL(url)
            host = parsed.raw_host.decode("ascii")
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise FetchError(f"Invalid URL `{display_url(url)}`: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise FetchError(f"Only http and https URLs can be opened, not `{display_url(parsed.scheme)}:`.")
        if not host:
            raise FetchError(f"The URL `{display_url(url)}` has no host.")
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await self._resolver(host, port)
            except (OSError, UnicodeError) as exc:
                raise FetchError(f"Cannot resolve host `{host}`: {exc}") from None
        if not addresses:
            raise FetchError(f"Cannot resolve host `{host}`.")
        if not self.policy.host_allowed(host):
            for address in addresses:
                if not self.policy.address_allowed(address):
                    raise FetchError(
                        f"Refused: `{host}` resolves to the non-public address {address}. "
                        "Only public web sites can be opened."
                    )
        return parsed, addresses[0]

    async def _fetch(self, url: str) -> FetchResult:
        client = self._http()
        for _ in range(self.max_redirects + 1):
            parsed, address = await self.check(url)
            response = await client.send(_pinned(client, parsed, address), stream=True, follow_redirects=False)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    url = urljoin(str(parsed), location.strip())
                    continue
                return await self._read(str(parsed), response)
            finally:
                await response.aclose()
        raise FetchError(f"Too many redirects (more than {self.max_redirects}).")

    async def _read(self, url: str, response: httpx.Response) -> FetchResult:
        if response.status_code >= 400:
            raise FetchError(f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
        header = response.headers.get("content-type", "")
        media = header.split(";", 1)[0].strip().lower()
        if media and media not in HTML_TYPES and media not in TEXT_TYPES:
            if media == "application/pdf":
                raise FetchError(
                    "Unsupported content type: application/pdf. PDF documents cannot be "
                    "displayed; look for an HTML version of the document."
                )
            raise FetchError(f"Unsupported content type: {media}. Only web pages and text can be displayed.")
        body, truncated = await self._read_capped(response)
        if not media:
            media = "text/html" if body.lstrip()[:1] == b"<" else "text/plain"
            if b"\x00" in body[:1024]:
                raise FetchError("Unsupported content: the response is binary.")
        is_html = media in HTML_TYPES
        text = decode(body, response.charset_encoding, sniff_meta=is_html)
        return FetchResult(url=url, content_type=media, text=text, is_html=is_html, truncated=truncated)

    async def _read_capped(self, response: httpx.Response) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                return b"".join(chunks)[: self.max_bytes], True
        return b"".join(chunks), False


def _pinned(client: httpx.AsyncClient, url: httpx.URL, address: str) -> httpx.Request:
    """A GET of `url` sent to `address`, with the original Host header and TLS server name."""
    host = url.raw_host.decode("ascii")
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return client.build_request(
        "GET", url.copy_with(host=address), headers={"Host": url.netloc.decode("ascii")}, extensions=extensions
    )
