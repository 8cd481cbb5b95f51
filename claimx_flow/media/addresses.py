"""Which network addresses a media download may reach: public ones only, in production.

A hostname on the allowlist says nothing about where it points. A DNS answer can name a private
address (an internal service, the cloud metadata endpoint ``169.254.169.254``) and change between
two lookups (DNS rebinding). So the check is done on the addresses themselves, by the resolver
the HTTP client connects with: resolve, check every address, and hand the client only what was
checked, so the connection goes to an address that passed.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PrivateAddressError(OSError):
    """A media host that is, or resolves to, an address that is not on the public internet."""


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one (IPv6 with or without brackets or a zone),
    else None. Only IPv6 has a zone: ``127.0.0.1%2f`` is no address (and no host either)."""
    text = host.strip("[]")
    if ":" in text:
        text = text.split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, shared, reserved, multicast.

    An IPv4 address inside IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo) is judged by the IPv4
    address it carries, which is where a connection to it ends up.
    """
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
    return address.is_global and not address.is_multicast


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refuse_private(host: str, addresses: list[str]) -> None:
    """Raise ``PrivateAddressError`` unless every one of ``addresses`` is public."""
    for text in addresses:
        address = parse_ip(text)
        if address is None or not is_public(address):
            raise PrivateAddressError(f"host {host!r} resolves to {text}, not a public address")


class PublicOnlyResolver(AbstractResolver):
    """The default resolver, refusing any answer that includes a non-public address."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        refuse_private(host, [str(result["host"]) for result in results])
        return results

    async def close(self) -> None:
        await self._inner.close()


def describe(error: Any) -> str | None:
    """The refusal behind an aiohttp connection error, if it was ours."""
    cause = getattr(error, "os_error", None)
    return str(cause) if isinstance(cause, PrivateAddressError) else None
