"""StepCA against a real step-ca 0.19 built from Debian's source."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import ssl
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from federation.ca.base import IssuedCertificate, IssueRequest
from federation.ca.builtin import BuiltinCA
from federation.ca.stepca import StepCA
from federation.ca.stepca_init import init_step_ca, jwk_thumbprint
from federation.errors import CARefused, CAUnavailable
from federation.pki.oids import GRANT_ID_OID, SUBJECT_USER_ID_OID
from tests.support.stepca import REPO_ROOT, ROGUE_TEMPLATE, StepCAServer

pytestmark = pytest.mark.stepca


@pytest.fixture(scope="session")
def stepca_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepCAServer]:
    server = StepCAServer(tmp_path_factory.mktemp("stepca"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def stepca(stepca_server: StepCAServer) -> AsyncIterator[StepCA]:
    provider = stepca_server.provider()
    yield provider
    await provider.aclose()


@pytest.fixture(scope="session")
def rogue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepCAServer]:
    directory = tmp_path_factory.mktemp("rogue-stepca")
    template = directory / "rogue.tpl"
    template.write_text(ROGUE_TEMPLATE, encoding="utf-8")
    server = StepCAServer(directory / "ca", template_path=template)
    server.start()
    yield server
    server.stop()


def make_csr(cn: str = "peer-a.example") -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii"), key


def make_request(csr_pem: str) -> IssueRequest:
    return IssueRequest(
        csr_pem=csr_pem, grant_id=str(uuid.uuid4()), subject_user_id=str(uuid.uuid4())
    )


def utf8_der(value: str) -> bytes:
    raw = value.encode("utf-8")
    return b"\x0c" + bytes([len(raw)]) + raw


def mint_ott(server: StepCAServer, *, audience: str, subject: str, **claims: Any) -> str:
    """An OTT built here, independently of StepCA, to probe what step-ca itself checks."""
    jwk = json.loads(server.files.provisioner_key_json.read_text(encoding="utf-8"))
    key = jwt.algorithms.ECAlgorithm.from_jwk(jwk)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = int(time.time())
    payload = {
        "iss": "mosaic-fed",
        "aud": f"{server.url}{audience}",
        "sub": subject,
        "jti": secrets.token_hex(16),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        **claims,
    }
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": jwk["kid"]})


def raw_client(server: StepCAServer) -> httpx.AsyncClient:
    tls = ssl.create_default_context(cafile=str(server.files.root_cert))
    return httpx.AsyncClient(base_url=server.url, verify=tls, timeout=5.0)


async def test_issued_certificate_carries_grant_and_subject_user(stepca: StepCA) -> None:
    csr_pem, key = make_csr()
    request = make_request(csr_pem)

    issued = await stepca.issue(request)

    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    grant_ext = cert.extensions.get_extension_for_oid(GRANT_ID_OID)
    user_ext = cert.extensions.get_extension_for_oid(SUBJECT_USER_ID_OID)
    assert isinstance(grant_ext.value, x509.UnrecognizedExtension)
    assert isinstance(user_ext.value, x509.UnrecognizedExtension)
    assert grant_ext.value.value == utf8_der(request.grant_id)
    assert user_ext.value.value == utf8_der(request.subject_user_id)
    assert not grant_ext.critical and not user_ext.critical

    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == (
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    )
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "peer-a.example"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["peer-a.example"]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.DER, spki) == (
        key.public_key().public_bytes(serialization.Encoding.DER, spki)
    )
    assert issued.serial == format(cert.serial_number, "x")
    # The provider asks for its configured lifetime (24 h by default, MOSAIC_CERT_LIFETIME_SECONDS);
    # notBefore is backdated a minute for peers whose clock is behind.
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime - dt.timedelta(hours=24, minutes=1)) <= dt.timedelta(seconds=2)


async def test_issued_certificate_chains_to_the_pinned_root(stepca: StepCA) -> None:
    csr_pem, _ = make_csr()
    issued = await stepca.issue(make_request(csr_pem))

    leaf = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    intermediates = x509.load_pem_x509_certificates(issued.chain_pem.encode())
    roots = stepca.root_certificates()
    assert len(intermediates) == 1
    assert intermediates[0].fingerprint(hashes.SHA256()) not in {
        root.fingerprint(hashes.SHA256()) for root in roots
    }
    verifier = PolicyBuilder().store(Store(roots)).build_client_verifier()
    verified = verifier.verify(leaf, intermediates)
    assert verified.chain[-1] == roots[0]


async def test_ott_is_fresh_es256_with_the_documented_claims(
    stepca_server: StepCAServer,
) -> None:
    seen: list[str] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["ott"])
        return httpx.Response(400, json={"status": 400, "message": "captured"})

    provider = stepca_server.provider()
    await provider.aclose()
    provider._client = httpx.AsyncClient(
        transport=httpx.MockTransport(capture), base_url=stepca_server.url
    )
    csr_pem, _ = make_csr()
    request = make_request(csr_pem)
    for _ in range(2):
        with pytest.raises(CARefused):
            await provider.issue(request)
    await provider.aclose()

    config = json.loads(stepca_server.files.ca_json.read_text(encoding="utf-8"))
    public_jwk = config["authority"]["provisioners"][0]["key"]
    public_key = jwt.algorithms.ECAlgorithm.from_jwk(public_jwk)
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert jwt.get_unverified_header(seen[0])["kid"] == jwk_thumbprint(public_jwk)
    claims = jwt.decode(
        seen[0], public_key, algorithms=["ES256"], audience=f"{stepca_server.url}/1.0/sign"
    )
    csr_der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    thumb = base64.urlsafe_b64encode(hashlib.sha256(csr_der).digest()).rstrip(b"=").decode()
    assert claims["iss"] == "mosaic-fed"
    assert claims["sub"] == "peer-a.example"
    assert claims["sans"] == ["peer-a.example"]
    assert claims["cnf"] == {"x5rt#S256": thumb}
    assert claims["mosaic_grant_id"] == request.grant_id
    assert claims["mosaic_subject_user_id"] == request.subject_user_id
    assert claims["nbf"] == claims["iat"] and claims["exp"] - claims["iat"] == 300
    assert len(claims["jti"]) == 32
    # A retry never reuses a token: step-ca burns the jti before checking the CSR.
    second = jwt.decode(seen[1], public_key, algorithms=["ES256"], options={"verify_aud": False})
    assert second["jti"] != claims["jti"]


async def test_replayed_ott_is_refused(stepca_server: StepCAServer, stepca: StepCA) -> None:
    csr_pem, _ = make_csr()
    request = make_request(csr_pem)
    ott = mint_ott(
        stepca_server,
        audience="/1.0/sign",
        subject="peer-a.example",
        sans=["peer-a.example"],
        mosaic_grant_id=request.grant_id,
        mosaic_subject_user_id=request.subject_user_id,
    )
    async with raw_client(stepca_server) as http:
        first = await http.post("/1.0/sign", json={"csr": csr_pem, "ott": ott})
        second = await http.post("/1.0/sign", json={"csr": csr_pem, "ott": ott})
    assert first.status_code == 201, first.text
    assert second.status_code == 401, second.text

    # The same burnt token through the provider surfaces as CARefused, token-free.
    def burnt_token(**_: object) -> str:
        return ott

    stepca._token = burnt_token  # type: ignore[method-assign]
    try:
        with pytest.raises(CARefused) as refused:
            await stepca.issue(request)
    finally:
        del stepca._token
    assert refused.value.message == "certificate authority refused the request"
    assert "HTTP 401" in (refused.value.cause or "")
    assert ott not in str(refused.value) and ott not in (refused.value.cause or "")


async def test_token_subject_must_match_csr_common_name(stepca_server: StepCAServer) -> None:
    csr_pem, _ = make_csr("peer-a.example")
    ott = mint_ott(
        stepca_server,
        audience="/1.0/sign",
        subject="peer-b.example",
        sans=["peer-a.example"],
        mosaic_grant_id=str(uuid.uuid4()),
        mosaic_subject_user_id=str(uuid.uuid4()),
    )
    async with raw_client(stepca_server) as http:
        response = await http.post("/1.0/sign", json={"csr": csr_pem, "ott": ott})
    assert response.status_code == 403, response.text
    assert "common name" in response.json()["message"]


async def test_token_sans_must_match_csr_sans(stepca_server: StepCAServer) -> None:
    csr_pem, _ = make_csr("peer-a.example")
    ott = mint_ott(
        stepca_server,
        audience="/1.0/sign",
        subject="peer-a.example",
        sans=["peer-b.example"],
        mosaic_grant_id=str(uuid.uuid4()),
        mosaic_subject_user_id=str(uuid.uuid4()),
    )
    async with raw_client(stepca_server) as http:
        response = await http.post("/1.0/sign", json={"csr": csr_pem, "ott": ott})
    assert response.status_code == 403, response.text


async def test_template_refuses_a_token_without_mosaic_claims(
    stepca_server: StepCAServer,
) -> None:
    csr_pem, _ = make_csr()
    ott = mint_ott(
        stepca_server, audience="/1.0/sign", subject="peer-a.example", sans=["peer-a.example"]
    )
    async with raw_client(stepca_server) as http:
        response = await http.post("/1.0/sign", json={"csr": csr_pem, "ott": ott})
    assert response.status_code == 400, response.text
    assert "mosaic_grant_id" in response.json()["message"]


async def test_http_url_is_rejected(stepca_server: StepCAServer) -> None:
    key_json = stepca_server.files.provisioner_key_json.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="https"):
        StepCA(
            stepca_server.url.replace("https://", "http://"),
            key_json,
            stepca_server.files.root_cert,
        )


async def test_public_jwk_is_refused_as_provisioner_key(stepca_server: StepCAServer) -> None:
    jwk = json.loads(stepca_server.files.provisioner_key_json.read_text(encoding="utf-8"))
    del jwk["d"]
    with pytest.raises(ValueError, match="private") as raised:
        StepCA(stepca_server.url, json.dumps(jwk), stepca_server.files.root_cert)
    assert jwk["x"] not in str(raised.value)


@pytest.mark.parametrize(
    ("grant_id", "subject_user_id"),
    [
        ("not-a-uuid", str(uuid.uuid4())),
        (str(uuid.uuid4()), "42"),
        (str(uuid.uuid4()).upper(), str(uuid.uuid4())),
    ],
)
async def test_ids_must_be_canonical_uuids_and_both_providers_refuse_alike(
    stepca: StepCA, grant_id: str, subject_user_id: str, tmp_path: Path
) -> None:
    # One contract (issue 10, hole 9): the same bad input is the same CARefused on both
    # providers, never a ValueError that the workflow would retry as a CA outage.
    csr_pem, _ = make_csr()
    builtin = BuiltinCA.open_or_create(tmp_path / "builtin")
    for provider in (stepca, builtin):
        with pytest.raises(CARefused, match="canonical lowercase UUID"):
            await provider.issue(IssueRequest(csr_pem, grant_id, subject_user_id))
    for provider in (stepca, builtin):
        with pytest.raises(CARefused, match="CSR"):
            await provider.issue(IssueRequest("not a csr", str(uuid.uuid4()), str(uuid.uuid4())))


async def test_tls_is_pinned_to_the_configured_root(
    stepca_server: StepCAServer, rogue_server: StepCAServer
) -> None:
    key_json = stepca_server.files.provisioner_key_json.read_text(encoding="utf-8")
    wrong_pin = StepCA(stepca_server.url, key_json, rogue_server.files.root_cert)
    try:
        csr_pem, _ = make_csr()
        with pytest.raises(CAUnavailable) as unavailable:
            await wrong_pin.issue(make_request(csr_pem))
        assert "CERTIFICATE_VERIFY_FAILED" in (unavailable.value.cause or "")
        with pytest.raises(CAUnavailable):
            await wrong_pin.check_health()
    finally:
        await wrong_pin.aclose()


async def test_check_health_and_root(stepca_server: StepCAServer, stepca: StepCA) -> None:
    await stepca.check_health()
    pinned = x509.load_pem_x509_certificate(stepca_server.files.root_cert.read_bytes())
    assert stepca.root_certificates() == [pinned]


async def test_stopped_ca_is_unavailable_and_recovers_after_restart(
    tmp_path: Path,
) -> None:
    server = StepCAServer(tmp_path / "restart")
    server.start()
    provider = server.provider(timeout=2.0)
    try:
        csr_pem, _ = make_csr()
        await provider.issue(make_request(csr_pem))
        url = server.url

        server.stop()
        with pytest.raises(CAUnavailable) as unavailable:
            await provider.issue(make_request(csr_pem))
        assert unavailable.value.message == "certificate authority unreachable"
        assert unavailable.value.retryable
        with pytest.raises(CAUnavailable):
            await provider.check_health()

        server.start()
        assert server.url == url
        issued = await provider.issue(make_request(csr_pem))
        assert issued.cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    finally:
        await provider.aclose()
        server.stop()


async def renew(server: StepCAServer, issued: IssuedCertificate, key: Any, tmp: Path) -> int:
    """POST /1.0/renew over mTLS: step-ca refuses it for a revoked serial."""
    cert_file = tmp / f"{issued.serial}.pem"
    key_file = tmp / f"{issued.serial}.key"
    cert_file.write_text(issued.cert_pem + issued.chain_pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tls = ssl.create_default_context(cafile=str(server.files.root_cert))
    tls.load_cert_chain(cert_file, key_file)
    async with httpx.AsyncClient(base_url=server.url, verify=tls, timeout=5.0) as http:
        response = await http.post("/1.0/renew")
    return response.status_code


async def test_revoke_is_real_and_idempotent(
    stepca_server: StepCAServer, stepca: StepCA, tmp_path: Path
) -> None:
    csr_pem, key = make_csr()
    kept = await stepca.issue(make_request(csr_pem))
    revoked = await stepca.issue(make_request(csr_pem))

    await stepca.revoke(revoked.serial, reason="test: grant activation lost")
    await stepca.revoke(revoked.serial, reason="test: compensation retried")

    # Renewal checks the revocation table by decimal serial: a wrong serial
    # format would "revoke" nothing and the renewal would still succeed.
    assert await renew(stepca_server, kept, key, tmp_path) == 201
    assert await renew(stepca_server, revoked, key, tmp_path) == 401


async def test_revoke_rejects_a_non_hex_serial(stepca: StepCA) -> None:
    with pytest.raises(CARefused, match="hex"):
        await stepca.revoke("0x1f", reason="test")


async def test_rogue_ca_issues_without_the_oids(rogue_server: StepCAServer) -> None:
    provider = rogue_server.provider()
    try:
        csr_pem, _ = make_csr()
        issued = await provider.issue(make_request(csr_pem))
    finally:
        await provider.aclose()
    cert = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    oids = {ext.oid for ext in cert.extensions}
    assert GRANT_ID_OID not in oids
    assert SUBJECT_USER_ID_OID not in oids


def test_init_is_idempotent_and_keeps_secrets_private(tmp_path: Path) -> None:
    first = init_step_ca(tmp_path / "ca", address="127.0.0.1:19999")
    ca_json = first.ca_json.read_bytes()
    again = init_step_ca(tmp_path / "ca", address="127.0.0.1:1")
    assert again == first
    assert first.ca_json.read_bytes() == ca_json

    secret_dir = first.directory / "secrets"
    assert stat.S_IMODE(secret_dir.stat().st_mode) == 0o700
    for path in secret_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    password = first.password_file.read_bytes().strip()
    for name in ("root_ca_key", "intermediate_ca_key"):
        pem = (secret_dir / name).read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        serialization.load_pem_private_key(pem, password=password)

    config = json.loads(ca_json)
    root = x509.load_pem_x509_certificate(first.root_cert.read_bytes())
    intermediate = x509.load_pem_x509_certificate(first.intermediate_cert.read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert (
        intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        == 0
    )
    intermediate.verify_directly_issued_by(root)
    [provisioner] = config["authority"]["provisioners"]
    assert provisioner["name"] == "mosaic-fed"
    assert "d" not in provisioner["key"]
    assert provisioner["key"]["kid"] == jwk_thumbprint(provisioner["key"])
    assert provisioner["options"]["x509"]["templateFile"] == str(first.template)
    private_jwk = json.loads(first.provisioner_key_json.read_text(encoding="utf-8"))
    assert private_jwk["kid"] == provisioner["key"]["kid"] and "d" in private_jwk


def test_jwk_thumbprint_matches_rfc7638_example_shape() -> None:
    # RFC 7638 section 3.1 orders members lexicographically with no whitespace.
    jwk = {"kty": "EC", "crv": "P-256", "x": "abc", "y": "def", "kid": "ignored"}
    canonical = b'{"crv":"P-256","kty":"EC","x":"abc","y":"def"}'
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    assert jwk_thumbprint(jwk) == expected


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_step_ca_dies_with_a_killed_test_process(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tests.support.stepca import StepCAServer\n"
        "server = StepCAServer(Path(sys.argv[1]))\n"
        "server.start()\n"
        "print(server._process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "orphan")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert runner.stdout is not None
        ca_pid = int(runner.stdout.readline())
        assert _alive(ca_pid)
        runner.kill()
        runner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(ca_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(ca_pid)
    finally:
        if runner.poll() is None:
            runner.kill()
