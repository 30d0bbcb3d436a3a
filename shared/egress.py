"""Where analysis may connect: the egress rule (`spec.analysisEgress` of slipway.yaml).

An analysis' HTTP checks and Prometheus addresses come from configs people
push, so without a rule they could make Slipway probe its own network: the
cloud's metadata service (credentials), loopback admin ports, private
services. The rule: public addresses are reachable; loopback, link-local,
private (RFC 1918, fc00::/7), unspecified and other non-public addresses are
refused unless an `allow` entry (a CIDR, an address or a host name) covers
them. Cloud metadata endpoints are refused even inside an allowed network
unless an entry names them exactly: allowing `169.254.0.0/16` for a
link-local service should not hand out the instance's credentials.

The rule is enforced where the connection is made (`guarded_session`): every
address a host name resolves to is checked, and the connection goes to those
checked addresses (no second lookup a rebinding DNS server could answer
differently). Redirects and IP literals take the same path, so a redirect to
a refused address is refused too. A refusal is an `EgressRefused`, before any
packet is sent to the refused address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from aiohttp.abc import ResolveResult

from shared.errors import SlipwayError

__all__ = [
    "EgressPolicy",
    "EgressRefused",
    "guarded_session",
    "parse_allow_entry",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean…
        "fd00:ec2::254",  # AWS over IPv6
        "169.254.170.2",  # AWS ECS task credentials
        "100.100.100.200",  # Alibaba Cloud
    )
)
METADATA_HOSTS: Final = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(SlipwayError, OSError):
    """A connection the egress rule does not allow; the text says which address and why."""


def parse_allow_entry(entry: str) -> IPNetwork | str:
    """An `allow` entry as a network (a CIDR or one address) or a lower-case host name.

    ValueError saying what is wrong with it otherwise.
    """
    text = entry.strip()
    if not text:
        raise ValueError("an empty entry allows nothing; remove it")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    host = text.lower().rstrip(".")
    labels = host.split(".")
    if "/" in text or not all(
        label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels
    ):
        raise ValueError(f"{entry!r} is neither a CIDR, an IP address nor a host name")
    return host


@dataclass(frozen=True)
class EgressPolicy:
    """The `allow` entries: networks and host names that may be reached although not public."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> EgressPolicy:
        """The policy from allow-list entries (CIDRs or host names); a clear error for a bad one."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            parsed = parse_allow_entry(entry)
            if isinstance(parsed, str):
                hosts.add(parsed)
            else:
                networks.append(parsed)
        return cls(tuple(networks), frozenset(hosts))

    def name_refusal(self, host: str) -> str | None:
        """Why `host` is refused by its name alone (a metadata service's); checked before
        any lookup, so not even a DNS query is made for it."""
        name = host.lower().rstrip(".")
        if name in METADATA_HOSTS and name not in self.hosts:
            return f"{host} is a cloud metadata address"
        return None

    def refusal(self, host: str, address: str) -> str | None:
        """Why connecting to `address` (which `host` resolved to) is refused; None if allowed."""
        name = host.lower().rstrip(".")
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        ip = _embedded_ipv4(ip)
        named = name in self.hosts
        if ip in METADATA_ADDRESSES or name in METADATA_HOSTS:
            exact = any(n.num_addresses == 1 and ip in n for n in self.networks)
            if exact or (named and name in METADATA_HOSTS):
                return None
            return f"{_where(host, ip)} is a cloud metadata address"
        if named or any(ip in n for n in self.networks):
            return None
        kind = _kind(ip)
        return None if kind is None else f"{_where(host, ip)} is {kind}"

    def check_name(self, host: str) -> None:
        """`EgressRefused` if `host` is refused by its name alone."""
        _raise_if(self.name_refusal(host))

    def check(self, host: str, addresses: Sequence[str]) -> None:
        """`EgressRefused` unless every address `host` resolved to is allowed."""
        if not addresses:
            raise EgressRefused(f"{host} resolved to no address")
        for address in addresses:
            _raise_if(self.refusal(host, address))


def _raise_if(reason: str | None) -> None:
    if reason is not None:
        raise EgressRefused(f"egress refused: {reason} (not allowed by spec.analysisEgress.allow)")


def _embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one merely carries (::ffff:a.b.c.d, 64:ff9b::a.b.c.d)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _kind(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is; None for a public one."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not a public address"
    return None


def _where(host: str, ip: IPAddress) -> str:
    return str(ip) if host == str(ip) else f"{host} ({ip})"


class _GuardedConnector(aiohttp.TCPConnector):
    """A connector that checks every resolved address against the policy before connecting.

    aiohttp connects to exactly the addresses `_resolve_host` returns (IP
    literals included, and for every redirect), so checking them here checks
    what is connected to.
    """

    def __init__(self, policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policy = policy

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        self._policy.check_name(host)
        results = await super()._resolve_host(host, port, traces)
        self._policy.check(host, [r["host"] for r in results])
        return results


def guarded_session(policy: EgressPolicy, **kwargs: Any) -> aiohttp.ClientSession:
    """A client session whose every connection obeys `policy` (refusals: `EgressRefused`,
    wrapped by aiohttp in a `ClientConnectorError` whose `os_error` it is)."""
    # No proxy from the environment: a proxy would connect on our behalf, unchecked.
    return aiohttp.ClientSession(connector=_GuardedConnector(policy), trust_env=False, **kwargs)
