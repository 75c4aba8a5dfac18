"""Two real gateways: B registers A and mints a token, A runs `peer add` (M2-5, M2-6).

Each gateway is a real uvicorn server and a real worker on its own database and
task queue; one Temporal dev server. Lanes: B on PostgreSQL with real step-ca and
A on SQLite, then B on SQLite with the built-in CA and A on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment

from federation.ca.base import CertificateAuthority, IssueRequest
from federation.ca.builtin import BuiltinCA
from federation.client_key import open_client_key
from federation.db.migrate import upgrade_async
from federation.pki.certs import read_mosaic_oids
from federation.remote_trust import ca_fingerprint
from federation.sealing import SealedBlobError, Sealer
from tests.conftest import make_settings
from tests.support.dbsnap import fetch_all
from tests.support.factories import MINTED_TOKENS, make_grant, make_token
from tests.support.gateways import Gateway, UvicornServer, running_gateway, wait_for_peer
from tests.support.pki import make_csr
from tests.support.services import create_pg_database, drop_pg_database
from tests.support.stepca import StepCAServer, free_port

SECRET_A = "gateway-a-sealing-secret-0123456789"
SECRET_B = "gateway-b-sealing-secret-0123456789"
MOSAIC = str(Path(sys.executable).parent / "mosaic")
B_FEDERATION_URL = "https://gateway-b.example:8443"


@dataclass
class Pair:
    a: Gateway
    b: Gateway
    a_secret: str
    b_ca: CertificateAuthority


@pytest.fixture(scope="module", params=["B-pg-stepca_A-sqlite", "B-sqlite-builtin_A-pg"])
async def pair(
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pair]:
    pg_name, pg_url = await create_pg_database()
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('two-gw') / 'gw.db'}"
    await upgrade_async(pg_url)
    await upgrade_async(sqlite_url)
    stepca_provider = step_ca.provider()
    if request.param.startswith("B-pg"):
        b_db, b_ca, a_db = pg_url, stepca_provider, sqlite_url
    else:
        b_db, a_db = sqlite_url, pg_url
        b_ca = BuiltinCA.open_or_create(tmp_path_factory.mktemp("b-ca"))
    a_ca = BuiltinCA.open_or_create(tmp_path_factory.mktemp("a-ca"))
    settings = make_settings(
        sqlite_url,
        tmp_path_factory.mktemp("base"),
        temporal_address=temporal_env.client.service_client.config.target_host,
        mosaic_federation_public_url=B_FEDERATION_URL,
    )
    try:
        async with (
            running_gateway(
                "b",
                settings,
                database_url=b_db,
                data_dir=tmp_path_factory.mktemp("b"),
                temporal_env=temporal_env,
                ca=b_ca,
                sealing_secret=SECRET_B,
            ) as b,
            running_gateway(
                "a",
                settings,
                database_url=a_db,
                data_dir=tmp_path_factory.mktemp("a"),
                temporal_env=temporal_env,
                ca=a_ca,
                sealing_secret=SECRET_A,
            ) as a,
        ):
            yield Pair(a, b, SECRET_A, b_ca)
    finally:
        await stepca_provider.aclose()
        await drop_pg_database(pg_name)


async def _b_offers(b: Gateway, cn: str | None = None) -> tuple[dict[str, Any], str]:
    """On B: a user, a pending peer for A's CN, a grant and a token; returns (grant, URL)."""
    grant = await make_grant(b.api, peer=None if cn is None else await _peer(b, cn))
    issued = await make_token(b.api, grant["id"])
    return grant, issued["enrollmentUrl"]


async def _peer(b: Gateway, cn: str) -> dict[str, Any]:
    from tests.support.factories import make_peer

    return await make_peer(b.api, cn)


def _db(engine_url_dialect: str, value: str) -> str:
    return value if engine_url_dialect == "postgresql" else uuid.UUID(value).hex


async def _peer_row(gw: Gateway, peer_id: str) -> dict[str, Any]:
    rows = await fetch_all(
        gw.engine,
        "SELECT * FROM federation_peers WHERE id = :id",
        id=_db(gw.engine.dialect.name, peer_id),
    )
    return rows[0]


