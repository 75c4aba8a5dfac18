"""B's federation listener over real mTLS: the inbound guard, step by step, and the
scope pipeline (issue 11). Both lanes: PostgreSQL + step-ca, SQLite + built-in CA;
peers enroll through the real redeem, resources are seeded through the admin API.
"""

from __future__ import annotations

import base64
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.ext.asyncio import AsyncEngine

from api.federation_app import create_federation_app
from api.state import Gateway
from federation.ca.base import CertificateAuthority
from federation.inbound import FORBIDDEN
from federation.pki.der import encode_utf8string
from federation.pki.oids import GRANT_ID_OID, SUBJECT_USER_ID_OID
from federation.settings import Settings
from tests.support.dbsnap import fetch_all
from tests.support.faults import db_id
from tests.support.federation import (
    EnrolledPeer,
    Listener,
    enroll_peer,
    forge,
    mosaic_oids,
    mtls_client,
    other_ca_client,
    running_listener,
)
from tests.support.stepca import StepCAServer

pytestmark = pytest.mark.usefixtures("worker")

SCOPE = {
    "resources": ["tasks", "notes", "credentials"],
    "excluded_resources": [],
    "max_rows_per_query": 5,
}
NARROW = {"resources": ["tasks"], "excluded_resources": ["credentials"], "max_rows_per_query": 50}


@pytest.fixture(scope="module")
async def listener(
    settings: Settings,
    ca: CertificateAuthority,
    step_ca: StepCAServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Listener]:
    async with running_listener(
        settings, ca, step_ca, tmp_path_factory.mktemp("federation")
    ) as running:
        yield running


async def _seed(client: httpx.AsyncClient, kind: str, owner: str, count: int) -> list[str]:
    ids = []
    for index in range(count):
        made = await client.post(
            f"/api/admin/resources/{kind}",
            json={"ownerUserId": owner, "title": f"{kind} {index}", "body": "b"},
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    return ids


def _as(listener: Listener, peer: EnrolledPeer) -> httpx.AsyncClient:
    return mtls_client(listener, peer.cert_pem, peer.chain_pem, peer.key)


async def _audit(engine: AsyncEngine, listener: Listener, grant_id: str) -> list[dict[str, Any]]:
    await listener.flush_audit()
    return await fetch_all(
        engine,
        "SELECT verb, resource, outcome, status_code, reason, rows_out, bytes_out, latency_ms,"
        " query_sha256, cert_serial FROM federation_audit_log"
        " WHERE grant_id = :g AND verb LIKE 'federation.%' ORDER BY id",
        g=db_id(engine, grant_id),
    )


# ---------------------------------------------------------------- allowed


async def test_capabilities_name_the_grant_user_scope_and_verbs(
    listener: Listener, client: httpx.AsyncClient
) -> None:
    peer = await enroll_peer(client, SCOPE)
    async with _as(listener, peer) as remote:
        answer = await remote.get("/api/federation/v1/capabilities")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "grantId": peer.grant_id,
        "subjectUserId": peer.user_id,
        "resources": ["tasks", "notes", "credentials"],
        "excludedResources": [],
        "maxRowsPerQuery": 5,
        "verbs": ["capabilities", "list", "get", "renew"],
    }


