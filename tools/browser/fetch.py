"""Fetching pages for the model, safely.

Only http(s) URLs whose host resolves to public addresses are fetched; the
check runs on every redirect hop, after DNS resolution, and the request is
then sent to the address that was checked (so a second DNS answer cannot
point it elsewhere). `OSS_AGENT_BROWSER_ALLOW_HOSTS` (comma-separated host
names, addresses or networks) opens chosen intranet hosts. Bodies are read up
to a byte cap, only for an allow-list of text content types, within a deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

ALLOW_HOSTS_ENV = "OSS_AGENT_BROWSER_ALLOW_HOSTS"
MAX_BYTES = 5_000_000
MAX_REDIRECTS = 5
USER_AGENT = "Mozilla/5.0 (compatible; oss-agent browser)"

HTML_TYPES = frozenset(("text/html", "application/xhtml+xml"))
TEXT_TYPES = frozenset((
    "text/plain", "text/markdown", "text/x-markdown", "text/csv", "text/xml",
    "application/json", "application/xml", "application/rss+xml", "application/atom+xml",
))  # fmt: skip
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)

Resolver = Callable[[str, int], Awaitable[list[str]]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(Exception):
    """A page could not or may not be fetched; the message is meant for the model."""


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
    return list(dict.fromkeys(info[4][0] for info in infos))


class HostPolicy:
    """Which hosts may be fetched: public addresses, plus an explicit allow-list."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.names: set[str] = set()
        self.networks: list[Network] = []
        for entry in allow:
            entry = entry.strip().lower().strip("[]")
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.rstrip("."))

    @classmethod
    def from_env(cls) -> HostPolicy:
        return cls(os.environ.get(ALLOW_HOSTS_ENV, "").split(","))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net for net in self.networks):
            return True
        return is_public(ip)


def is_public(ip: Address) -> bool:
    """True for globally routable unicast addresses (IPv4-mapped forms judged as IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return is_public(embedded)
        if ip.teredo is not None:
            return False
    return ip.is_global and not ip.is_multicast


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
        pin_addresses: bool | None = None,
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
        # Pinning rewrites the request to the checked address; injected clients
        # and transports (tests, proxies) see the host name unless asked.
        self.pin_addresses = (
            (client is None and transport is None) if pin_addresses is None else pin_addresses
        )

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
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from None

    async def check(self, url: str) -> tuple[str, str | None]:
        """Validate `url`; return its host and the address to connect to (None: unpinned)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise FetchError(f"Invalid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"Only http and https URLs can be opened, not `{parts.scheme}:`.")
        if not host:
            raise FetchError("The URL has no host.")
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
        return host, addresses[0]

    async def _fetch(self, url: str) -> FetchResult:
        client = self._http()
        for _ in range(self.max_redirects + 1):
            host, address = await self.check(url)
            request = self._build(client, url, host, address)
            response = await client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    url = urljoin(url, location.strip())
                    continue
                return await self._read(url, response)
            finally:
                await response.aclose()
        raise FetchError(f"Too many redirects (more than {self.max_redirects}).")

    def _build(self, client: httpx.AsyncClient, url: str, host: str, address: str | None):
        if not self.pin_addresses or address is None:
            return client.build_request("GET", url)
        parsed = httpx.URL(url)
        literal = f"[{address}]" if ":" in address else address
        netloc = f"[{host}]" if ":" in host else host
        if parsed.port is not None:
            netloc += f":{parsed.port}"
        extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
        return client.build_request(
            "GET",
            parsed.copy_with(host=literal.strip("[]")),
            headers={"Host": netloc},
            extensions=extensions,
        )

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


def decode(body: bytes, charset: str | None, *, sniff_meta: bool) -> str:
    """Decode a body: HTTP charset, then BOM, then `<meta charset>`, then UTF-8, then cp1252."""
    candidates: list[str] = []
    if charset:
        candidates.append(charset)
    if body.startswith(b"\xef\xbb\xbf"):
        candidates.append("utf-8-sig")
    elif body.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates.append("utf-16")
    if sniff_meta and (m := _META_CHARSET_RE.search(body[:4096])):
        candidates.append(m.group(1).decode("ascii"))
    for name in [*candidates, "utf-8"]:
        try:
            return body.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("cp1252", errors="replace")
