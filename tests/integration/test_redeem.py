"""Redeem through HTTP, the real worker and a real CA, on both lanes
(PostgreSQL + step-ca, SQLite + built-in CA)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from federation.pki.certs import read_mosaic_oids
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.pki import make_csr, public_der

pytestmark = pytest.mark.usefixtures("worker")


async def _enrollable(client: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    grant = await make_grant(client)
    token = (await make_token(client, grant["id"]))["token"]
    return grant, token


def _db_id(engine: AsyncEngine, value: str) -> str:
    return value if engine.dialect.name == "postgresql" else uuid.UUID(value).hex


async def _audit(client: httpx.AsyncClient, grant_id: str) -> list[dict[str, Any]]:
    response = await client.get("/api/admin/federation/audit", params={"grant": grant_id})
    return list(response.json())


async def test_redeem_signs_csr_and_returns_certificate_with_both_oids(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:  # M2-2, M2-4
    grant, token = await _enrollable(client)
    csr_pem, key = make_csr(grant["_peer"]["commonName"])
    response = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    assert response.status_code == 200, response.text
    body = response.json()
    cert = x509.load_pem_x509_certificate(body["certPem"].encode())
    assert read_mosaic_oids(cert) == (grant["id"], grant["subjectUserId"])
    assert body["grantId"] == grant["id"] and body["subjectUserId"] == grant["subjectUserId"]
    assert cert.public_key().public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.DER,
        __import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["x"]
        ).PublicFormat.SubjectPublicKeyInfo,
    ) == public_der(key)
    assert "BEGIN CERTIFICATE" in body["certChainPem"]

    shown = (await client.get(f"/api/admin/federation/grants/{grant['id']}")).json()
    assert shown["status"] == "active" and shown["certSerial"] == body["certSerial"]
    peer = (await client.get(f"/api/admin/federation/peers/{grant['peerId']}")).json()
    assert peer["state"] == "active" and peer["certSerial"] == body["certSerial"]
    rows = await fetch_all(
        db_engine,
        "SELECT used_at, cert_serial FROM federation_enrollment_tokens WHERE grant_id = :g",
        g=_db_id(db_engine, grant["id"]),
    )
    assert rows[0]["used_at"] is not None and rows[0]["cert_serial"] == body["certSerial"]
    audit = await _audit(client, grant["id"])
    allowed = [a for a in audit if a["verb"] == "enrollment.redeem" and a["outcome"] == "allowed"]
    assert len(allowed) == 1 and allowed[0]["certSerial"] == body["certSerial"]


async def test_second_redeem_of_used_token_with_another_csr_is_410(
    client: httpx.AsyncClient,
) -> None:  # M2-3
    grant, token = await _enrollable(client)
    cn = grant["_peer"]["commonName"]
    first = await client.post(
        f"/api/federation/enrollment/{token}", json={"csrPem": make_csr(cn)[0]}
    )
    assert first.status_code == 200
    second = await client.post(
        f"/api/federation/enrollment/{token}", json={"csrPem": make_csr(cn)[0]}
    )
    assert second.status_code == 410
    assert any(
        a["outcome"] == "denied" and a["statusCode"] == 410
        for a in await _audit(client, grant["id"])
    )


async def test_replayed_same_csr_returns_the_same_certificate(client: httpx.AsyncClient) -> None:
    grant, token = await _enrollable(client)
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    first = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    again = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    assert first.status_code == again.status_code == 200
    assert again.json()["certSerial"] == first.json()["certSerial"]


async def test_unknown_token_is_404_and_audited_with_null_grant(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    token = uuid.uuid4().hex * 2
    csr_pem, _ = make_csr("whoever.example.com")
    response = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    assert response.status_code == 404
    assert response.json() == {"detail": "enrollment token is not valid"}
    denied = (await client.get("/api/admin/federation/audit", params={"outcome": "denied"})).json()
    assert any(a["grantId"] is None and a["statusCode"] == 404 for a in denied), denied


async def test_expired_token_is_410_and_leaves_grant_pending(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    grant, token = await _enrollable(client)
    async with db_engine.begin() as conn:
        await conn.execute(
            __import__("sqlalchemy").text(
                "UPDATE federation_enrollment_tokens SET expires_at = :t WHERE grant_id = :g"
            ),
            {
                "t": __import__("datetime").datetime(2020, 1, 1)
                if db_engine.dialect.name == "sqlite"
                else __import__("datetime").datetime(2020, 1, 1, tzinfo=__import__("datetime").UTC),
                "g": _db_id(db_engine, grant["id"]),
            },
        )
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    response = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    assert response.status_code == 410
    assert (await client.get(f"/api/admin/federation/grants/{grant['id']}")).json()[
        "status"
    ] == "pending"
    audit = await _audit(client, grant["id"])
    assert any(a["outcome"] == "denied" and a["statusCode"] == 410 for a in audit)


async def test_bad_csr_is_400_and_token_stays_usable(client: httpx.AsyncClient) -> None:
    grant, token = await _enrollable(client)
    wrong_cn, _ = make_csr("someone-else.example.com")
    bad = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": wrong_cn})
    assert bad.status_code == 400
    assert "common name" in bad.json()["detail"]
    garbage = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": "not a csr"})
    assert garbage.status_code == 400
    good, _ = make_csr(grant["_peer"]["commonName"])
    ok = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": good})
    assert ok.status_code == 200, ok.text
    denied = [a for a in await _audit(client, grant["id"]) if a["outcome"] == "denied"]
    assert len(denied) == 2 and all(a["statusCode"] == 400 for a in denied)


async def test_fifty_concurrent_redeems_yield_exactly_one_certificate(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    grant, token = await _enrollable(client)
    cn = grant["_peer"]["commonName"]
    csrs = [make_csr(cn)[0] for _ in range(50)]
    responses = await asyncio.gather(
        *(client.post(f"/api/federation/enrollment/{token}", json={"csrPem": c}) for c in csrs)
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 409, 410}
    rows = await fetch_all(
        db_engine,
        "SELECT status, cert_serial FROM federation_grants WHERE id = :g",
        g=_db_id(db_engine, grant["id"]),
    )
    winner = next(r for r in responses if r.status_code == 200).json()
    assert rows == [{"status": "active", "cert_serial": winner["certSerial"]}]


async def test_preflight_describes_token_without_consuming_it(client: httpx.AsyncClient) -> None:
    grant, token = await _enrollable(client)
    first = await client.get(f"/api/federation/enrollment/{token}")
    assert first.status_code == 200
    assert first.json()["peerCommonName"] == grant["_peer"]["commonName"]
    assert first.json()["grantId"] == grant["id"]
    again = await client.get(f"/api/federation/enrollment/{token}")
    assert again.status_code == 200
    unknown = await client.get(f"/api/federation/enrollment/{'0' * 64}")
    assert unknown.status_code == 404


async def test_unknown_token_starts_no_workflow_run(
    client: httpx.AsyncClient, temporal_env: WorkflowEnvironment
) -> None:
    from temporalio.service import RPCError

    from federation.runs import redeem_workflow_id
    from federation.tokens import hash_token

    token = uuid.uuid4().hex * 2
    csr_pem, _ = make_csr("whoever.example.com")
    response = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    assert response.status_code == 404
    with pytest.raises(RPCError):
        await temporal_env.client.get_workflow_handle(
            redeem_workflow_id(hash_token(token))
        ).describe()


async def test_refused_preflight_is_audited_without_consuming_anything(
    client: httpx.AsyncClient,
) -> None:
    grant, token = await _enrollable(client)
    await client.patch(f"/api/admin/federation/grants/{grant['id']}/revoke", json={})
    refused = await client.get(f"/api/federation/enrollment/{token}")
    assert refused.status_code == 409
    audit = await _audit(client, grant["id"])
    assert any(
        a["verb"] == "enrollment.preflight" and a["outcome"] == "denied" and a["statusCode"] == 409
        for a in audit
    )
