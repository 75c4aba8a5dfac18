"""What the federation listener's app holds for its lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.audit_writer import AuditWriter
from api.client_cert import TrustedProxies
from api.state import Gateway
from federation import ledger
from federation.ca.builtin import BuiltinCA
from federation.db.models import utcnow
from federation.errors import CertificateRejected
from federation.inbound import UNAUTHENTICATED, Unauthenticated
from federation.pki.certs import load_chain
from federation.resources import ResourceSource, SqlResources

# A relayed chain longer than this is not a Mosaic chain (root → intermediate → leaf).
_MAX_RELAYED = 4
CRL_LIFETIME = timedelta(hours=1)


def _crl_reason(reason: str | None) -> x509.ReasonFlags | None:
    if reason == ledger.SUPERSEDED_REASON:
        return x509.ReasonFlags.superseded
    if reason in ("grant revoked", "grant closed"):
        return x509.ReasonFlags.privilege_withdrawn
    return None  # unspecified: RFC 5280 says leave the extension out


@dataclass
class FederationState:
    gateway: Gateway
    roots: list[x509.Certificate]
    # B's own intermediates, when the CA provider knows them (the built-in CA does).
    intermediates: list[x509.Certificate]
    proxies: TrustedProxies
    resources: ResourceSource
    audit: AuditWriter
    # (revoked set, when made, DER) of the last CRL.
    _crl: tuple[tuple[Any, ...], datetime, bytes] | None = None

    @classmethod
    def build(cls, gateway: Gateway) -> FederationState:
        ca = gateway.ca()
        settings = gateway.settings
        return cls(
            gateway=gateway,
            roots=ca.root_certificates(),
            intermediates=ca.intermediate_certificates() if isinstance(ca, BuiltinCA) else [],
            proxies=TrustedProxies.parse(settings.mosaic_federation_trusted_proxies),
            resources=SqlResources(),
            audit=AuditWriter(gateway.sessions),
        )

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.gateway.sessions

    def intermediates_for(self, relayed: list[str]) -> list[x509.Certificate]:
        """Intermediates to build a relayed certificate's chain: what the proxy relayed,
        then B's own."""
        if len(relayed) > _MAX_RELAYED:
            raise Unauthenticated(UNAUTHENTICATED, cause="relayed chain too long")
        try:
            found = [cert for pem in relayed for cert in load_chain(pem)]
        except CertificateRejected:
            raise Unauthenticated(UNAUTHENTICATED, cause="relayed chain unreadable") from None
        return found + self.intermediates

    async def crl(self) -> bytes | None:
        """The signed CRL (built-in CA only), made again whenever the revoked set changed
        and at least every ``CRL_LIFETIME``/2, so a cached one is never near its nextUpdate."""
        ca = self.gateway.ca()
        if not isinstance(ca, BuiltinCA):
            return None
        now = utcnow()
        async with self.sessions() as session:
            found = await ledger.revocations(session, at=now)
        key = tuple((r.serial, r.revoked_at, r.reason) for r in found)
        cached = self._crl
        if cached is not None and cached[0] == key and now - cached[1] < CRL_LIFETIME / 2:
            return cached[2]
        entries = [(int(r.serial, 16), r.revoked_at, _crl_reason(r.reason)) for r in found]
        der = ca.sign_crl(entries, lifetime=CRL_LIFETIME)
        self._crl = (key, now, der)
        return der

    async def close(self) -> None:
        await self.audit.close()
