"""Our client key towards a remote gateway and the CSR for it (requesting side, A).

The key is generated here, sealed at once (AES-256-GCM, AAD bound to the peer row
and the column) and never leaves in clear.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from federation.errors import NotFound
from federation.pki.fingerprints import public_key_der
from federation.sealing import Sealer


class HoldsClientKey(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def client_key_sealed(self) -> str | None: ...


def client_key_aad(peer_id: uuid.UUID) -> str:
    return f"federation_peers:{peer_id}:client_key_sealed"


def next_key_aad(peer_id: uuid.UUID) -> str:
    """A renewal's key, sealed under its own column until the swap re-seals it."""
    return f"federation_peers:{peer_id}:next_key_sealed"


def new_client_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def seal_client_key(
    sealer: Sealer, peer_id: uuid.UUID, key: ec.EllipticCurvePrivateKey, *, aad: str | None = None
) -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return sealer.seal(pem, aad=aad or client_key_aad(peer_id))


def open_client_key(sealer: Sealer, peer: HoldsClientKey) -> ec.EllipticCurvePrivateKey:
    """Unseal the peer's client key (raises SealedBlobError if it does not open)."""
    if not peer.client_key_sealed:
        raise NotFound("peer has no client key")
    return open_sealed_key(sealer, peer.client_key_sealed, aad=client_key_aad(peer.id))


def open_sealed_key(sealer: Sealer, blob: str, *, aad: str) -> ec.EllipticCurvePrivateKey:
    """An EC private key sealed under ``aad`` (SealedBlobError if it does not open)."""
    key = serialization.load_pem_private_key(sealer.open(blob, aad=aad), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise NotFound("sealed client key is not an EC key")
    return key


def client_public_key(sealer: Sealer, peer: HoldsClientKey) -> bytes:
    """The SubjectPublicKeyInfo DER of the peer's (sealed) client key."""
    return public_key_der(open_client_key(sealer, peer).public_key())


def build_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> str:
    """A PEM CSR with CN and the one DNS SAN ``common_name``."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()
