from __future__ import annotations

import asyncio
import json
import shutil
import stat
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.ca.base import CertificateAuthority, IssueRequest
from federation.ca.builtin import BuiltinCA
from federation.errors import CARefused, CAUnavailable
from federation.pki.certs import read_mosaic_oids
from federation.pki.oids import GRANT_ID_OID, SUBJECT_USER_ID_OID

CN = "gateway-a.example.com"
CA_FILES = (
    "certs/root_ca.crt",
    "certs/intermediate_ca.crt",
    "secrets/root_ca_key",
    "secrets/intermediate_ca_key",
    "secrets/password",
)


def make_csr_pem(common_name: str = CN, sans: list[str] | None = None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if sans is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def request(csr_pem: str | None = None) -> IssueRequest:
    return IssueRequest(
        csr_pem=csr_pem or make_csr_pem(),
        grant_id=str(uuid.uuid4()),
        subject_user_id=str(uuid.uuid4()),
    )


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


@pytest.fixture
def ca(ca_dir: Path) -> BuiltinCA:
    return BuiltinCA.open_or_create(ca_dir)


def test_builtin_ca_satisfies_the_certificate_authority_interface(ca: BuiltinCA) -> None:
    authority: CertificateAuthority = ca
    assert authority.name == "builtin"


def test_open_or_create_keeps_an_existing_ca(ca_dir: Path, ca: BuiltinCA) -> None:
    before = {name: (ca_dir / name).read_bytes() for name in CA_FILES}
    again = BuiltinCA.open_or_create(ca_dir)
    assert {name: (ca_dir / name).read_bytes() for name in CA_FILES} == before
    assert again.root_certificates() == ca.root_certificates()


def test_ca_files_are_0600_and_directories_0700(ca_dir: Path, ca: BuiltinCA) -> None:
    for name in CA_FILES:
        assert stat.S_IMODE((ca_dir / name).stat().st_mode) == 0o600, name
    for folder in (ca_dir, ca_dir / "certs", ca_dir / "secrets"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_ca_keys_are_encrypted_on_disk(ca_dir: Path, ca: BuiltinCA) -> None:
    password = (ca_dir / "secrets/password").read_bytes().strip()
    for name in ("secrets/root_ca_key", "secrets/intermediate_ca_key"):
        text = (ca_dir / name).read_text()
        assert "BEGIN ENCRYPTED PRIVATE KEY" in text
        assert "BEGIN EC PRIVATE KEY" not in text
        assert "BEGIN PRIVATE KEY" not in text
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(text.encode(), password=None)
        serialization.load_pem_private_key(text.encode(), password=password)


def test_root_and_intermediate_have_the_documented_shape(ca_dir: Path, ca: BuiltinCA) -> None:
    root = x509.load_pem_x509_certificate((ca_dir / "certs/root_ca.crt").read_bytes())
    intermediate = x509.load_pem_x509_certificate(
        (ca_dir / "certs/intermediate_ca.crt").read_bytes()
    )
    assert ca.root_certificates() == [root]
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    inter_bc = intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert inter_bc.ca and inter_bc.path_length == 0
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    intermediate.verify_directly_issued_by(root)
    root_days = (root.not_valid_after_utc - root.not_valid_before_utc).days
    inter_days = (intermediate.not_valid_after_utc - intermediate.not_valid_before_utc).days
    assert 3649 <= root_days <= 3651
    assert 1824 <= inter_days <= 1826


def test_half_present_ca_directory_is_refused_not_overwritten(ca_dir: Path, ca: BuiltinCA) -> None:
    (ca_dir / "secrets/intermediate_ca_key").unlink()
    root_before = (ca_dir / "certs/root_ca.crt").read_bytes()
    with pytest.raises(CAUnavailable, match="incomplete"):
        BuiltinCA.open_or_create(ca_dir)
    assert (ca_dir / "certs/root_ca.crt").read_bytes() == root_before


async def test_issue_returns_a_client_certificate_with_both_oids(ca: BuiltinCA) -> None:
    req = request()
    issued = await ca.issue(req)
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    intermediate = x509.load_pem_x509_certificate(issued.chain_pem.encode())
    cert.verify_directly_issued_by(intermediate)
    assert issued.serial == format(cert.serial_number, "x")
    assert read_mosaic_oids(cert) == (req.grant_id, req.subject_user_id)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CN
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [CN]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for oid in (GRANT_ID_OID, SUBJECT_USER_ID_OID):
        assert not cert.extensions.get_extension_for_oid(oid).critical
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days == 30


async def test_issue_copies_the_csr_sans(ca: BuiltinCA) -> None:
    issued = await ca.issue(request(make_csr_pem(sans=[CN])))
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [CN]


async def test_issue_refuses_a_grant_id_that_is_not_a_uuid(ca: BuiltinCA) -> None:
    req = IssueRequest(
        csr_pem=make_csr_pem(), grant_id="grant-1", subject_user_id=str(uuid.uuid4())
    )
    with pytest.raises(CARefused, match="grant id is not a canonical lowercase UUID"):
        await ca.issue(req)


async def test_issue_refuses_a_non_canonical_subject_user_id(ca: BuiltinCA) -> None:
    req = IssueRequest(
        csr_pem=make_csr_pem(),
        grant_id=str(uuid.uuid4()),
        subject_user_id=str(uuid.uuid4()).upper(),
    )
    with pytest.raises(CARefused, match="subject user id"):
        await ca.issue(req)


async def test_issue_refuses_a_csr_with_a_bad_signature(ca: BuiltinCA) -> None:
    csr = x509.load_pem_x509_csr(make_csr_pem().encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CARefused, match="signature"):
        await ca.issue(request(pem))


async def test_issue_refuses_garbage_csr(ca: BuiltinCA) -> None:
    with pytest.raises(CARefused, match="could not be parsed"):
        await ca.issue(request("not a csr"))


async def test_issue_honours_the_validity_argument(ca_dir: Path, ca: BuiltinCA) -> None:
    short = BuiltinCA.open_or_create(ca_dir, validity=timedelta(days=2))
    cert = x509.load_pem_x509_certificate((await short.issue(request())).cert_pem.encode())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 2


async def test_revoke_records_the_serial_and_is_revoked_reports_it(
    ca_dir: Path, ca: BuiltinCA
) -> None:
    issued = await ca.issue(request())
    assert not ca.is_revoked(issued.serial)
    await ca.revoke(issued.serial, reason="oid mismatch")
    assert ca.is_revoked(issued.serial)
    document = json.loads((ca_dir / "revoked.json").read_text())
    entry = document["revoked"][issued.serial]
    assert entry["reason"] == "oid mismatch"
    assert entry["revoked_at"]
    assert stat.S_IMODE((ca_dir / "revoked.json").stat().st_mode) == 0o600
    assert BuiltinCA.open_or_create(ca_dir).is_revoked(issued.serial)


async def test_revoke_is_idempotent_and_keeps_the_first_record(ca_dir: Path, ca: BuiltinCA) -> None:
    issued = await ca.issue(request())
    await ca.revoke(issued.serial, reason="first")
    await ca.revoke(issued.serial, reason="second")
    document = json.loads((ca_dir / "revoked.json").read_text())
    assert document["revoked"][issued.serial]["reason"] == "first"
    leftovers = await asyncio.to_thread(lambda: list(ca_dir.glob(".revoked.json.*")))
    assert leftovers == []


async def test_concurrent_revokes_all_land(ca: BuiltinCA) -> None:
    serials = [format(n, "x") for n in range(1, 21)]
    await asyncio.gather(*(ca.revoke(s, reason="bulk") for s in serials))
    assert all(ca.is_revoked(s) for s in serials)


async def test_revoke_refuses_a_serial_that_is_not_lowercase_hex(ca: BuiltinCA) -> None:
    with pytest.raises(CARefused, match="lowercase hex"):
        await ca.revoke("ABC", reason="x")


async def test_twenty_concurrent_issues_give_twenty_distinct_serials(ca: BuiltinCA) -> None:
    issued = await asyncio.gather(*(ca.issue(request()) for _ in range(20)))
    assert len({cert.serial for cert in issued}) == 20


async def test_check_health_passes_then_fails_when_the_directory_vanishes(
    ca_dir: Path, ca: BuiltinCA
) -> None:
    await ca.check_health()
    shutil.rmtree(ca_dir)
    with pytest.raises(CAUnavailable):
        await ca.check_health()
