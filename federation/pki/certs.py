"""Verification of a certificate a CA issued for a grant (design invariant 2).

Every failure is a ``CertificateRejected`` with a one-line reason safe to show
the peer; library detail goes to ``cause`` for the log.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from federation.errors import CertificateRejected
from federation.pki.der import decode_utf8string
from federation.pki.fields import equal_text, is_canonical_uuid
from federation.pki.fingerprints import fingerprint_sha256, public_key_der
from federation.pki.oids import GRANT_ID_OID, SUBJECT_USER_ID_OID

_EXTENSION_PARSE_ERRORS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)

# The library's client verifier follows the Web PKI profile, which demands a SAN
# on the leaf. Our identity is in the Mosaic OIDs, and a step-ca template may
# leave the SAN out, so it is optional here; everything else (AKI, chain,
# basicConstraints, keyUsage, pathlen, critical extensions) stays the default.
_LEAF_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)


@dataclass(frozen=True)
class VerifiedCertificate:
    serial: str
    not_after: datetime
    not_before: datetime
    fingerprint_sha256: str
    grant_id: str
    subject_user_id: str
    common_name: str


def load_certificate(pem: str) -> x509.Certificate:
    """Parse exactly one PEM certificate; raise ``CertificateRejected`` otherwise."""
    certificates = _load_pem_certificates(pem, what="issued certificate")
    if len(certificates) != 1:
        raise CertificateRejected("issued certificate PEM must hold exactly one certificate")
    return certificates[0]


def serial_hex(cert: x509.Certificate) -> str:
    """Return the serial number as lowercase hex without a prefix."""
    return format(cert.serial_number, "x")


def cert_not_after(cert: x509.Certificate) -> datetime:
    """Return notAfter as a tz-aware UTC datetime; never a default (invariant 6)."""
    try:
        not_after = cert.not_valid_after_utc
    except ValueError as exc:
        raise CertificateRejected(
            "issued certificate has an unreadable expiry", cause=str(exc)
        ) from None
    if not_after.tzinfo is None:
        raise CertificateRejected("issued certificate has an unreadable expiry")
    return not_after


def read_mosaic_oids(cert: x509.Certificate) -> tuple[str, str]:
    """Return (grant id, subject user id) from the two Mosaic extensions.

    Each must be present, unrecognised by the library (so it carries raw DER),
    a strict DER UTF8String, and a canonical lowercase UUID.
    """
    grant_id = _read_uuid_extension(cert, GRANT_ID_OID, "grant id")
    subject_user_id = _read_uuid_extension(cert, SUBJECT_USER_ID_OID, "subject user id")
    return grant_id, subject_user_id


def verify_issued_certificate(
    cert_pem: str,
    chain_pem: str,
    *,
    roots: list[x509.Certificate] | None,
    expected_grant_id: str | None,
    expected_subject_user_id: str | None,
    expected_public_key_der: bytes,
    at: datetime | None = None,
    require_chain: bool = True,
) -> VerifiedCertificate:
    """Check an issued certificate against its grant and the trust anchor.

    The certificate must be a currently valid non-CA client certificate, leaf +
    ``chain_pem`` intermediates must chain to one of ``roots``, both Mosaic OIDs
    must equal the grant's id and subject user, and the key must be the CSR's
    key. Raises ``CertificateRejected`` with a one-line reason.

    The requesting gateway does not hold the remote's root: with ``roots=None``
    the chain must be internally consistent (each certificate signed by the
    next, intermediates are valid CAs). With an expected id of ``None`` the OID
    must still be present and a canonical UUID (the manual ``PATCH …/cert`` path,
    which may also come without a chain: ``require_chain=False``).
    """
    leaf = load_certificate(cert_pem)
    intermediates = _load_chain(chain_pem)
    now = _as_utc(at) if at is not None else datetime.now(UTC)

    # Profile and dates first so these failures get their own reason rather
    # than the chain verifier's generic one.
    _check_client_leaf(leaf)
    not_before, not_after = _validity(leaf)
    if now < not_before:
        raise CertificateRejected("issued certificate is not yet valid")
    if now > not_after:
        raise CertificateRejected("issued certificate has expired")

    # The chain before the OIDs and key: an untrusted certificate's contents
    # mean nothing, and the audit should say "wrong CA", not "wrong grant".
    if require_chain or intermediates or roots is not None:
        _check_chain(leaf, intermediates, roots, now)

    grant_id, subject_user_id = read_mosaic_oids(leaf)
    if expected_grant_id is not None and not equal_text(grant_id, expected_grant_id):
        raise CertificateRejected("issued certificate grant id OID does not match the grant")
    if expected_subject_user_id is not None and not equal_text(
        subject_user_id, expected_subject_user_id
    ):
        raise CertificateRejected(
            "issued certificate subject user id OID does not match the grant's subject user"
        )
    _check_public_key(leaf, expected_public_key_der)

    return VerifiedCertificate(
        serial=serial_hex(leaf),
        not_after=not_after,
        not_before=not_before,
        fingerprint_sha256=fingerprint_sha256(leaf.public_bytes(serialization.Encoding.DER)),
        grant_id=grant_id,
        subject_user_id=subject_user_id,
        common_name=_common_name(leaf),
    )


def verify_client_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
    at: datetime,
) -> None:
    """A presented client certificate chains to one of ``roots`` and every certificate
    on the path is valid at ``at``; ``CertificateRejected`` otherwise."""
    _check_client_leaf(leaf)
    _check_chain(leaf, intermediates, roots, at)


def load_chain(chain_pem: str) -> list[x509.Certificate]:
    """The certificates of a PEM bundle (empty text: none); ``CertificateRejected`` if garbled."""
    return _load_chain(chain_pem)


def _load_pem_certificates(pem: object, *, what: str) -> list[x509.Certificate]:
    if not isinstance(pem, str):
        raise CertificateRejected(f"{what} is not a PEM string")
    try:
        return x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CertificateRejected(f"{what} could not be parsed", cause=str(exc)) from None


def _load_chain(chain_pem: str) -> list[x509.Certificate]:
    if isinstance(chain_pem, str) and not chain_pem.strip():
        return []
    return _load_pem_certificates(chain_pem, what="certificate chain")


def _read_uuid_extension(cert: x509.Certificate, oid: x509.ObjectIdentifier, label: str) -> str:
    try:
        extension = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        raise CertificateRejected(f"issued certificate is missing the {label} OID") from None
    except _EXTENSION_PARSE_ERRORS as exc:
        raise CertificateRejected(
            "issued certificate extensions could not be parsed", cause=str(exc)
        ) from None
    if not isinstance(extension.value, x509.UnrecognizedExtension):
        raise CertificateRejected(f"issued certificate {label} OID has an unexpected form")
    try:
        value = decode_utf8string(extension.value.value)
    except ValueError as exc:
        raise CertificateRejected(
            f"issued certificate {label} OID is not a DER UTF8String", cause=str(exc)
        ) from None
    if not is_canonical_uuid(value):
        raise CertificateRejected(f"issued certificate {label} OID is not a canonical UUID")
    return value


def _check_public_key(leaf: x509.Certificate, expected_public_key_der: bytes) -> None:
    try:
        actual = public_key_der(leaf.public_key())
    except Exception as exc:  # unsupported key algorithms raise several types
        raise CertificateRejected(
            "issued certificate public key could not be read", cause=str(exc)
        ) from None
    if not hmac.compare_digest(actual, expected_public_key_der):
        raise CertificateRejected("issued certificate public key does not match the CSR")


def _check_client_leaf(leaf: x509.Certificate) -> None:
    try:
        extensions = leaf.extensions
    except _EXTENSION_PARSE_ERRORS as exc:
        raise CertificateRejected(
            "issued certificate extensions could not be parsed", cause=str(exc)
        ) from None
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise CertificateRejected("issued certificate is a CA certificate")
    try:
        usages = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is None or ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise CertificateRejected("issued certificate is not valid for client authentication")


def _validity(leaf: x509.Certificate) -> tuple[datetime, datetime]:
    not_after = cert_not_after(leaf)
    try:
        not_before = leaf.not_valid_before_utc
    except ValueError as exc:
        raise CertificateRejected(
            "issued certificate has an unreadable start date", cause=str(exc)
        ) from None
    return not_before, not_after


def _check_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate] | None,
    at: datetime,
) -> None:
    if roots is None:
        _check_chain_consistent(leaf, intermediates, at)
        return
    if not roots:
        raise CertificateRejected("no trusted root certificate is configured")
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(at)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_LEAF_POLICY)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise CertificateRejected(
            "issued certificate does not chain to the trusted root", cause=str(exc)
        ) from None


def _check_chain_consistent(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], at: datetime
) -> None:
    if not intermediates:
        raise CertificateRejected("certificate chain is missing the issuing CA")
    child = leaf
    for issuer in intermediates:
        try:
            constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except (x509.ExtensionNotFound, *_EXTENSION_PARSE_ERRORS):
            constraints = None
        if constraints is None or not constraints.ca:
            raise CertificateRejected("certificate chain holds a certificate that is not a CA")
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CertificateRejected(
                "certificate chain is not consistent", cause=str(exc)
            ) from None
        not_before, not_after = _validity(issuer)
        if not not_before <= at <= not_after:
            raise CertificateRejected("certificate chain holds an expired CA certificate")
        child = issuer


def _common_name(leaf: x509.Certificate) -> str:
    attributes = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attributes) != 1 or not isinstance(attributes[0].value, str):
        raise CertificateRejected("issued certificate must have exactly one common name")
    return attributes[0].value


def _as_utc(at: datetime) -> datetime:
    # A naive time is taken as UTC, like the library's own verifier does.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
