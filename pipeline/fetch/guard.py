"""The address guard: the crawler follows links strangers posted, so it must not reach this machine,
its network or the cloud's metadata service.

An address is refused when it is loopback, private (RFC 1918, IPv6 ULA), link-local (which holds
169.254.169.254, the metadata service), CGNAT (100.64/10), multicast, reserved, unspecified or
otherwise not globally routable; IPv4-mapped and 6to4/NAT64-embedded IPv6 addresses are judged by
the IPv4 address inside. The check runs on the resolved address at connect time (``GuardedResolver``),
so a public name that resolves to a private address (DNS rebinding) and a redirect to a private
address are refused too; IP literals, which aiohttp does not resolve, are checked before connecting.

A name under ``.invalid`` never resolves (RFC 6761): it fails at once as a DNS error, without a
query. Other names resolve through ``fetch.hosts`` first (an exact ``name=address``, else the
``*.suffix=address`` wildcard with the longest suffix), then the system resolver.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SPECIAL_UNRESOLVABLE = ("invalid",)  # RFC 6761 6.4: resolvers answer NXDOMAIN without asking anyone


class BlockedAddress(OSError):
    """A connection to an address the guard refuses; aiohttp wraps it, the crawler unwraps it."""


class NeverResolves(socket.gaierror):
    """A special-use name that has no address (``*.invalid``); counted as ``dns_error``, like the
    system resolver's NXDOMAIN."""


def never_resolves(name: str) -> bool:
    """Whether ``name`` is under a special-use domain that no resolver may answer (RFC 6761)."""
    return name.lower().rstrip(".").rpartition(".")[2] in SPECIAL_UNRESOLVABLE


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether connecting to ``address`` is allowed: a globally routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            return is_public(inner)
    if address in CGNAT:
        return False
    return address.is_global and not address.is_multicast and not address.is_reserved


@dataclass
class AddressPolicy:
    """Which addresses may be connected to. ``allow_private`` turns the guard off (tests, demos);
    ``allowed`` exempts networks (test servers on loopback) while the guard stays on. ``hosts``
    maps lowercase names, or wildcards ``*.suffix``, to addresses (``override``)."""

    allow_private: bool = False
    allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, allow_private: bool, allowed_networks: list[str],
                    hosts: dict[str, str]) -> AddressPolicy:
        networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        return cls(allow_private, networks, {k.lower(): v for k, v in hosts.items()})

    def override(self, host: str) -> str | None:
        """The address ``hosts`` gives ``host``: its exact entry, else the wildcard ``*.suffix`` of
        the longest suffix that ``host`` lies under (``*.test`` covers ``a.test`` and ``a.b.test``,
        not ``test``), else None."""
        name = host.lower().rstrip(".")
        exact = self.hosts.get(name)
        if exact is not None:
            return exact
        rest = name
        while "." in rest:  # the parent domains, longest first
            rest = rest.partition(".")[2]
            wildcard = self.hosts.get(f"*.{rest}")
            if wildcard is not None:
                return wildcard
        return None

    def allows(self, address: str | IPAddress) -> bool:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if self.allow_private or any(ip in network for network in self.allowed):
            return True
        return is_public(ip)


def ip_literal(host: str) -> IPAddress | None:
    """The address a URL host names literally (``127.0.0.1``, ``::1``), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, with ``hosts`` overrides, that drops every address the policy refuses.

    When nothing is left, the connection fails with ``BlockedAddress``. A name under ``.invalid``
    fails with ``NeverResolves`` before the system resolver is asked (aiohttp reports both as
    DNS errors; the crawler tells them apart).
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if never_resolves(host):  # before the overrides too: such a name has no address at all
            raise NeverResolves(socket.EAI_NONAME, f"{host}: a special-use name, never resolved (RFC 6761)")
        override = self.policy.override(host)
        if override is not None:
            ip = ipaddress.ip_address(override)
            results: list[ResolveResult] = [{
                "hostname": host, "host": override, "port": port,
                "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                "proto": 0, "flags": socket.AI_NUMERICHOST,
            }]
        else:
            results = await self.inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.allows(r["host"])]
        if not allowed:
            addresses = ", ".join(sorted({r["host"] for r in results}))
            raise BlockedAddress(f"{host} resolves only to refused addresses ({addresses})")
        return allowed

    async def close(self) -> None:
        await self.inner.close()
