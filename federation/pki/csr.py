"""Checks a peer's CSR before any token is claimed or any CA is called.

Every rejection is an ``InvalidCSR`` whose message is one line, safe to send
back to the remote peer, and never echoes more of the CSR than it must.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from federation.errors import InvalidCSR
from federation.pki.fields import equal_text
from federation.pki.fingerprints import fingerprint_sha256, public_key_der

# P-521 is left out although X.509 allows it: the Mozilla root store policy and
# BoringSSL-based TLS stacks accept only P-256 and P-384, so a P-521 client
# certificate could fail mTLS at a peer long after enrollment succeeded.
_ALLOWED_CURVES = frozenset({ec.SECP256R1.name, ec.SECP384R1.name})
_RSA_MIN_BITS = 2048
_RSA_MAX_BITS = 8192
# ub-common-name in RFC 5280.
_MAX_COMMON_NAME = 64
_MAX_OID_IN_MESSAGE = 64
_KEY_POLICY = "EC P-256, EC P-384 or RSA 2048-8192"
# SHA-1 and MD5 have practical collisions; SHA-224 is below what we promise. Ed25519 CSRs
# carry no separate hash (None) and are refused by their key type instead.
_ALLOWED_SIGNATURE_HASHES = frozenset({"sha256", "sha384", "sha512"})
_SIGNATURE_NOT_ALLOWED = "CSR signature algorithm not allowed (use SHA-256 or better)"

_BEGIN = re.compile(r"-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----")
_END = re.compile(r"-----END (?:NEW )?CERTIFICATE REQUEST-----")
_PEM_BEGIN_ANY = "-----BEGIN "

# Extensions a peer may ask for; the CA decides their final values anyway.
_ALLOWED_EXTENSIONS: tuple[type[x509.ExtensionType], ...] = (
    x509.SubjectAlternativeName,
    x509.KeyUsage,
    x509.ExtendedKeyUsage,
    x509.BasicConstraints,
)


@dataclass(frozen=True)
class CheckedCSR:
    pem: str
    common_name: str
    sans: tuple[str, ...]
    # SubjectPublicKeyInfo DER of the CSR's key: the issued certificate must carry it.
    public_key_der: bytes
    # SHA-256 hex of the CSR DER: identifies the CSR that claimed a token.
    fingerprint: str


def check_csr(
    pem: str,
    *,
    expected_common_name: str | None = None,
    max_bytes: int = 16384,
) -> CheckedCSR:
    """Parse and vet a PEM CSR; raise ``InvalidCSR`` with a one-line reason.

    Accepted: a single PEM certificate request with a valid self-signature over
    SHA-256, SHA-384 or SHA-512, an EC P-256/P-384 or RSA 2048-8192 key, exactly
    one non-empty common name of at most 64 characters (equal to
    ``expected_common_name`` when given), DNS SANs that are absent or exactly
    ``[common name]``, and no extensions besides SAN, keyUsage, extKeyUsage and
    a non-CA basicConstraints.
    """
    csr = _parse(pem, max_bytes)

    # Before the signature check: a valid SHA-1 signature must not read as a broken one.
    _check_signature_algorithm(csr)
    if not _signature_is_valid(csr):
        raise InvalidCSR("CSR signature is invalid")
    key = _public_key(csr)
    _check_key(key)
    sans = _check_extensions(csr)
    common_name = _common_name(csr)

    if expected_common_name is not None and not equal_text(common_name, expected_common_name):
        raise InvalidCSR("CSR common name does not match the peer's common name")
    if sans and (len(sans) != 1 or not equal_text(sans[0], common_name)):
        raise InvalidCSR("CSR subject alternative names must be exactly the common name")

    return CheckedCSR(
        pem=pem,
        common_name=common_name,
        sans=sans,
        public_key_der=public_key_der(key),
        fingerprint=fingerprint_sha256(csr.public_bytes(serialization.Encoding.DER)),
    )


def _parse(pem: object, max_bytes: int) -> x509.CertificateSigningRequest:
    if not isinstance(pem, str):
        raise InvalidCSR("CSR must be a PEM string")
    # A character is at least one byte, so this bounds the work before encoding.
    if len(pem) > max_bytes:
        raise InvalidCSR(f"CSR is larger than {max_bytes} bytes")
    try:
        data = pem.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCSR("CSR is not valid text") from None
    if len(data) > max_bytes:
        raise InvalidCSR(f"CSR is larger than {max_bytes} bytes")
    if pem.count(_PEM_BEGIN_ANY) != 1 or _BEGIN.search(pem) is None:
        raise InvalidCSR("CSR is not a single PEM certificate request")
    if _END.search(pem) is None:
        raise InvalidCSR("CSR PEM is truncated")
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError:
        raise InvalidCSR("CSR could not be parsed") from None


def _check_signature_algorithm(csr: x509.CertificateSigningRequest) -> None:
    try:
        algorithm = csr.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError):
        raise InvalidCSR(_SIGNATURE_NOT_ALLOWED) from None
    if algorithm is not None and algorithm.name not in _ALLOWED_SIGNATURE_HASHES:
        raise InvalidCSR(_SIGNATURE_NOT_ALLOWED)


def _signature_is_valid(csr: x509.CertificateSigningRequest) -> bool:
    try:
        return csr.is_signature_valid
    # A signature algorithm the library cannot check is as bad as a wrong one.
    except Exception:
        return False


def _public_key(csr: x509.CertificateSigningRequest) -> PublicKeyTypes:
    try:
        return csr.public_key()
    # Unknown key algorithms surface as several exception types.
    except Exception:
        raise InvalidCSR(f"CSR key type is not allowed (use {_KEY_POLICY})") from None


def _check_key(key: PublicKeyTypes) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _ALLOWED_CURVES:
            raise InvalidCSR(f"CSR EC curve is not allowed (use {_KEY_POLICY})")
        return
    if isinstance(key, rsa.RSAPublicKey):
        if not _RSA_MIN_BITS <= key.key_size <= _RSA_MAX_BITS:
            raise InvalidCSR(
                f"CSR RSA key of {key.key_size} bits is not allowed (use {_KEY_POLICY})"
            )
        return
    raise InvalidCSR(f"CSR key type is not allowed (use {_KEY_POLICY})")


def _check_extensions(csr: x509.CertificateSigningRequest) -> tuple[str, ...]:
    """Reject unwanted extensions; return the requested DNS SANs."""
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise InvalidCSR("CSR extensions could not be parsed") from None

    sans: tuple[str, ...] = ()
    for extension in extensions:
        value = extension.value
        if not isinstance(value, _ALLOWED_EXTENSIONS):
            oid = extension.oid.dotted_string
            shown = oid if len(oid) <= _MAX_OID_IN_MESSAGE else "an unknown OID"
            raise InvalidCSR(f"CSR requests an extension that is not allowed ({shown})")
        if isinstance(value, x509.BasicConstraints) and value.ca:
            raise InvalidCSR("CSR requests a CA certificate")
        if isinstance(value, x509.SubjectAlternativeName):
            if any(not isinstance(name, x509.DNSName) for name in value):
                raise InvalidCSR("CSR subject alternative names must be DNS names only")
            sans = tuple(value.get_values_for_type(x509.DNSName))
            if not sans:
                raise InvalidCSR("CSR subject alternative names must be exactly the common name")
    return sans


def _common_name(csr: x509.CertificateSigningRequest) -> str:
    try:
        attributes = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        raise InvalidCSR("CSR subject could not be parsed") from None
    if len(attributes) != 1:
        raise InvalidCSR("CSR must have exactly one common name")
    value = attributes[0].value
    if not isinstance(value, str) or not value:
        raise InvalidCSR("CSR common name is empty")
    if len(value) > _MAX_COMMON_NAME:
        raise InvalidCSR(f"CSR common name is longer than {_MAX_COMMON_NAME} characters")
    if not value.isprintable():
        raise InvalidCSR("CSR common name contains control characters")
    return value
