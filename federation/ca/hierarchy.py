"""The two-level CA both providers start from: a root (pathlen 1) signing an
intermediate (pathlen 0), P-256, keys stored encrypted under a random password."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT_VALIDITY = timedelta(days=3650)
INTERMEDIATE_VALIDITY = timedelta(days=1825)
# Backdated so a host with a slightly slow clock still accepts its own chain.
BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class CAHierarchy:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate


def new_hierarchy() -> CAHierarchy:
    """Fresh keys and certificates for a root and its intermediate."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    root_name = _name("Mosaic Federation Root CA")
    root = _builder(
        subject=root_name,
        issuer=root_name,
        key=root_key,
        signer_key=root_key,
        not_after=now + ROOT_VALIDITY,
        path_length=1,
        now=now,
    ).sign(root_key, hashes.SHA256())
    intermediate = _builder(
        subject=_name("Mosaic Federation Intermediate CA"),
        issuer=root_name,
        key=intermediate_key,
        signer_key=root_key,
        not_after=now + INTERMEDIATE_VALIDITY,
        path_length=0,
        now=now,
    ).sign(root_key, hashes.SHA256())
    return CAHierarchy(root_key, root, intermediate_key, intermediate)


def encrypted_key_pem(key: ec.EllipticCurvePrivateKey, password: bytes) -> bytes:
    """PKCS#8 under PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), which step-ca also reads.

    Its modest PBKDF2 count is harmless: the password is 256 random bits.
    """
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mosaic Federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signer_key: ec.EllipticCurvePrivateKey,
    not_after: datetime,
    path_length: int,
    now: datetime,
) -> x509.CertificateBuilder:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if signer_key is not key:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
    return builder