async def test_peer_add_leaves_an_active_peer_with_sealed_key_matching_bs_grant(pair: Pair) -> None:
    grant, url = await _b_offers(pair.b)
    started = await pair.a.api.post(
        "/api/admin/federation/peers/enroll", json={"enrollmentUrl": url, "displayName": "B"}
    )
    assert started.status_code == 202, started.text
    peer_id = started.json()["peerId"]
    assert started.json()["workflowId"] == f"peer-add-{peer_id}"
    peer = await wait_for_peer(pair.a, peer_id)
    assert peer["state"] == "active", peer

    row = await _peer_row(pair.a, peer_id)
    # M2-5: the key column holds ciphertext, never a PEM; the URL (token) is wiped.
    assert row["client_key_sealed"].startswith("v1:")
    assert "BEGIN" not in row["client_key_sealed"]
    assert row["enrollment_url_sealed"] is None
    # M2-6: a valid certificate whose OIDs are B's grant and user, for A's own key.
    cert = x509.load_pem_x509_certificate(row["cert_pem"].encode())
    assert read_mosaic_oids(cert) == (grant["id"], grant["subjectUserId"])
    assert datetime.fromisoformat(peer["certNotAfter"]) == cert.not_valid_after_utc  # HIGH-2
    key = open_client_key(
        Sealer(pair.a_secret), _PeerLike(uuid.UUID(peer_id), row["client_key_sealed"])
    )
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == (
        cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    )
    # Both sides agree on the serial.
    b_grant = (await pair.b.api.get(f"/api/admin/federation/grants/{grant['id']}")).json()
    b_peer = (await pair.b.api.get(f"/api/admin/federation/peers/{grant['peerId']}")).json()
    assert b_grant["status"] == "active" and b_peer["state"] == "active"
    assert b_grant["certSerial"] == b_peer["certSerial"] == peer["certSerial"] == row["cert_serial"]
    assert peer["remoteGrantId"] == grant["id"]
    # B's CA root is pinned on A: the fingerprint B announced, the root itself, its listener.
    b_root = pair.b_ca.root_certificates()[0]
    assert peer["remoteCaFingerprint"] == row["remote_ca_fingerprint"] == ca_fingerprint(b_root)
    assert x509.load_pem_x509_certificate(row["remote_ca_pem"].encode()) == b_root
    assert peer["federationUrl"] == row["federation_url"] == B_FEDERATION_URL
    # Audit on both sides.
    a_audit = (await pair.a.api.get("/api/admin/federation/audit", params={"peer": peer_id})).json()
    assert any(e["verb"] == "peer.enroll" and e["outcome"] == "allowed" for e in a_audit)
    b_audit = (
        await pair.b.api.get("/api/admin/federation/audit", params={"grant": grant["id"]})
    ).json()
    assert any(e["verb"] == "enrollment.redeem" and e["outcome"] == "allowed" for e in b_audit)


async def test_peer_add_over_http_to_ipv6_loopback_keeps_the_brackets(pair: Pair) -> None:
    grant, url = await _b_offers(pair.b)
    # B's app served on [::1] as well: the URL A is handed names the IPv6 loopback.
    on_ipv6 = UvicornServer(pair.b.server.app, free_port(), host="::1")
    await on_ipv6.start()
    try:
        url = url.replace(pair.b.url, f"http://[::1]:{on_ipv6.port}")
        started = await pair.a.api.post(
            "/api/admin/federation/peers/enroll", json={"enrollmentUrl": url}
        )
        assert started.status_code == 202, started.text
        peer = await wait_for_peer(pair.a, started.json()["peerId"])
    finally:
        await on_ipv6.stop()
    assert peer["state"] == "active", peer
    assert peer["endpointUrl"] == f"http://[::1]:{on_ipv6.port}"
    b_grant = (await pair.b.api.get(f"/api/admin/federation/grants/{grant['id']}")).json()
    assert b_grant["certSerial"] == peer["certSerial"]


@dataclass
class _PeerLike:
    id: uuid.UUID
    client_key_sealed: str


