"""The failure policy of DESIGN §6 on real CAs: what happens to token, grant and certificate."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from federation.ca.base import CertificateAuthority, IssuedCertificate, IssueRequest
from federation.settings import Settings
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.lanes import HookedCA, lane_with_ca
from tests.support.ledger import ca_says_revoked, settled_ledger
from tests.support.pki import make_csr
from tests.support.stepca import StepCAServer

pytestmark = pytest.mark.usefixtures("worker")


def _db_id(engine: AsyncEngine, value: str) -> str:
    return value if engine.dialect.name == "postgresql" else uuid.UUID(value).hex


async def _token_row(engine: AsyncEngine, grant_id: str) -> dict[str, object]:
    rows = await fetch_all(
        engine,
        "SELECT used_at, csr_fingerprint, cert_serial, burnt_at FROM federation_enrollment_tokens"
        " WHERE grant_id = :g",
        g=_db_id(engine, grant_id),
    )
    return rows[0]


async def _denials(client: httpx.AsyncClient, grant_id: str) -> list[dict[str, object]]:
    audit = (
        await client.get(
            "/api/admin/federation/audit", params={"grant": grant_id, "outcome": "denied"}
        )
    ).json()
    return list(audit)


async def _noop(_: IssueRequest, __: IssuedCertificate) -> None:
    return None


async def test_certificate_without_oids_is_502_revoked_and_grant_stays_pending(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    rogue_step_ca: StepCAServer,
    db_engine: AsyncEngine,
) -> None:  # CRIT-1
    rogue = HookedCA(rogue_step_ca.provider(), _noop)
    async with lane_with_ca(settings, temporal_env, rogue) as client:
        grant = await make_grant(client)
        token = (await make_token(client, grant["id"]))["token"]
        csr_pem, _ = make_csr(grant["_peer"]["commonName"])
        response = await client.post(
            f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem}
        )
        assert response.status_code == 502
        assert "grant id OID" in response.json()["detail"]
        # The rogue template ignores the reserved serial: the reservation and the
        # certificate it signed are two rows, and both are revoked at the CA.
        rows = await settled_ledger(db_engine, grant["id"])
        assert len(rows) == 2 and {r["state"] for r in rows} == {"revoked"}
        signed = [r["serial"] for r in rows if r["cert_pem"]]
        assert len(signed) == 1 and await ca_says_revoked(rogue, signed[0])
        shown = (await client.get(f"/api/admin/federation/grants/{grant['id']}")).json()
        assert shown["status"] == "pending" and shown["certSerial"] is None
        peer = (await client.get(f"/api/admin/federation/peers/{grant['peerId']}")).json()
        assert peer["state"] == "pending"
        token_row = await _token_row(db_engine, grant["id"])
        assert token_row["used_at"] is not None and token_row["burnt_at"] is not None
        denials = await _denials(client, grant["id"])
        assert [d["statusCode"] for d in denials] == [502]
        assert denials[0]["certSerial"] == signed[0]
    await rogue.inner.aclose()  # type: ignore[attr-defined]


async def test_grant_revoked_between_claim_and_activation_is_409_and_cert_revoked(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    ca: CertificateAuthority,
    client: httpx.AsyncClient,
    db_engine: AsyncEngine,
) -> None:  # CRIT-2
    async def revoke_grant_meanwhile(request: IssueRequest, _: IssuedCertificate) -> None:
        response = await client.patch(
            f"/api/admin/federation/grants/{request.grant_id}/revoke",
            json={"reason": "revoked during enrollment"},
        )
        assert response.status_code == 200

    hooked = HookedCA(ca, revoke_grant_meanwhile)
    async with lane_with_ca(settings, temporal_env, hooked) as lane:
        grant = await make_grant(lane)
        token = (await make_token(lane, grant["id"]))["token"]
        csr_pem, _ = make_csr(grant["_peer"]["commonName"])
        response = await lane.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    assert response.status_code == 409
    rows = await settled_ledger(db_engine, grant["id"])
    assert len(rows) == 1 and rows[0]["state"] == "revoked"
    assert await ca_says_revoked(ca, rows[0]["serial"])
    shown = (await client.get(f"/api/admin/federation/grants/{grant['id']}")).json()
    assert shown["status"] == "revoked" and shown["certSerial"] is None
    peer = (await client.get(f"/api/admin/federation/peers/{grant['peerId']}")).json()
    assert peer["state"] == "pending" and peer["certSerial"] is None
    token_row = await _token_row(db_engine, grant["id"])
    assert token_row["used_at"] is not None and token_row["burnt_at"] is not None
    assert [d["statusCode"] for d in await _denials(client, grant["id"])] == [409]


async def test_step_ca_down_is_503_and_the_retried_post_succeeds_after_restart(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    db_engine: AsyncEngine,
) -> None:
    provider = step_ca.provider()
    async with lane_with_ca(settings, temporal_env, provider) as client:
        grant = await make_grant(client)
        token = (await make_token(client, grant["id"]))["token"]
        csr_pem, _ = make_csr(grant["_peer"]["commonName"])
        step_ca.stop()
        try:
            down = await client.post(
                f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem}
            )
        finally:
            step_ca.start()
        assert down.status_code == 503
        assert down.headers["Retry-After"]
        row = await _token_row(db_engine, grant["id"])
        assert row["used_at"] is None  # released: still within its TTL
        assert [d["statusCode"] for d in await _denials(client, grant["id"])] == [503]
        assert (await client.get(f"/api/admin/federation/grants/{grant['id']}")).json()[
            "status"
        ] == "pending"

        again = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
        assert again.status_code == 200, again.text
        shown = (await client.get(f"/api/admin/federation/grants/{grant['id']}")).json()
        assert shown["status"] == "active"
    await provider.aclose()


async def test_token_of_a_revoked_grant_is_409_and_stays_unclaimed(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    grant = await make_grant(client)
    token = (await make_token(client, grant["id"]))["token"]
    await client.patch(f"/api/admin/federation/grants/{grant['id']}/revoke", json={})
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    response = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    assert response.status_code == 409
    assert (await _token_row(db_engine, grant["id"]))["used_at"] is None
    assert [d["statusCode"] for d in await _denials(client, grant["id"])] == [409]
