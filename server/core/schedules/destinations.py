"""Which webhook destinations may be reached: a webhook must not become a way into the
operator's network.

An address is refused when it is not a public one: loopback, private, link-local,
unique-local, carrier-grade NAT, multicast, unspecified, reserved or documentation
ranges, and IPv6 forms that carry such an IPv4 address (IPv4-mapped, 6to4, Teredo,
NAT64) — unless the operator's allow-list names it (an address or network, optionally
with a port: "10.1.0.0/16", "127.0.0.1:8080", "[::1]:8080"). Names are resolved and
every address they resolve to must pass; the sender then connects to a checked
address (see sender.py), so a name that changes its answer between check and
connect reaches nothing it should not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable, Sequence

from stepstream.server.core.errors import InvalidArgument

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class BlockedDestination(Exception):
    """The destination is not allowed (message says why)."""


@dataclasses.dataclass(frozen=True)
class AllowRule:
    network: IPNetwork
    port: int | None = None

    def admits(self, address: IPAddress, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)


def parse_allow(entries: Iterable[str]) -> list[AllowRule]:
    """Allow-list entries: an address or network, optionally with ":port" ("[v6]:port")."""
    rules = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        port: int | None = None
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else None
        elif entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
            port = int(port_text)
        else:
            host = entry
        try:
            rules.append(AllowRule(ipaddress.ip_network(host, strict=False), port))
        except ValueError as exc:
            raise ValueError(f"webhook allow-list entry {raw!r}: {exc}") from None
    return rules


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def special_kind(address: IPAddress) -> str | None:
    """Why `address` is not a public one, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            kind = special_kind(inner)
            return f"IPv6 form of {kind} {inner}" if kind else None
        if address in _UNIQUE_LOCAL:
            return "unique-local"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "carrier-grade NAT"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "special-purpose"
    return None


@dataclasses.dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int

    @property
    def destination(self) -> str:
        """scheme://host:port: the unit of the per-destination concurrency bound."""
        return f"{self.scheme}://{self.host}:{self.port}"


class DestinationPolicy:
    def __init__(self, allow: Sequence[AllowRule] = ()) -> None:
        self._allow = list(allow)

    def address_allowed(self, address: IPAddress, port: int) -> str | None:
        """None when the address may be reached on `port`; else what kind of address it is."""
        kind = special_kind(address)
        if kind is None or any(rule.admits(address, port) for rule in self._allow):
            return None
        return kind

    @staticmethod
    def target(url: str) -> Target:
        """The URL's scheme, host and port; BlockedDestination for what is not an http(s) URL."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BlockedDestination(f"{url!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise BlockedDestination(f"{url!r}: only http and https URLs are allowed")
        if not parts.hostname:
            raise BlockedDestination(f"{url!r} names no host")
        if parts.username or parts.password:
            raise BlockedDestination(f"{url!r}: credentials in the URL are not allowed")
        return Target(parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80))

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to for host:port, every one of them allowed."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise BlockedDestination(f"{host!r} does not resolve: {exc}") from None
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        for address in addresses:
            kind = self.address_allowed(address, port)
            if kind is not None:
                what = f"{address} is" if literal is not None else f"{host!r} resolves to {address},"
                raise BlockedDestination(
                    f"{what} not a public address ({kind}); webhooks may not reach it unless the "
                    "operator allows it (setting webhook_allow)"
                )
        if not addresses:
            raise BlockedDestination(f"{host!r} resolves to no address")
        return addresses

    async def check(self, url: str, field: str) -> Target:
        """INVALID_ARGUMENT naming `field` for a URL that may not be reached now."""
        try:
            target = self.target(url)
            await self.resolve(target.host, target.port)
        except BlockedDestination as exc:
            raise InvalidArgument(field, str(exc)) from None
        return target