async def test_list_shows_only_the_subject_users_rows_capped_and_pages_through_the_rest(
    listener: Listener, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    peer = await enroll_peer(client, SCOPE)
    mine = await _seed(client, "tasks", peer.user_id, 12)
    stranger = (
        await client.post(
            "/api/admin/users", json={"name": "Eve", "email": f"eve-{uuid.uuid4().hex[:8]}@x.org"}
        )
    ).json()
    await _seed(client, "tasks", stranger["id"], 3)
    seen: list[str] = []
    cursor = None
    async with _as(listener, peer) as remote:
        while True:
            page = await remote.post(
                "/api/federation/v1/list/tasks", json={"limit": 100, "cursor": cursor}
            )
            assert page.status_code == 200, page.text
            items = page.json()["items"]
            assert len(items) <= 5  # max_rows_per_query caps whatever is asked
            assert {item["ownerUserId"] for item in items} <= {peer.user_id}
            seen += [item["id"] for item in items]
            cursor = page.json()["nextCursor"]
            if cursor is None:
                break
    assert seen == mine  # nothing repeated, nothing lost, oldest first
    rows = await _audit(db_engine, listener, peer.grant_id)
    assert [r["rows_out"] for r in rows if r["verb"] == "federation.list"] == [5, 5, 2]
    assert all(r["outcome"] == "allowed" and r["bytes_out"] > 0 for r in rows)
    assert all(r["query_sha256"] and r["latency_ms"] is not None for r in rows)


async def test_get_of_another_users_row_is_404_like_a_missing_one(
    listener: Listener, client: httpx.AsyncClient
) -> None:
    peer = await enroll_peer(client, SCOPE)
    [mine] = await _seed(client, "notes", peer.user_id, 1)
    other = await enroll_peer(client, SCOPE)
    [theirs] = await _seed(client, "notes", other.user_id, 1)
    async with _as(listener, peer) as remote:
        own = await remote.get(f"/api/federation/v1/get/notes/{mine}")
        foreign = await remote.get(f"/api/federation/v1/get/notes/{theirs}")
        missing = await remote.get(f"/api/federation/v1/get/notes/{uuid.uuid4()}")
    assert own.status_code == 200 and own.json()["id"] == mine
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


async def test_a_certificate_for_grant_x_cannot_read_grant_ys_user(
    listener: Listener, client: httpx.AsyncClient
) -> None:
    x = await enroll_peer(client, SCOPE)
    y = await enroll_peer(client, SCOPE)
    [ys_task] = await _seed(client, "tasks", y.user_id, 1)
    async with _as(listener, x) as remote:
        listed = await remote.post("/api/federation/v1/list/tasks", json={})
        fetched = await remote.get(f"/api/federation/v1/get/tasks/{ys_task}")
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert fetched.status_code == 404


# ---------------------------------------------------------------- scope: 403, one message


async def test_excluded_resource_and_resource_outside_the_scope_are_the_same_403(
    listener: Listener, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    peer = await enroll_peer(client, NARROW)
    async with _as(listener, peer) as remote:
        excluded = await remote.post("/api/federation/v1/list/credentials", json={})
        outside = await remote.post("/api/federation/v1/list/notes", json={})
        outside_get = await remote.get(f"/api/federation/v1/get/notes/{uuid.uuid4()}")
    for refused in (excluded, outside, outside_get):
        assert refused.status_code == 403
        assert refused.json() == {"detail": FORBIDDEN}
    reasons = [r["reason"] for r in await _audit(db_engine, listener, peer.grant_id)]
    assert reasons == [
        "credentials is excluded by the grant's scope",
        "notes is not in the grant's scope",
        "notes is not in the grant's scope",
    ]


async def test_a_body_is_never_read_before_the_caller_is_authorized(
    listener: Listener, client: httpx.AsyncClient
) -> None:
    peer = await enroll_peer(client, NARROW)
    async with _as(listener, peer) as remote:
        refused = await remote.post(
            "/api/federation/v1/list/credentials",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
    assert refused.status_code == 403


# ---------------------------------------------------------------- authentication: 401


async def test_a_certificate_from_a_ca_b_does_not_trust_fails_the_handshake_unaudited(
    listener: Listener, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    await listener.flush_audit()
    before = await fetch_all(db_engine, "SELECT count(*) AS n FROM federation_audit_log")
    async with other_ca_client(listener, tmp_path / "stranger") as stranger:
        # TLS 1.3: the server's refusal (an alert) reaches the client on its first read;
        # the alert names why (api/tls_alerts.py), so a peer can say "TLS refused".
        with pytest.raises((httpx.ConnectError, httpx.ReadError, ssl.SSLError)) as failed:
            await stranger.get("/api/federation/v1/capabilities")
    assert _tls_refusal(failed.value), repr(failed.value)
    assert "unknown ca" in repr(failed.value).lower() or "UNKNOWN_CA" in _chain(failed.value)
    await listener.flush_audit()
    after = await fetch_all(db_engine, "SELECT count(*) AS n FROM federation_audit_log")
    assert after == before  # no handler ran


@pytest.mark.parametrize(
    "extensions",
    [
        pytest.param([], id="no-oids"),
        pytest.param([(GRANT_ID_OID, encode_utf8string(str(uuid.uuid4())))], id="one-oid"),
        pytest.param(
            [
                (GRANT_ID_OID, encode_utf8string("not-a-uuid")),
                (SUBJECT_USER_ID_OID, encode_utf8string(str(uuid.uuid4()))),
            ],
            id="malformed-value",
        ),
        pytest.param(
            [
                (GRANT_ID_OID, b"\x13\x05hello"),  # a PrintableString, not a UTF8String
                (SUBJECT_USER_ID_OID, encode_utf8string(str(uuid.uuid4()))),
            ],
            id="wrong-der-type",
        ),
    ],
)
async def test_a_certificate_without_well_formed_oids_is_401(
    listener: Listener,
    ca: CertificateAuthority,
    step_ca: StepCAServer,
    extensions: list[Any],
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem, chain_pem = forge(ca, step_ca, key, extensions=extensions)
    async with mtls_client(listener, cert_pem, chain_pem, key) as remote:
        answer = await remote.get("/api/federation/v1/capabilities")
    assert answer.status_code == 401
    assert "Mosaic federation certificate" in answer.json()["detail"]


def _chain(error: BaseException) -> str:
    seen: BaseException | None = error
    parts = []
    while seen is not None:
        parts.append(repr(seen))
        seen = seen.__cause__ or seen.__context__
    return " ".join(parts)


def _tls_refusal(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# ---------------------------------------------------------------- authorization: 403


async def test_a_serial_that_is_not_the_pinned_one_is_403(
    listener: Listener,
    client: httpx.AsyncClient,
    ca: CertificateAuthority,
    step_ca: StepCAServer,
    db_engine: AsyncEngine,
) -> None:
    """Signed by B's CA, right OIDs, right key: but not the certificate the ledger pins."""
    peer = await enroll_peer(client, SCOPE)
    cert_pem, chain_pem = forge(
        ca, step_ca, peer.key, extensions=mosaic_oids(peer.grant_id, peer.user_id)
    )
    async with mtls_client(listener, cert_pem, chain_pem, peer.key) as remote:
        answer = await remote.get("/api/federation/v1/capabilities")
    assert answer.status_code == 403 and answer.json() == {"detail": FORBIDDEN}
    [row] = await _audit(db_engine, listener, peer.grant_id)
    assert row["reason"] == "certificate is not in the ledger for this grant"


async def test_the_subject_user_must_match_the_grant(
    listener: Listener,
    client: httpx.AsyncClient,
    ca: CertificateAuthority,
    step_ca: StepCAServer,
) -> None:
    peer = await enroll_peer(client, SCOPE)
    cert_pem, chain_pem = forge(
        ca, step_ca, peer.key, extensions=mosaic_oids(peer.grant_id, str(uuid.uuid4()))
    )
    async with mtls_client(listener, cert_pem, chain_pem, peer.key) as remote:
        answer = await remote.get("/api/federation/v1/capabilities")
    assert answer.status_code == 403 and answer.json() == {"detail": FORBIDDEN}


async def test_an_unknown_grant_is_the_same_403(
    listener: Listener, ca: CertificateAuthority, step_ca: StepCAServer
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem, chain_pem = forge(
        ca, step_ca, key, extensions=mosaic_oids(str(uuid.uuid4()), str(uuid.uuid4()))
    )
    async with mtls_client(listener, cert_pem, chain_pem, key) as remote:
        answer = await remote.get("/api/federation/v1/capabilities")
    assert answer.status_code == 403 and answer.json() == {"detail": FORBIDDEN}


async def test_a_revoked_grant_is_refused_from_the_next_request_on(
    listener: Listener, client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    peer = await enroll_peer(client, SCOPE)
    async with _as(listener, peer) as remote:
        assert (await remote.get("/api/federation/v1/capabilities")).status_code == 200
        revoked = await client.patch(
            f"/api/admin/federation/grants/{peer.grant_id}/revoke", json={"reason": "ended"}
        )
        assert revoked.status_code == 200
        # The same pooled connection: no cache between the grant and the guard.
        after = await remote.get("/api/federation/v1/capabilities")
        status = await remote.get("/api/federation/v1/certificate")
    assert after.status_code == 403 and after.json() == {"detail": FORBIDDEN}
    assert status.status_code == 200
    assert status.json()["state"] == "revoked" and status.json()["withdrawnForCause"] is True
    reasons = [r["reason"] for r in await _audit(db_engine, listener, peer.grant_id)]
    assert reasons[1] == "grant is revoked"


# ---------------------------------------------------------------- behind a TLS proxy


def _sf_binary(pem: str) -> str:
    """RFC 9440 form: the DER as a structured-field byte sequence."""
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    return f":{base64.b64encode(der).decode()}:"


@pytest.mark.parametrize("form", ["rfc9440", "nginx-escaped-pem"])
async def test_client_cert_header_is_believed_only_from_a_trusted_proxy(
    form: str,
    settings: Settings,
    ca: CertificateAuthority,
    client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    peer = await enroll_peer(client, SCOPE)
    behind_proxy = settings.model_copy(
        update={
            "mosaic_federation_listen": "127.0.0.1:1",
            "mosaic_federation_trusted_proxies": "10.0.0.0/8",
            "mosaic_data_dir": tmp_path,
        }
    )
    gateway = Gateway.from_settings(behind_proxy)
    gateway._ca = ca  # noqa: SLF001
    app = create_federation_app(behind_proxy, gateway)
    if form == "rfc9440":
        headers = {
            "Client-Cert": _sf_binary(peer.cert_pem),
            "Client-Cert-Chain": _sf_binary(peer.chain_pem),
        }
    else:
        headers = {"Client-Cert": quote(peer.cert_pem + peer.chain_pem)}
    try:
        for address, expected in (("10.1.2.3", 200), ("192.0.2.7", 401)):
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as proxy:
                answer = await proxy.get("/api/federation/v1/capabilities", headers=headers)
            assert answer.status_code == expected, (address, answer.text)
    finally:
        await gateway.close()
