"""The requesting gateway's side of enrollment (gateway A): its credential towards a remote.

A peer row here is *our* identity towards the remote gateway. The client key
is generated here, sealed at once (AES-256-GCM, AAD bound to the row and the
field) and never leaves in clear; the enrollment URL, which holds the token,
is sealed the same way until enrollment ends and is then wiped.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audit import audit_entry
from federation.db.models import Peer, utcnow
from federation.directory import add_peer
from federation.errors import Conflict, InvalidInput, NotFound
from federation.pki.certs import VerifiedCertificate, verify_issued_certificate
from federation.pki.fingerprints import public_key_der
from federation.sealing import SealedBlobError, Sealer, reseal

_ENROLLMENT_PATH = re.compile(r"/api/federation/enrollment/[0-9a-f]{64}")


def client_key_aad(peer_id: uuid.UUID) -> str:
    return f"federation_peers:{peer_id}:client_key_sealed"


def enrollment_url_aad(peer_id: uuid.UUID) -> str:
    return f"federation_peers:{peer_id}:enrollment_url_sealed"


@dataclass(frozen=True)
class EnrollmentTarget:
    url: str
    base_url: str
    host: str


def parse_enrollment_url(url: str, *, allow_http_loopback: bool) -> EnrollmentTarget:
    """Accept only ``https://host[:port]/api/federation/enrollment/<64 hex>``.

    Plain http is allowed only to a loopback address and only when the
    setting allows it (dev, demo). Messages never echo the token.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise InvalidInput("enrollmentUrl is not a valid URL") from None
    if not parts.hostname or parts.username or parts.password:
        raise InvalidInput("enrollmentUrl must name a host (and no credentials)")
    if parts.query or parts.fragment or not _ENROLLMENT_PATH.fullmatch(parts.path):
        raise InvalidInput("enrollmentUrl must be <base>/api/federation/enrollment/<token>")
    if parts.scheme == "http":
        if not (allow_http_loopback and _is_loopback(parts.hostname)):
            raise InvalidInput("enrollmentUrl must use https (http only to loopback in dev)")
    elif parts.scheme != "https":
        raise InvalidInput("enrollmentUrl must use https")
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    return EnrollmentTarget(
        url=f"{parts.scheme}://{netloc}{parts.path}",
        base_url=f"{parts.scheme}://{netloc}",
        host=netloc,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def create_enrolling_peer(
    session: AsyncSession,
    sealer: Sealer,
    *,
    target: EnrollmentTarget,
    display_name: str,
    actor: str,
    request_id: str,
) -> Peer:
    """A ``pending`` peer holding the sealed enrollment URL for the peer-add workflow.

    Its common name is unknown until the remote's preflight names it.
    """
    peer_id = uuid.uuid4()
    peer = Peer(
        id=peer_id,
        common_name=None,
        display_name=display_name,
        endpoint_url=target.base_url,
        state="pending",
        enrollment_url_sealed=sealer.seal(target.url.encode(), aad=enrollment_url_aad(peer_id)),
    )
    await add_peer(session, peer, verb="peer.enroll", actor=actor, request_id=request_id)
    return peer


async def create_keypair_peer(
    session: AsyncSession,
    sealer: Sealer,
    *,
    common_name: str,
    display_name: str,
    endpoint_url: str | None,
    actor: str,
    request_id: str,
) -> tuple[Peer, str]:
    """The manual path: a pending peer with a fresh sealed key; returns it and its CSR."""
    peer_id = uuid.uuid4()
    key = ec.generate_private_key(ec.SECP256R1())
    peer = Peer(
        id=peer_id,
        common_name=common_name,
        display_name=display_name,
        endpoint_url=endpoint_url,
        state="pending",
        client_key_sealed=_seal_key(sealer, peer_id, key),
    )
    await add_peer(session, peer, verb="peer.keypair", actor=actor, request_id=request_id)
    return peer, build_csr(key, common_name)


def _seal_key(sealer: Sealer, peer_id: uuid.UUID, key: ec.EllipticCurvePrivateKey) -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return sealer.seal(pem, aad=client_key_aad(peer_id))


def open_client_key(sealer: Sealer, peer: Peer) -> ec.EllipticCurvePrivateKey:
    """Unseal the peer's client key (raises SealedBlobError if it does not open)."""
    if not peer.client_key_sealed:
        raise NotFound("peer has no client key")
    pem = sealer.open(peer.client_key_sealed, aad=client_key_aad(peer.id))
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise NotFound("peer client key is not an EC key")
    return key


async def get_peer(session: AsyncSession, peer_id: uuid.UUID) -> Peer:
    peer = await session.get(Peer, peer_id, populate_existing=True)
    if peer is None:
        raise NotFound("peer not found")
    return peer


async def read_enrollment_url(session: AsyncSession, sealer: Sealer, peer_id: uuid.UUID) -> str:
    peer = await get_peer(session, peer_id)
    if peer.state != "pending" or not peer.enrollment_url_sealed:
        raise Conflict(f"peer is {peer.state}; its enrollment URL is gone")
    return sealer.open(peer.enrollment_url_sealed, aad=enrollment_url_aad(peer.id)).decode()


async def record_preflight(
    session: AsyncSession,
    peer_id: uuid.UUID,
    *,
    common_name: str,
    grant_id: str,
    subject_user_id: str,
) -> None:
    """Keep what the remote said the token is for; the CN must be ours alone."""
    peer = await get_peer(session, peer_id)
    if peer.state != "pending":
        raise Conflict(f"peer is {peer.state}, not pending")
    if peer.common_name not in (None, common_name):
        raise Conflict("the remote names a different common name than before")
    peer.common_name = common_name
    peer.remote_grant_id = grant_id
    peer.remote_subject_user_id = subject_user_id
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"another local peer already uses the common name {common_name}") from None