async def test_cli_peer_add_with_a_used_token_fails_the_peer_and_exits_nonzero(
    pair: Pair,
) -> None:
    grant, url = await _b_offers(pair.b)
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    used = await pair.b.api.post(url.replace(pair.b.url, ""), json={"csrPem": csr_pem})
    assert used.status_code == 200

    env = dict(
        os.environ,
        MOSAIC_API_URL=pair.a.url,
        MOSAIC_ADMIN_TOKEN=pair.a.settings.mosaic_admin_token.get_secret_value(),
    )
    done = await asyncio.create_subprocess_exec(
        MOSAIC,
        "federation",
        "peer",
        "add",
        url,
        "--timeout",
        "60",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await done.communicate()
    assert done.returncode != 0
    assert "410" in err.decode() and "expired or was already used" in err.decode()
    assert url.rsplit("/", 1)[-1] not in out.decode() + err.decode()
    failed = [
        p
        for p in (await pair.a.api.get("/api/admin/federation/peers?state=failed")).json()
        if p["endpointUrl"] == pair.b.url
    ]
    assert failed and "410" in failed[-1]["failureReason"]
    row = await _peer_row(pair.a, failed[-1]["id"])
    assert row["client_key_sealed"] is None and row["enrollment_url_sealed"] is None


async def test_cli_peer_add_shows_the_plan_and_progress_then_the_result(pair: Pair) -> None:
    grant, url = await _b_offers(pair.b)
    env = dict(
        os.environ,
        MOSAIC_API_URL=pair.a.url,
        MOSAIC_ADMIN_TOKEN=pair.a.settings.mosaic_admin_token.get_secret_value(),
    )
    done = await asyncio.create_subprocess_exec(
        MOSAIC,
        "federation",
        "peer",
        "add",
        url,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await done.communicate()
    assert done.returncode == 0, err.decode()
    text_out = out.decode()
    assert f"as CN {grant['_peer']['commonName']}" in text_out
    assert grant["id"] in text_out and grant["subjectUserId"] in text_out
    assert "SHA-256" in text_out and "serial" in text_out


async def test_peer_add_retries_while_b_is_down_for_10s_and_then_succeeds(pair: Pair) -> None:
    grant, url = await _b_offers(pair.b)
    # B goes down first: the peer add starts without calling B, and a run started before
    # the stop could finish the whole enrollment before B is gone.
    await pair.b.server.stop()
    try:
        started = await pair.a.api.post(
            "/api/admin/federation/peers/enroll", json={"enrollmentUrl": url}
        )
        assert started.status_code == 202, started.text
        await asyncio.sleep(10)
        still = (
            await pair.a.api.get(f"/api/admin/federation/peers/{started.json()['peerId']}")
        ).json()
        assert still["state"] == "pending"
    finally:
        await pair.b.server.start()
    peer = await wait_for_peer(pair.a, started.json()["peerId"], within=60)
    assert peer["state"] == "active", peer
    b_grant = (await pair.b.api.get(f"/api/admin/federation/grants/{grant['id']}")).json()
    assert b_grant["certSerial"] == peer["certSerial"]


async def test_certificate_with_wrong_oids_from_a_rogue_remote_leaves_peer_failed(
    pair: Pair, tmp_path: Path
) -> None:
    rogue_ca = BuiltinCA.open_or_create(tmp_path / "rogue-ca")
    promised_grant, promised_user = str(uuid.uuid4()), str(uuid.uuid4())
    rogue = FastAPI()
    token = "ab" * 32

    rogue_root = rogue_ca.root_certificates()[0]

    @rogue.get("/api/federation/enrollment/{tok}")
    async def preflight(tok: str) -> dict[str, str]:
        return {
            "peerCommonName": "rogue-victim.example.com",
            "grantId": promised_grant,
            "subjectUserId": promised_user,
            "expiresAt": "2099-01-01T00:00:00Z",
            "caFingerprint": ca_fingerprint(rogue_root),
        }

    @rogue.post("/api/federation/enrollment/{tok}")
    async def redeem(tok: str, body: dict[str, str]) -> dict[str, str]:
        # Signs the CSR (under the CA it announced) but embeds another grant id than it
        # promised.
        issued = await rogue_ca.issue(
            IssueRequest(body["csrPem"], str(uuid.uuid4()), promised_user)
        )
        return {
            "certPem": issued.cert_pem,
            "certChainPem": issued.chain_pem,
            "caCertPem": rogue_root.public_bytes(serialization.Encoding.PEM).decode(),
        }

    server = UvicornServer(rogue, free_port())
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/api/federation/enrollment/{token}"
        started = await pair.a.api.post(
            "/api/admin/federation/peers/enroll", json={"enrollmentUrl": url}
        )
        peer = await wait_for_peer(pair.a, started.json()["peerId"])
    finally:
        await server.stop()
    assert peer["state"] == "failed"
    assert "grant id OID does not match" in peer["failureReason"]
    row = await _peer_row(pair.a, peer["id"])
    assert row["cert_pem"] is None and row["cert_serial"] is None
    assert row["client_key_sealed"] is None


async def test_reference_manual_path_keypair_enrollment_patch_cert(pair: Pair) -> None:
    # The reference e2e: A makes a keypair, B signs the CSR, A stores the cert.
    from tests.support.factories import unique

    cn = f"{unique('e2e-peer')}.example.com"
    grant, url = await _b_offers(pair.b, cn)
    keypair = await pair.a.api.post(
        "/api/admin/federation/peers/keypair",
        json={"commonName": cn, "displayName": "E2E Test Peer", "endpointUrl": pair.b.url},
    )
    assert keypair.status_code == 201, keypair.text
    peer_id, csr_pem = keypair.json()["peerId"], keypair.json()["csrPem"]
    assert "-----BEGIN CERTIFICATE REQUEST-----" in csr_pem
    enrolled = await pair.b.api.post(url.replace(pair.b.url, ""), json={"csrPem": csr_pem})
    assert enrolled.status_code == 200, enrolled.text
    stored = await pair.a.api.patch(
        f"/api/admin/federation/peers/{peer_id}/cert", json={"certPem": enrolled.json()["certPem"]}
    )
    assert stored.status_code == 200, stored.text
    row = await _peer_row(pair.a, peer_id)
    assert row["state"] == "active" and row["cert_serial"]
    assert not row["client_key_sealed"].startswith("-----BEGIN")
    shown = (await pair.a.api.get(f"/api/admin/federation/peers/{peer_id}")).json()
    assert datetime.fromisoformat(shown["certNotAfter"]) > datetime.now(UTC)


async def test_patch_cert_for_another_key_or_without_oids_is_422(pair: Pair) -> None:
    from tests.support.factories import unique

    cn = f"{unique('manual')}.example.com"
    grant, url = await _b_offers(pair.b, cn)
    keypair = (
        await pair.a.api.post(
            "/api/admin/federation/peers/keypair",
            json={"commonName": cn, "displayName": "manual"},
        )
    ).json()
    other_csr, _ = make_csr(cn)  # signed for a key that is not A's
    foreign = (
        await pair.b.api.post(url.replace(pair.b.url, ""), json={"csrPem": other_csr})
    ).json()
    refused = await pair.a.api.patch(
        f"/api/admin/federation/peers/{keypair['peerId']}/cert",
        json={"certPem": foreign["certPem"]},
    )
    assert refused.status_code == 422
    assert "public key does not match" in refused.json()["detail"]
    assert (await _peer_row(pair.a, keypair["peerId"]))["state"] == "pending"


async def test_sealed_key_moved_to_another_peer_row_does_not_open(pair: Pair) -> None:
    from tests.support.factories import unique

    first = (
        await pair.a.api.post(
            "/api/admin/federation/peers/keypair",
            json={"commonName": f"{unique('x')}.example.com", "displayName": "x"},
        )
    ).json()
    second = (
        await pair.a.api.post(
            "/api/admin/federation/peers/keypair",
            json={"commonName": f"{unique('y')}.example.com", "displayName": "y"},
        )
    ).json()
    dialect = pair.a.engine.dialect.name
    async with pair.a.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE federation_peers SET client_key_sealed = "
                "(SELECT client_key_sealed FROM federation_peers WHERE id = :src) WHERE id = :dst"
            ),
            {"src": _db(dialect, first["peerId"]), "dst": _db(dialect, second["peerId"])},
        )
    row = await _peer_row(pair.a, second["peerId"])
    with pytest.raises(SealedBlobError):
        open_client_key(
            Sealer(pair.a_secret), _PeerLike(uuid.UUID(second["peerId"]), row["client_key_sealed"])
        )
    # The reseal test after this one re-seals every row: drop the broken copy.
    async with pair.a.engine.begin() as conn:
        await conn.execute(
            text("UPDATE federation_peers SET client_key_sealed = NULL WHERE id = :dst"),
            {"dst": _db(dialect, second["peerId"])},
        )


