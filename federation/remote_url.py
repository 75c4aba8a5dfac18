"""Where the requesting gateway (A) may connect: the URL and address policy for remotes.

A remote gateway is not trusted, and neither is the URL its admin handed over:
plain http only to loopback and only when MOSAIC_ENROLL_ALLOW_HTTP_LOOPBACK allows
it; https only to public addresses unless MOSAIC_ENROLL_ALLOWED_NETWORKS names the
network. Literal IPs are checked when the URL is parsed, host names when they are
resolved (off the event loop, right before connecting, and the connection then goes
to the address that was checked). Messages never echo the token.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from federation.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_ENROLLMENT_PATH = re.compile(r"/api/federation/enrollment/[0-9a-f]{64}")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_RESOLVE_SECONDS = 10.0
ALLOW_HTTP_LOOPBACK = "MOSAIC_ENROLL_ALLOW_HTTP_LOOPBACK"
ALLOWED_NETWORKS = "MOSAIC_ENROLL_ALLOWED_NETWORKS"

if TYPE_CHECKING:
    from federation.settings import Settings


class AddressNotAllowed(InvalidInput):
    """A remote URL points at (or resolves to) an address the policy refuses."""

    kind = "AddressNotAllowed"


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, fd00::/8"`` → networks; a bare address is its own /32 or /128."""
    networks = []
    for item in text.replace(";", ",").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{item.strip()!r} is not an IP network (CIDR)") from None
    return tuple(networks)


@dataclass(frozen=True)
class AddressPolicy:
    allow_http_loopback: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, *, allow_http_loopback: bool, allowed_networks: str) -> AddressPolicy:
        return cls(allow_http_loopback, parse_networks(allowed_networks))

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        return cls.of(
            allow_http_loopback=settings.mosaic_enroll_allow_http_loopback,
            allowed_networks=settings.mosaic_enroll_allowed_networks,
        )


@dataclass(frozen=True)
class RemoteTarget:
    """A checked remote URL. ``host`` is the netloc as shown (IPv6 in brackets)."""

    url: str
    base_url: str
    host: str
    scheme: str
    hostname: str
    port: int

    @property
    def literal_ip(self) -> IPAddress | None:
        return _ip(self.hostname)


def parse_enrollment_url(url: str, policy: AddressPolicy) -> RemoteTarget:
    """Accept only ``https://host[:port]/api/federation/enrollment/<64 hex>`` (see module)."""
    target = _parse(url, "enrollmentUrl", policy)
    if not _ENROLLMENT_PATH.fullmatch(urlsplit(target.url).path):
        raise InvalidInput("enrollmentUrl must be <base>/api/federation/enrollment/<token>")
    return target


def parse_federation_url(url: str, policy: AddressPolicy) -> str:
    """The remote's federation listener URL, under the same policy; returned canonical."""
    return federation_target(url, policy).url


def federation_target(url: str, policy: AddressPolicy) -> RemoteTarget:
    """The remote's federation listener as a target to connect to, under the policy."""
    if len(url) > 2048:
        raise InvalidInput("federationUrl is longer than 2048 characters")
    return _parse(url, "federationUrl", policy)


def _parse(url: str, field: str, policy: AddressPolicy) -> RemoteTarget:
    url = url.strip()
    if not url.isascii() or any(ch <= " " or ch == "\x7f" for ch in url):
        raise InvalidInput(f"{field} is not a valid URL (spaces or control characters)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{field} is not a valid URL") from None
    hostname = parts.hostname
    if not hostname or parts.username or parts.password:
        raise InvalidInput(f"{field} must name a host (and no credentials)")
    if "%" in hostname and _ip(hostname) is None:
        raise InvalidInput(f"{field} must name a host (and no credentials)")
    if parts.query or parts.fragment:
        raise InvalidInput(f"{field} must not carry a query or fragment")
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"{field} must use https")
    literal = _ip(hostname)
    if parts.scheme == "http":
        _check_http(field, hostname, literal, policy)
    elif literal is not None:
        _raise_if_refused(field, literal, "https", policy)
    bracketed = f"[{hostname}]" if ":" in hostname else hostname
    netloc = bracketed if port is None else f"{bracketed}:{port}"
    base_url = f"{parts.scheme}://{netloc}"
    return RemoteTarget(
        url=f"{base_url}{parts.path}",
        base_url=base_url,
        host=netloc,
        scheme=parts.scheme,
        hostname=hostname,
        port=port if port is not None else (443 if parts.scheme == "https" else 80),
    )


def _check_http(
    field: str, hostname: str, literal: IPAddress | None, policy: AddressPolicy
) -> None:
    loopback = hostname == "localhost" or (literal is not None and _unwrap(literal).is_loopback)
    if not loopback:
        raise InvalidInput(f"{field} must use https (plain http only to loopback, in dev)")
    if not policy.allow_http_loopback:
        raise InvalidInput(
            f"{field} uses plain http to loopback; set {ALLOW_HTTP_LOOPBACK}=true to allow it"
            " (dev only)"
        )


def refusal(address: IPAddress, scheme: str, policy: AddressPolicy) -> str | None:
    """Why ``address`` may not be connected to over ``scheme``, or None when it may."""
    plain = _unwrap(address)
    if scheme == "http":
        if plain.is_loopback and policy.allow_http_loopback:
            return None
        return "not a loopback address (plain http is allowed to loopback only)"
    if any(plain in network or address in network for network in policy.allowed_networks):
        return None
    if plain.is_global and not plain.is_multicast:
        return None
    return f"a {_kind(plain)} address; allow its network in {ALLOWED_NETWORKS}"


def _raise_if_refused(field: str, address: IPAddress, scheme: str, policy: AddressPolicy) -> None:
    reason = refusal(address, scheme, policy)
    if reason is not None:
        raise AddressNotAllowed(f"{field} points to {address}, {reason}")


async def resolve_target(target: RemoteTarget, policy: AddressPolicy) -> list[IPAddress]:
    """The addresses to connect to, every one allowed by the policy.

    Resolved off the event loop; one refused address refuses the host (a name must
    not be half public, half internal). A name that does not resolve is an
    ``OSError``: the remote may be back later.
    """
    literal = target.literal_ip
    if literal is not None:
        _raise_if_refused("enrollmentUrl", literal, target.scheme, policy)
        return [literal]
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(_RESOLVE_SECONDS):
        infos = await loop.getaddrinfo(
            target.hostname, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        reason = refusal(address, target.scheme, policy)
        if reason is not None:
            raise AddressNotAllowed(f"{target.hostname} resolves to {address}, {reason}")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OSError(f"{target.hostname} has no address")
    return addresses


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_private:
        return "private"
    return "non-public"
