from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.ca.base import IssuedCertificate, IssueRequest
from federation.ca.builtin import BuiltinCA
from federation.errors import CertificateRejected
from federation.pki.certs import (
    VerifiedCertificate,
    cert_not_after,
    load_certificate,
    read_mosaic_oids,
    verify_issued_certificate,
)
from federation.pki.der import encode_utf8string
from federation.pki.fingerprints import fingerprint_sha256, public_key_der
from federation.pki.oids import GRANT_ID_OID, SUBJECT_USER_ID_OID

CN = "gateway-a.example.com"


@dataclass(frozen=True)
class Enrollment:
    key: ec.EllipticCurvePrivateKey
    grant_id: str
    subject_user_id: str
    issued: IssuedCertificate

    @property
    def key_der(self) -> bytes:
        return public_key_der(self.key.public_key())


def make_csr_pem(key: ec.EllipticCurvePrivateKey) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def enroll(
    ca: BuiltinCA, *, grant_id: str | None = None, user_id: str | None = None
) -> Enrollment:
    key = ec.generate_private_key(ec.SECP256R1())
    grant_id = grant_id or str(uuid.uuid4())
    user_id = user_id or str(uuid.uuid4())
    issued = await ca.issue(IssueRequest(make_csr_pem(key), grant_id, user_id))
    return Enrollment(key, grant_id, user_id, issued)


def verify(
    ca: BuiltinCA,
    enrollment: Enrollment,
    *,
    cert_pem: str | None = None,
    chain_pem: str | None = None,
    roots: list[x509.Certificate] | None = None,
    expected_grant_id: str | None = None,
    expected_subject_user_id: str | None = None,
    expected_public_key_der: bytes | None = None,
    at: datetime | None = None,
) -> VerifiedCertificate:
    """Verify ``enrollment`` as the redeem flow would, with any argument overridden."""
    return verify_issued_certificate(
        enrollment.issued.cert_pem if cert_pem is None else cert_pem,
        enrollment.issued.chain_pem if chain_pem is None else chain_pem,
        roots=ca.root_certificates() if roots is None else roots,
        expected_grant_id=expected_grant_id or enrollment.grant_id,
        expected_subject_user_id=expected_subject_user_id or enrollment.subject_user_id,
        expected_public_key_der=expected_public_key_der or enrollment.key_der,
        at=at,
    )


def rejected(ca: BuiltinCA, enrollment: Enrollment, match: str, **overrides: Any) -> None:
    with pytest.raises(CertificateRejected, match=match) as info:
        verify(ca, enrollment, **overrides)
    assert "\n" not in info.value.message