async def test_reseal_after_secret_rotation_round_trips(pair: Pair, tmp_path: Path) -> None:
    from tests.support.factories import unique

    made = (
        await pair.a.api.post(
            "/api/admin/federation/peers/keypair",
            json={"commonName": f"{unique('rot')}.example.com", "displayName": "rot"},
        )
    ).json()
    old_file = tmp_path / "old-secret"
    old_file.write_text(pair.a_secret + "\n")
    new_secret = "rotated-sealing-secret-0123456789abcd"
    env = dict(
        os.environ,
        DATABASE_URL=pair.a.settings.effective_database_url,
        BETTER_AUTH_SECRET=new_secret,
        MOSAIC_ADMIN_TOKEN="x" * 20,
    )
    for _ in range(2):  # a rerun is safe
        done = subprocess.run(  # noqa: ASYNC221 - a short CLI run, nothing else to await
            [MOSAIC, "federation", "keys", "reseal", "--old-secret-file", str(old_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    row = await _peer_row(pair.a, made["peerId"])
    like = _PeerLike(uuid.UUID(made["peerId"]), row["client_key_sealed"])
    open_client_key(Sealer(new_secret), like)
    with pytest.raises(SealedBlobError):
        open_client_key(Sealer(pair.a_secret), like)
    # Put the gateway's own secret back for the tests after this one.
    old_file.write_text(new_secret)
    env["BETTER_AUTH_SECRET"] = pair.a_secret
    done = subprocess.run(  # noqa: ASYNC221
        [MOSAIC, "federation", "keys", "reseal", "--old-secret-file", str(old_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_minted_tokens_are_registered_for_the_history_scan() -> None:
    assert MINTED_TOKENS
