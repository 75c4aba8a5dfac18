"""The remote gateway's CA, pinned at enrollment, and what we check against it.

B announces the SHA-256 of its CA root's DER in its preflight answer (before any
CSR is sent; an admin may demand a value, like ``step ca bootstrap --fingerprint``)
and the root itself in its redeem answer. A accepts the root only if it hashes to
the announced fingerprint, and the issued certificate only if it chains to it.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from federation.errors import CertificateRejected, FederationError
from federation.pki.certs import VerifiedCertificate, verify_issued_certificate
from federation.pki.fields import equal_text
from federation.pki.fingerprints import fingerprint_sha256

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


class CAFingerprintMismatch(FederationError):
    """The remote's CA is not the one the admin pinned."""

    kind = "CAFingerprintMismatch"
    status = 502


def ca_fingerprint(root: x509.Certificate) -> str:
    """SHA-256 (lowercase hex) of the certificate's DER: how a CA root is named."""
    return fingerprint_sha256(root.public_bytes(serialization.Encoding.DER))


def is_fingerprint(value: object) -> bool:
    """64 lowercase hex, exactly: the only form a remote may send."""
    return isinstance(value, str) and _FINGERPRINT.fullmatch(value) is not None


def normalize_fingerprint(text: str) -> str:
    """An admin's fingerprint: colons, spaces and case tolerated; 64 hex once cleaned."""
    cleaned = re.sub(r"[\s:]", "", text).lower()
    if not is_fingerprint(cleaned):
        raise ValueError("must be a SHA-256 fingerprint: 64 hex digits (colons allowed)")
    return cleaned


def check_pin(pinned: str | None, offered: str) -> None:
    """The preflight's fingerprint must equal the admin's, when the admin gave one."""
    if pinned and not equal_text(pinned, offered):
        raise CAFingerprintMismatch(
            f"remote CA fingerprint {offered[:16]}… does not match the pinned caFingerprint"
            f" {pinned[:16]}…"
        )


def pinned_root(ca_cert_pem: str, fingerprint: str) -> x509.Certificate:
    """The remote's CA root from its redeem answer, if it hashes to ``fingerprint``."""
    try:
        certificates = x509.load_pem_x509_certificates(ca_cert_pem.encode("utf-8"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CertificateRejected(
            "remote CA certificate could not be parsed", cause=str(exc)
        ) from None
    if len(certificates) != 1:
        raise CertificateRejected("remote CA certificate PEM must hold exactly one certificate")
    root = certificates[0]
    if not fingerprint or not equal_text(ca_fingerprint(root), fingerprint):
        raise CertificateRejected(
            "remote CA certificate does not match the fingerprint of its preflight answer"
        )
    try:
        constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        constraints = None
    if constraints is None or not constraints.ca:
        raise CertificateRejected("remote CA certificate is not a CA certificate")
    return root


def verify_received_certificate(
    cert_pem: str,
    chain_pem: str,
    *,
    public_key: bytes,
    grant_id: str | None,
    subject_user_id: str | None,
    roots: list[x509.Certificate] | None,
    require_chain: bool = True,
) -> VerifiedCertificate:
    """OIDs, our key, notAfter, and the chain: to ``roots`` (the pinned remote root), or
    merely consistent when there is no root to pin (``None``: the manual path)."""
    return verify_issued_certificate(
        cert_pem,
        chain_pem,
        roots=roots,
        expected_grant_id=grant_id,
        expected_subject_user_id=subject_user_id,
        expected_public_key_der=public_key,
        require_chain=require_chain,
    )