def intermediate_key(ca_dir: Path) -> ec.EllipticCurvePrivateKey:
    password = (ca_dir / "secrets/password").read_bytes().strip()
    key = serialization.load_pem_private_key(
        (ca_dir / "secrets/intermediate_ca_key").read_bytes(), password=password
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def forge_leaf(
    ca_dir: Path,
    *,
    public_key: ec.EllipticCurvePublicKey,
    grant_id: str | None,
    user_id: str | None,
    not_before: datetime,
    not_after: datetime,
    raw_grant_value: bytes | None = None,
    client_auth: bool = True,
    with_san: bool = True,
) -> str:
    """Sign a leaf by hand with the real intermediate key."""
    intermediate = x509.load_pem_x509_certificate(
        (ca_dir / "certs/intermediate_ca.crt").read_bytes()
    )
    eku = ExtendedKeyUsageOID.CLIENT_AUTH if client_auth else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)]))
        .issuer_name(intermediate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                intermediate_key(ca_dir).public_key()
            ),
            critical=False,
        )
    )
    if with_san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(CN)]), critical=False
        )
    if raw_grant_value is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(GRANT_ID_OID, raw_grant_value), critical=False
        )
    elif grant_id is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(GRANT_ID_OID, encode_utf8string(grant_id)), critical=False
        )
    if user_id is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(SUBJECT_USER_ID_OID, encode_utf8string(user_id)),
            critical=False,
        )
    cert = builder.sign(intermediate_key(ca_dir), hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def forged_enrollment(ca_dir: Path, good: Enrollment, **kwargs: object) -> Enrollment:
    now = datetime.now(UTC)
    options: dict[str, object] = {
        "public_key": good.key.public_key(),
        "grant_id": good.grant_id,
        "user_id": good.subject_user_id,
        "not_before": now - timedelta(minutes=1),
        "not_after": now + timedelta(days=1),
    }
    options.update(kwargs)
    cert_pem = forge_leaf(ca_dir, **options)  # type: ignore[arg-type]
    issued = IssuedCertificate(cert_pem, good.issued.chain_pem, "0")
    return Enrollment(good.key, good.grant_id, good.subject_user_id, issued)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


@pytest.fixture
def ca(ca_dir: Path) -> BuiltinCA:
    return BuiltinCA.open_or_create(ca_dir)


@pytest.fixture
async def good(ca: BuiltinCA) -> Enrollment:
    return await enroll(ca)


def test_a_good_certificate_verifies(ca: BuiltinCA, good: Enrollment) -> None:
    result = verify(ca, good)
    cert = x509.load_pem_x509_certificate(good.issued.cert_pem.encode())
    assert result == VerifiedCertificate(
        serial=good.issued.serial,
        not_after=cert.not_valid_after_utc,
        not_before=cert.not_valid_before_utc,
        fingerprint_sha256=fingerprint_sha256(cert.public_bytes(serialization.Encoding.DER)),
        grant_id=good.grant_id,
        subject_user_id=good.subject_user_id,
        common_name=CN,
    )


def test_not_after_comes_from_the_certificate(ca: BuiltinCA, good: Enrollment) -> None:
    cert = load_certificate(good.issued.cert_pem)
    assert cert_not_after(cert) == cert.not_valid_after_utc
    assert cert_not_after(cert).tzinfo is not None
    assert verify(ca, good).not_after == cert.not_valid_after_utc


def test_read_mosaic_oids_returns_grant_and_user(good: Enrollment) -> None:
    cert = load_certificate(good.issued.cert_pem)
    assert read_mosaic_oids(cert) == (good.grant_id, good.subject_user_id)


async def test_a_certificate_from_an_unrelated_ca_fails_the_chain(
    tmp_path: Path, ca: BuiltinCA
) -> None:
    other_ca = BuiltinCA.open_or_create(tmp_path / "other")
    foreign = await enroll(other_ca)
    rejected(ca, foreign, "does not chain to the trusted root")


async def test_a_foreign_certificate_for_another_grant_is_reported_as_a_chain_failure(
    tmp_path: Path, ca: BuiltinCA, good: Enrollment
) -> None:
    foreign = await enroll(BuiltinCA.open_or_create(tmp_path / "other"))
    rejected(ca, foreign, "does not chain to the trusted root", expected_grant_id=good.grant_id)


def test_a_leaf_without_san_verifies_because_identity_is_in_the_oids(
    ca_dir: Path, ca: BuiltinCA, good: Enrollment
) -> None:
    # The library's Web PKI client profile would demand a SAN; ours does not.
    forged = forged_enrollment(ca_dir, good, with_san=False)
    assert verify(ca, forged).grant_id == good.grant_id


async def test_an_unrelated_chain_is_not_rescued_by_our_intermediate(
    tmp_path: Path, ca: BuiltinCA, good: Enrollment
) -> None:
    other_ca = BuiltinCA.open_or_create(tmp_path / "other")
    foreign = await enroll(other_ca)
    rejected(ca, foreign, "does not chain to the trusted root", chain_pem=good.issued.chain_pem)


def test_a_certificate_without_its_intermediate_fails_the_chain(
    ca: BuiltinCA, good: Enrollment
) -> None:
    rejected(ca, good, "does not chain to the trusted root", chain_pem="")


def test_no_configured_root_fails(ca: BuiltinCA, good: Enrollment) -> None:
    rejected(ca, good, "no trusted root", roots=[])


def test_a_certificate_missing_the_grant_oid_fails(
    ca_dir: Path, ca: BuiltinCA, good: Enrollment
) -> None:
    forged = forged_enrollment(ca_dir, good, grant_id=None)
    rejected(ca, forged, "missing the grant id OID")


def test_a_certificate_missing_the_subject_user_oid_fails(
    ca_dir: Path, ca: BuiltinCA, good: Enrollment
) -> None:
    forged = forged_enrollment(ca_dir, good, user_id=None)
    rejected(ca, forged, "missing the subject user id OID")


async def test_a_certificate_for_another_grant_fails(ca: BuiltinCA, good: Enrollment) -> None:
    other = await enroll(ca, user_id=good.subject_user_id)
    rejected(ca, other, "grant id OID does not match the grant", expected_grant_id=good.grant_id)


async def test_a_certificate_for_another_user_fails(ca: BuiltinCA, good: Enrollment) -> None:
    other = await enroll(ca, grant_id=good.grant_id)
    rejected(
        ca,
        other,
        "subject user id OID does not match",
        expected_subject_user_id=good.subject_user_id,
    )


def test_a_grant_oid_that_is_not_a_utf8string_fails(
    ca_dir: Path, ca: BuiltinCA, good: Enrollment
) -> None:
    # PrintableString (0x13) instead of UTF8String.
    raw = b"\x13\x24" + good.grant_id.encode()
    forged = forged_enrollment(ca_dir, good, raw_grant_value=raw)
    rejected(ca, forged, "grant id OID is not a DER UTF8String")


def test_a_grant_oid_with_an_uppercase_uuid_fails(
    ca_dir: Path, ca: BuiltinCA, good: Enrollment
) -> None:
    forged = forged_enrollment(ca_dir, good, grant_id=good.grant_id.upper())
    rejected(ca, forged, "grant id OID is not a canonical UUID")


async def test_a_certificate_for_another_key_fails(ca: BuiltinCA, good: Enrollment) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    rejected(
        ca,
        good,
        "public key does not match the CSR",
        expected_public_key_der=public_key_der(other_key.public_key()),
    )


def test_an_expired_certificate_fails(ca_dir: Path, ca: BuiltinCA, good: Enrollment) -> None:
    now = datetime.now(UTC)
    forged = forged_enrollment(
        ca_dir, good, not_before=now - timedelta(days=10), not_after=now - timedelta(days=1)
    )
    rejected(ca, forged, "has expired")


def test_a_not_yet_valid_certificate_fails(ca_dir: Path, ca: BuiltinCA, good: Enrollment) -> None:
    now = datetime.now(UTC)
    forged = forged_enrollment(
        ca_dir, good, not_before=now + timedelta(days=1), not_after=now + timedelta(days=2)
    )
    rejected(ca, forged, "not yet valid")


def test_a_good_certificate_checked_after_its_expiry_fails(ca: BuiltinCA, good: Enrollment) -> None:
    rejected(ca, good, "has expired", at=datetime.now(UTC) + timedelta(days=31))


def test_a_certificate_without_client_auth_fails(
    ca_dir: Path, ca: BuiltinCA, good: Enrollment
) -> None:
    forged = forged_enrollment(ca_dir, good, client_auth=False)
    rejected(ca, forged, "not valid for client authentication")


def test_the_intermediate_presented_as_leaf_fails(ca: BuiltinCA, good: Enrollment) -> None:
    rejected(ca, good, "is a CA certificate", cert_pem=good.issued.chain_pem)


def test_garbage_pem_fails(ca: BuiltinCA, good: Enrollment) -> None:
    rejected(ca, good, "issued certificate could not be parsed", cert_pem="garbage")
    with pytest.raises(CertificateRejected, match="could not be parsed"):
        load_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_garbage_chain_fails(ca: BuiltinCA, good: Enrollment) -> None:
    rejected(ca, good, "certificate chain could not be parsed", chain_pem="garbage")


def test_two_certificates_as_the_leaf_fail(ca: BuiltinCA, good: Enrollment) -> None:
    pem = good.issued.cert_pem + good.issued.chain_pem
    rejected(ca, good, "exactly one certificate", cert_pem=pem)
