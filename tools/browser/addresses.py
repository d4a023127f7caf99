"""Which addresses the browser may connect to: public unicast space only.

IPv6 is an allow-list: only global unicast space (``2000::/3``) outside its
special-purpose blocks. Transition forms that carry an IPv4 address which the
network would actually reach are judged by that address: IPv4-mapped
(``::ffff:a.b.c.d``), the well-known NAT64 prefix (``64:ff9b::/96``, which a
NAT64 gateway turns into a.b.c.d) and 6to4 (``2002:AABB:CCDD::/48``). The forms
whose target cannot be judged are refused: IPv4-compatible (``::a.b.c.d``),
IPv4-translated (``::ffff:0:a.b.c.d``), local-use NAT64 (``64:ff9b:1::/48``) and
Teredo (``2001::/32``). IPv4 is public unicast space: everything outside the
special-purpose, private, shared, loopback, link-local, documentation,
benchmarking, multicast and reserved blocks.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from functools import lru_cache

ALLOW_HOSTS_ENV = "OSS_AGENT_BROWSER_ALLOW_HOSTS"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_IPV4_NOT_PUBLIC = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)  # fmt: skip
_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_IPV6_NOT_PUBLIC = (
    "2001::/23",  # IETF protocol assignments, Teredo (2001::/32) and benchmarking among them
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
)
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


@lru_cache(maxsize=1)
def _blocks() -> tuple[tuple[ipaddress.IPv4Network, ...], tuple[ipaddress.IPv6Network, ...]]:
    return (
        tuple(ipaddress.IPv4Network(n) for n in _IPV4_NOT_PUBLIC),
        tuple(ipaddress.IPv6Network(n) for n in _IPV6_NOT_PUBLIC),
    )


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a mapped, well-known-NAT64 or 6to4 address leads to (else None)."""
    if ip in _IPV4_MAPPED or ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    return None


def is_public(ip: Address) -> bool:
    """True only for public unicast addresses (see the module docstring)."""
    v4_blocks, v6_blocks = _blocks()
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            return is_public(embedded)
        return ip in _IPV6_GLOBAL_UNICAST and not any(ip in block for block in v6_blocks)
    return ip != ipaddress.IPv4Address("255.255.255.255") and not any(ip in block for block in v4_blocks)


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
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # a zone index (fe80::1%eth0): link-local, never public
            return False
        if any(ip in net for net in self.networks):
            return True
        return is_public(ip)
