"""The inbound guard (gateway B): who is calling, on every federated request, with no cache.

In order, each refusal its own check:
1. the client certificate chains to B's CA and is within its validity (the TLS
   handshake checks it on the listener; a certificate relayed by a trusted proxy is
   checked here) — else 401;
2. both Mosaic OIDs are present and well formed — else 401;
3. the grant exists and is ``active``, its peer is ``active``, its subject user is the
   one OID 2 names — else 403;
4. the presented certificate is the one the ledger pins on the grant (or the one a
   renewal just superseded, during its overlap), byte for byte — else 403;
5. the scope allows the verb on the resource — else 403.

Every authorization refusal is the same 403 with the same message, so nobody can learn
whether a grant exists; the reason is kept for the audit row only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import String, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.db.models import Certificate, Grant, Peer
from federation.errors import CertificateRejected, FederationError
from federation.pki.certs import read_mosaic_oids, serial_hex, verify_client_chain
from federation.pki.fingerprints import fingerprint_sha256
from federation.scope import Scope

FORBIDDEN = "not authorized for this request"
UNAUTHENTICATED = "client certificate is not a valid Mosaic federation certificate"


class Unauthenticated(FederationError):
    kind = "Unauthenticated"
    status = 401


class Forbidden(FederationError):
    """One message for every authorization refusal; ``cause`` says which, for the audit."""

    kind = "Forbidden"
    status = 403

    def __init__(
        self, cause: str, *, grant_id: uuid.UUID | None = None, peer_id: uuid.UUID | None = None
    ) -> None:
        super().__init__(FORBIDDEN, cause=cause)
        # Known only when the grant exists: the audit row may then name it.
        self.grant_id = grant_id
        self.peer_id = peer_id


@dataclass(frozen=True)
class Presented:
    """A client certificate as presented, read but not yet trusted for anything."""

    certificate: x509.Certificate
    serial: str
    fingerprint: str
    grant_id: uuid.UUID
    subject_user_id: uuid.UUID


@dataclass(frozen=True)
class Caller:
    """An authenticated, authorized-to-something federated caller."""

    grant_id: uuid.UUID
    peer_id: uuid.UUID
    subject_user_id: uuid.UUID
    serial: str
    scope: Scope


def present(
    leaf_pem: str,
    *,
    at: datetime,
    roots: list[x509.Certificate] | None = None,
    intermediates: list[x509.Certificate] | None = None,
) -> Presented:
    """Steps 1 and 2: the certificate's chain and validity, then its two OIDs (401 each).

    With ``roots`` the chain is verified here (a certificate relayed by a proxy);
    without, the caller vouches that the TLS handshake verified it against B's CA.
    """
    try:
        leaf = x509.load_pem_x509_certificate(leaf_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise Unauthenticated(UNAUTHENTICATED, cause="unreadable client certificate") from None
    try:
        if roots is not None:
            verify_client_chain(leaf, intermediates or [], roots, at)
        elif not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
            raise CertificateRejected("client certificate is outside its validity period")
        grant_id, subject_user_id = read_mosaic_oids(leaf)
    except CertificateRejected as rejected:
        raise Unauthenticated(UNAUTHENTICATED, cause=rejected.message) from None
    return Presented(
        certificate=leaf,
        serial=serial_hex(leaf),
        fingerprint=fingerprint_sha256(leaf.public_bytes(serialization.Encoding.DER)),
        grant_id=uuid.UUID(grant_id),
        subject_user_id=uuid.UUID(subject_user_id),
    )


# Steps 3 and 4 in one statement, built once: every request binds its grant id and
# serial (no cache of the answer: a revoke counts from the next request on).
_AUTHORIZE = (
    select(
        Grant.status,
        Grant.subject_user_id,
        Grant.peer_id,
        Grant.cert_serial,
        Grant.scope,
        Peer.state,
        Certificate.grant_id,
        Certificate.state,
        Certificate.fingerprint,
        Certificate.revoke_after,
    )
    .join(Peer, Peer.id == Grant.peer_id)
    .outerjoin(Certificate, Certificate.serial == bindparam("serial", type_=String))
    .where(Grant.id == bindparam("grant_id", type_=Grant.__table__.c.id.type))
)


async def authorize(session: AsyncSession, presented: Presented, *, at: datetime) -> Caller:
    """Steps 3 and 4, in one query against the grant, its peer and the ledger row."""
    row = (
        await session.execute(
            _AUTHORIZE, {"serial": presented.serial, "grant_id": presented.grant_id}
        )
    ).first()
    if row is None:
        raise Forbidden("no such grant")
    (status, user, peer_id, pinned, scope, peer_state) = row[:6]
    (cert_grant, cert_state, cert_fingerprint, revoke_after) = row[6:]

    def refuse(cause: str) -> Forbidden:
        return Forbidden(cause, grant_id=presented.grant_id, peer_id=peer_id)

    if status != "active":
        raise refuse(f"grant is {status}")
    if peer_state != "active":
        raise refuse(f"peer is {peer_state}")
    if user != presented.subject_user_id:
        raise refuse("subject user OID does not match the grant")
    if cert_grant != presented.grant_id or cert_fingerprint != presented.fingerprint:
        raise refuse("certificate is not in the ledger for this grant")
    current = cert_state == "active" and revoke_after is None and pinned == presented.serial
    overlapping = cert_state == "superseded" and revoke_after is not None and revoke_after > at
    if not (current or overlapping):
        raise refuse(f"certificate is not the one pinned on the grant ({cert_state})")
    return Caller(
        grant_id=presented.grant_id,
        peer_id=peer_id,
        subject_user_id=user,
        serial=presented.serial,
        scope=Scope.model_validate(scope),
    )


def allow(caller: Caller, resource: str) -> None:
    """Step 5: the resource is in the grant's resources and not excluded (deny wins)."""
    known = {"grant_id": caller.grant_id, "peer_id": caller.peer_id}
    if resource in caller.scope.excluded_resources:
        raise Forbidden(f"{resource} is excluded by the grant's scope", **known)
    if resource not in caller.scope.resources:
        raise Forbidden(f"{resource} is not in the grant's scope", **known)
