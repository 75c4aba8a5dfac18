"""The one place that turns keys and DER blobs into comparable bytes and hex."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes


def public_key_der(key: PublicKeyTypes) -> bytes:
    """Return the SubjectPublicKeyInfo DER of ``key``: equal keys give equal bytes."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint_sha256(der: bytes) -> str:
    """Return the lowercase hex SHA-256 of ``der``."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()