async def ensure_client_csr(session: AsyncSession, sealer: Sealer, peer_id: uuid.UUID) -> str:
    """Generate and seal the client key on first call (reuse it on retries); return a CSR."""
    peer = await get_peer(session, peer_id)
    if peer.state != "pending":
        raise Conflict(f"peer is {peer.state}, not pending")
    if not peer.common_name:
        raise Conflict("peer has no common name yet")
    common_name = peer.common_name
    if peer.client_key_sealed:
        key = open_client_key(sealer, peer)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        result = await session.execute(
            update(Peer)
            .where(Peer.id == peer_id, Peer.client_key_sealed.is_(None))
            .values(client_key_sealed=_seal_key(sealer, peer_id, key), updated_at=utcnow())
        )
        await session.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            key = open_client_key(sealer, await get_peer(session, peer_id))
    return build_csr(key, common_name)


def build_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def verify_received_certificate(
    cert_pem: str,
    chain_pem: str,
    *,
    public_key: bytes,
    grant_id: str | None,
    subject_user_id: str | None,
    require_chain: bool = True,
) -> VerifiedCertificate:
    """What the requesting side can check: OIDs, our key, a consistent chain, notAfter."""
    return verify_issued_certificate(
        cert_pem,
        chain_pem,
        roots=None,
        expected_grant_id=grant_id,
        expected_subject_user_id=subject_user_id,
        expected_public_key_der=public_key,
        require_chain=require_chain,
    )


def client_public_key(sealer: Sealer, peer: Peer) -> bytes:
    return public_key_der(open_client_key(sealer, peer).public_key())


async def store_certificate(
    session: AsyncSession,
    peer_id: uuid.UUID,
    *,
    cert_pem: str,
    verified: VerifiedCertificate,
    actor: str,
    request_id: str,
) -> None:
    """Peer ``pending`` → ``active`` with its certificate; the enrollment URL is wiped.

    Idempotent: a retry that finds the peer active with this serial succeeds.
    """
    now = utcnow()
    result = await session.execute(
        update(Peer)
        .where(Peer.id == peer_id, Peer.state == "pending")
        .values(
            state="active",
            cert_pem=cert_pem,
            cert_serial=verified.serial,
            cert_not_after=verified.not_after,
            cert_fingerprint=verified.fingerprint_sha256,
            remote_grant_id=verified.grant_id,
            remote_subject_user_id=verified.subject_user_id,
            enrollment_url_sealed=None,
            failure_reason=None,
            updated_at=now,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        current = await session.scalar(
            select(Peer.cert_serial).where(Peer.id == peer_id, Peer.state == "active")
        )
        if current == verified.serial:
            return
        raise Conflict("peer is no longer pending")
    session.add(
        audit_entry(
            request_id=request_id,
            actor=actor,
            verb="peer.enroll",
            resource="federation_peer",
            outcome="allowed",
            status_code=200,
            peer_id=peer_id,
            cert_serial=verified.serial,
        )
    )
    await session.commit()


async def mark_failed(
    session: AsyncSession,
    peer_id: uuid.UUID,
    *,
    reason: str,
    status_code: int,
    request_id: str,
    actor: str = "peer-add",
) -> bool:
    """Peer ``pending`` → ``failed``: key and enrollment URL wiped, reason kept, audited."""
    result = await session.execute(
        update(Peer)
        .where(Peer.id == peer_id, Peer.state == "pending")
        .values(
            state="failed",
            failure_reason=reason[:500],
            client_key_sealed=None,
            enrollment_url_sealed=None,
            updated_at=utcnow(),
        )
    )
    failed = bool(result.rowcount == 1)  # type: ignore[attr-defined]
    if failed:
        session.add(
            audit_entry(
                request_id=request_id,
                actor=actor,
                verb="peer.enroll",
                resource="federation_peer",
                outcome="denied",
                status_code=status_code,
                reason=reason,
                peer_id=peer_id,
            )
        )
    await session.commit()
    return failed


async def reseal_all(session: AsyncSession, *, old: Sealer, new: Sealer) -> int:
    """Re-seal every sealed blob under ``new`` (after a secret rotation); returns how many.

    Blobs already sealed under ``new`` are left as they are, so a rerun is safe.
    """
    peers = (
        await session.scalars(
            select(Peer).where(
                (Peer.client_key_sealed.is_not(None)) | (Peer.enrollment_url_sealed.is_not(None))
            )
        )
    ).all()
    count = 0
    for peer in peers:
        peer_id = peer.id  # read before a rollback expires the row
        try:
            count += _reseal_peer(peer, old=old, new=new)
        except SealedBlobError as exc:
            await session.rollback()
            raise SealedBlobError(f"peer {peer_id}: {exc}") from None
    await session.commit()
    return count


def _reseal_peer(peer: Peer, *, old: Sealer, new: Sealer) -> int:
    """Re-seal the peer's blobs; returns how many changed (already-new ones do not)."""
    count = 0
    if peer.client_key_sealed:
        blob = reseal(peer.client_key_sealed, aad=client_key_aad(peer.id), old=old, new=new)
        count += blob != peer.client_key_sealed
        peer.client_key_sealed = blob
    if peer.enrollment_url_sealed:
        blob = reseal(peer.enrollment_url_sealed, aad=enrollment_url_aad(peer.id), old=old, new=new)
        count += blob != peer.enrollment_url_sealed
        peer.enrollment_url_sealed = blob
    return count
