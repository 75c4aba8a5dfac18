"""Every signed certificate is accounted for (issue 10): the holes a review found, each
driven on the real parts and judged by the ledger and by the CA's own view.

Lanes: the session's database (PostgreSQL, SQLite) with its CA (step-ca, built-in),
and the real step-ca wherever a CA must refuse or lose a reply.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from federation import enrollment, reconcile
from federation.ca.base import CertificateAuthority
from federation.ca.stepca import StepCA
from federation.db.models import utcnow
from federation.db.session import make_sessionmaker
from federation.settings import Settings
from federation.tokens import hash_token
from tests.support.ca_proxy import LosingProxy
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.faults import db_id
from tests.support.identity import gateway_client
from tests.support.lanes import SplitCA, lane_with_ca
from tests.support.ledger import ca_says_revoked, ledger_rows, settled_ledger
from tests.support.pki import make_csr
from tests.support.stepca import StepCAServer
from workflows.reconcile import ReconcileEnrollments, ReconcileInput, ReconcileReport

pytestmark = pytest.mark.usefixtures("worker")

Proceed = Callable[[], Awaitable[Any]]


async def _enroll(client: httpx.AsyncClient) -> tuple[dict[str, Any], httpx.Response]:
    grant = await make_grant(client)
    token = (await make_token(client, grant["id"]))["token"]
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    response = await client.post(f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem})
    return grant, response


async def _token_row(engine: AsyncEngine, grant_id: str) -> dict[str, Any]:
    rows = await fetch_all(
        engine,
        "SELECT used_at, burnt_at, cert_serial FROM federation_enrollment_tokens"
        " WHERE grant_id = :g",
        g=db_id(engine, grant_id),
    )
    return rows[0]


async def _reconcile(
    temporal_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str
) -> ReconcileReport:
    """One reconcile run on the lane's worker, with no grace period."""
    client = await gateway_client(temporal_env, engine)
    report: ReconcileReport = await client.execute_workflow(
        ReconcileEnrollments.run,
        ReconcileInput(grace_seconds=0),
        id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    return report


# ------------------------------------------------------------------ 1. revoke vs activation


@pytest.mark.parametrize("order", ["revoke_commits_first", "activation_commits_first"])
async def test_revoke_racing_activation_leaves_no_valid_certificate(
    order: str,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    ca: CertificateAuthority,
    db_engine: AsyncEngine,
) -> None:
    lane: dict[str, httpx.AsyncClient] = {}
    grant_box: dict[str, str] = {}
    revoked: list[int] = []

    async def revoke() -> None:
        response = await lane["client"].patch(
            f"/api/admin/federation/grants/{grant_box['id']}/revoke", json={"reason": "race"}
        )
        revoked.append(response.status_code)

    async def hook(activity_type: str, proceed: Proceed) -> Any:
        if activity_type != "redeem.activate":
            return await proceed()
        if order == "revoke_commits_first":
            await revoke()
            return await proceed()
        result = await proceed()
        await revoke()
        return result

    async with lane_with_ca(settings, temporal_env, ca, hook=hook) as client:
        lane["client"] = client
        grant = await make_grant(client)
        grant_box["id"] = grant["id"]
        token = (await make_token(client, grant["id"]))["token"]
        csr_pem, _ = make_csr(grant["_peer"]["commonName"])
        response = await client.post(
            f"/api/federation/enrollment/{token}", json={"csrPem": csr_pem}
        )
        # Activation first: the revocation lands before the answer leaves, so the
        # certificate is not handed out (410) though the enrollment had succeeded.
        expected = 409 if order == "revoke_commits_first" else 410
        assert response.status_code == expected, response.text
        assert revoked == [200]
        rows = await settled_ledger(db_engine, grant["id"])
        assert [r["state"] for r in rows] == ["revoked"]
        serial = rows[0]["serial"]
        assert await ca_says_revoked(ca, serial)
        shown = (await client.get(f"/api/admin/federation/grants/{grant['id']}")).json()
        assert shown["status"] == "revoked"
        peer = (await client.get(f"/api/admin/federation/peers/{grant['peerId']}")).json()
        assert peer["state"] == ("pending" if order == "revoke_commits_first" else "revoked")
        audit = (
            await client.get("/api/admin/federation/audit", params={"grant": grant["id"]})
        ).json()
        revoke_rows = [a for a in audit if a["verb"] == "grant.revoke"]
        assert len(revoke_rows) == 1
        # The serial the revocation saw is the one it read atomically with revoking.
        expected_serial = None if order == "revoke_commits_first" else serial
        assert revoke_rows[0]["certSerial"] == expected_serial


# ------------------------------------------------------------------ 2. a lost CA reply


async def test_reply_lost_after_the_ca_signed_leaves_a_revocable_row_that_is_revoked(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    db_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    proxy = LosingProxy(step_ca, tmp_path)
    await proxy.start()
    provider = StepCA(
        proxy.url,
        step_ca.files.provisioner_key_json.read_text(encoding="utf-8"),
        step_ca.files.root_cert,
    )
    try:
        async with lane_with_ca(settings, temporal_env, provider) as client:
            proxy.lose_sign_replies = 1
            grant, response = await _enroll(client)
            assert response.status_code == 200, response.text
            active_serial = response.json()["certSerial"]
            assert len(proxy.lost_serials) == 1
            lost = proxy.lost_serials[0]
            assert lost != active_serial
            rows = {r["serial"]: r for r in await settled_ledger(db_engine, grant["id"])}
            # The reservation made before the call is the certificate step-ca signed.
            assert set(rows) == {lost, active_serial}
            assert rows[active_serial]["state"] == "active"
            assert rows[lost]["state"] == "revoked" and rows[lost]["cert_pem"] is None
            assert await ca_says_revoked(provider, lost)
    finally:
        await provider.aclose()
        await proxy.stop()


# ---------------------------------------------- 3. a CA step that times out after signing


async def test_ca_step_that_hangs_after_signing_is_a_ca_outage_and_revokes_what_it_signed(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    ca: CertificateAuthority,
    db_engine: AsyncEngine,
) -> None:
    """The CA signed, then the step (which also verifies the certificate) ran out of time:
    the certificate the ledger holds for the run is revoked, the token released."""
    signed = 0

    async def hangs_after_signing(activity_type: str, proceed: Proceed) -> Any:
        nonlocal signed
        result = await proceed()
        if activity_type == "certificates.certify":
            signed += 1
            await asyncio.sleep(60)  # past the step's budget (MOSAIC_CA_RETRY_SECONDS)
        return result

    async with lane_with_ca(settings, temporal_env, ca, hook=hangs_after_signing) as client:
        grant, response = await _enroll(client)
        assert response.status_code == 503, response.text
        assert "unreachable" in response.json()["detail"]
        assert signed == 1  # the budget's end is final: no second attempt
        token = await _token_row(db_engine, grant["id"])
        assert token["used_at"] is None  # released: the peer may simply retry
        rows = await settled_ledger(db_engine, grant["id"])
        assert [r["state"] for r in rows] == ["revoked"]
        assert await ca_says_revoked(ca, rows[0]["serial"])
        denials = (
            await client.get(
                "/api/admin/federation/audit", params={"grant": grant["id"], "outcome": "denied"}
            )
        ).json()
        assert [d["statusCode"] for d in denials] == [503]
        assert denials[0]["reason"].startswith("CAUnavailable")


# ------------------------------------------------- 4. a compensation whose CA call is refused


def _refusing(server: StepCAServer, wrong_key_from: StepCAServer) -> StepCA:
    """A provider for ``server`` holding another CA's provisioner key: step-ca refuses it."""
    return StepCA(
        server.url,
        wrong_key_from.files.provisioner_key_json.read_text(encoding="utf-8"),
        server.files.root_cert,
    )


async def test_refused_revocation_in_a_compensation_still_burns_audits_and_is_finished_later(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    rogue_step_ca: StepCAServer,
    step_ca: StepCAServer,
    db_engine: AsyncEngine,
) -> None:
    signer = rogue_step_ca.provider()  # its certificates lack the OIDs: CertificateRejected
    split = SplitCA(signer, _refusing(rogue_step_ca, step_ca))
    try:
        async with lane_with_ca(settings, temporal_env, split) as client:
            grant, response = await _enroll(client)
            assert response.status_code == 502, response.text
            token = await _token_row(db_engine, grant["id"])
            assert token["burnt_at"] is not None
            denials = (
                await client.get(
                    "/api/admin/federation/audit",
                    params={"grant": grant["id"], "outcome": "denied"},
                )
            ).json()
            assert [d["statusCode"] for d in denials] == [502]
            # Decided, refused by the CA: still on the books, not revoked.
            await asyncio.sleep(1)
            rows = await ledger_rows(db_engine, grant["id"])
            assert rows and all(r["revoke_after"] is not None for r in rows)
            assert all(r["state"] != "revoked" for r in rows)

            split.revoker = signer  # the CA takes revocations again
            queue = client.lane_settings.mosaic_task_queue  # type: ignore[attr-defined]
            report = await _reconcile(temporal_env, db_engine, queue)
            assert report.certificates_revoked >= len(rows)
            rows = await settled_ledger(db_engine, grant["id"])
            for row in rows:
                assert row["state"] == "revoked"
                assert await ca_says_revoked(signer, row["serial"])
    finally:
        await signer.aclose()
        await split.revoker.aclose()  # type: ignore[attr-defined]


# ------------------------------------------------- 5. a grant revoke the CA refuses, then takes


async def test_grant_revoke_refused_at_the_ca_can_be_finished_by_revoking_again(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    rogue_step_ca: StepCAServer,
    db_engine: AsyncEngine,
) -> None:
    signer = step_ca.provider()
    refusing = _refusing(step_ca, rogue_step_ca)
    split = SplitCA(signer, refusing)
    try:
        async with lane_with_ca(settings, temporal_env, split) as client:
            grant, response = await _enroll(client)
            assert response.status_code == 200, response.text
            serial = response.json()["certSerial"]
            path = f"/api/admin/federation/grants/{grant['id']}/revoke"

            first = await client.patch(path, json={"reason": "contract ended"})
            assert first.status_code == 200 and first.json()["status"] == "revoked"
            peer = (await client.get(f"/api/admin/federation/peers/{grant['peerId']}")).json()
            assert peer["state"] == "revoked"  # at once, whatever the CA says
            [row] = await ledger_rows(db_engine, grant["id"])
            assert row["state"] == "active" and row["revoke_after"] is not None

            # Still refused: the request is taken again (not a 409), nothing is lost.
            assert (await client.patch(path, json={})).status_code == 200

            split.revoker = signer
            assert (await client.patch(path, json={})).status_code == 200
            [row] = await settled_ledger(db_engine, grant["id"])
            assert row["serial"] == serial and row["state"] == "revoked"
            assert await ca_says_revoked(signer, serial)
            assert (await client.patch(path, json={})).status_code == 409
    finally:
        await signer.aclose()
        await refusing.aclose()


# ------------------------------------------------- 7. a resumed claim is a fresh claim


async def test_resuming_an_old_claim_refreshes_it_so_reconcile_leaves_it_alone(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    grant = await make_grant(client)
    token = (await make_token(client, grant["id"]))["token"]
    token_hash = hash_token(token)
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    sessions = make_sessionmaker(db_engine)  # type: ignore[arg-type]
    async with sessions() as session:
        checked = await enrollment.validate_redeem(session, token_hash, csr_pem)
        claim = {
            "grant_id": checked.grant_id,
            "peer_id": checked.peer_id,
            "csr_fingerprint": checked.csr.fingerprint,
        }
        await enrollment.claim_token(session, token_hash, **claim)
    async with db_engine.begin() as conn:  # the first run claimed it long ago
        await conn.execute(
            text("UPDATE federation_enrollment_tokens SET used_at = :t WHERE token_hash = :h"),
            {"t": (utcnow() - timedelta(hours=2)).replace(tzinfo=None), "h": token_hash},
        )
    async with sessions() as session:
        await enrollment.validate_redeem(session, token_hash, csr_pem)  # a new run resumes
        await enrollment.claim_token(session, token_hash, **claim)
        stranded = await reconcile.claimed_tokens_without_certificate(
            session, claimed_before=utcnow() - timedelta(seconds=120)
        )
    assert token_hash not in {t.token_hash for t in stranded}


# ------------------------------------------------- issue 15: one enrollment per grant


async def test_ten_tokens_of_one_grant_redeemed_at_once_sign_one_certificate(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    grant = await make_grant(client)
    minted = [await make_token(client, grant["id"]) for _ in range(10)]
    # Each new token withdraws the unused one before it: one redeemable URL per grant.
    assert [m["withdrawnTokens"] for m in minted] == [0] + [1] * 9
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    responses = await asyncio.gather(
        *(
            client.post(f"/api/federation/enrollment/{m['token']}", json={"csrPem": csr_pem})
            for m in minted
        )
    )
    assert sorted(r.status_code for r in responses) == [200] + [410] * 9
    rows = await ledger_rows(db_engine, grant["id"])
    assert [r["state"] for r in rows] == ["active"]  # never a second signature


async def test_second_token_of_a_grant_enrolling_now_is_409_before_any_ca_call(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    ca: CertificateAuthority,
    db_engine: AsyncEngine,
) -> None:
    second_answered = asyncio.Event()

    async def hold_first_issue(activity_type: str, proceed: Proceed) -> Any:
        if activity_type == "certificates.certify":
            await asyncio.wait_for(second_answered.wait(), 30)
        return await proceed()

    async with lane_with_ca(settings, temporal_env, ca, hook=hold_first_issue) as client:
        grant = await make_grant(client)
        first = (await make_token(client, grant["id"]))["token"]
        csr_pem, _ = make_csr(grant["_peer"]["commonName"])
        redeem_first = asyncio.create_task(
            client.post(f"/api/federation/enrollment/{first}", json={"csrPem": csr_pem})
        )
        token_hash = hash_token(first)
        for _ in range(200):  # until the first redeem holds its claim
            rows = await fetch_all(
                db_engine,
                "SELECT used_at FROM federation_enrollment_tokens WHERE token_hash = :h",
                h=token_hash,
            )
            if rows[0]["used_at"] is not None:
                break
            await asyncio.sleep(0.05)
        second = await make_token(client, grant["id"])
        assert second["withdrawnTokens"] == 0  # the claimed one is left to finish
        answer = await client.post(
            f"/api/federation/enrollment/{second['token']}", json={"csrPem": csr_pem}
        )
        second_answered.set()
        assert answer.status_code == 409, answer.text
        assert "in progress" in answer.json()["detail"]
        assert (await redeem_first).status_code == 200
        rows = await ledger_rows(db_engine, grant["id"])
        assert [r["state"] for r in rows] == ["active"]
