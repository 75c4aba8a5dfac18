"""Where the federation app finds the client certificate a request presented.

On the mTLS listener: the ASGI TLS extension (``scope["extensions"]["tls"]``), filled
by our protocol from the verified handshake. Behind a TLS-terminating proxy: the RFC
9440 ``Client-Cert`` (and ``Client-Cert-Chain``) header, believed only from the
addresses in ``MOSAIC_FEDERATION_TRUSTED_PROXIES`` — from anyone else it is ignored,
as is any copy on a request that came over TLS itself.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import unquote

from starlette.types import Scope

from federation.inbound import UNAUTHENTICATED, Unauthenticated

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_HEADER = 16384
_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"


@dataclass(frozen=True)
class Presentation:
    leaf_pem: str
    # PEM intermediates the proxy relayed (Client-Cert-Chain); empty over direct TLS.
    chain_pems: list[str] = field(default_factory=list)
    # True when the TLS handshake on our own listener verified the chain.
    verified_by_handshake: bool = False


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, setting: str) -> TrustedProxies:
        """``MOSAIC_FEDERATION_TRUSTED_PROXIES``: IPs or CIDRs, comma-separated."""
        items = [item.strip() for item in setting.split(",") if item.strip()]
        try:
            return cls(tuple(ipaddress.ip_network(item, strict=False) for item in items))
        except ValueError as exc:
            raise ValueError(f"MOSAIC_FEDERATION_TRUSTED_PROXIES: {exc}") from None

    def trusts(self, host: str | None) -> bool:
        if not host or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def presentation(scope: Scope, proxies: TrustedProxies) -> Presentation | None:
    """The certificate this request presented, or None when it presented none we believe."""
    tls = scope.get("extensions", {}).get("tls")
    if tls is not None:
        chain = tls.get("client_cert_chain") or []
        return Presentation(chain[0], list(chain[1:]), True) if chain else None
    client = scope.get("client")
    if not proxies.trusts(client[0] if client else None):
        return None
    headers = {name: value for name, value in scope["headers"]}
    relayed = headers.get(b"client-cert")
    if relayed is None:
        return None
    leaf, *bundled = _certificates(relayed)
    chain = [
        pem
        for item in _items(headers.get(b"client-cert-chain", b""))
        for pem in _certificates(item)
    ]
    return Presentation(leaf, bundled + chain, False)


def _items(value: bytes) -> list[bytes]:
    return [item.strip() for item in value.split(b",") if item.strip()]


def _certificates(value: bytes) -> list[str]:
    """The PEM certificates of a header value: RFC 9440 (``:base64 DER:``, one) or nginx's
    URL-escaped PEM (``$ssl_client_escaped_cert``: the leaf, maybe its chain after it)."""
    if len(value) > _MAX_HEADER:
        raise Unauthenticated(UNAUTHENTICATED, cause="relayed certificate header too large")
    text = value.decode("latin-1").strip()
    if text.startswith(":") and text.endswith(":") and len(text) > 2:
        try:
            der = base64.b64decode(text[1:-1], validate=True)
        except (binascii.Error, ValueError):
            raise Unauthenticated(UNAUTHENTICATED, cause="Client-Cert is not base64") from None
        body = base64.encodebytes(der).decode("ascii")
        return [f"{_BEGIN}\n{body}{_END}\n"]
    pem = unquote(text)
    if not pem.startswith(_BEGIN):
        raise Unauthenticated(UNAUTHENTICATED, cause="Client-Cert is neither RFC 9440 nor PEM")
    return [f"{_BEGIN}{part.split(_END)[0]}{_END}\n" for part in pem.split(_BEGIN)[1:]]
