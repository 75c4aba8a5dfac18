"""Renewal on gateway B over the federation listener (issue 12, "B: renewal and
revocation"), both lanes: the new serial pinned in place of the old, the overlap window,
replay, a race of two renewals, and the CRL / revocation list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.ca.base import CertificateAuthority
from federation.ca.builtin import BuiltinCA
from federation.pki.certs import verify_issued_certificate
from federation.pki.fingerprints import public_key_der
from federation.settings import Settings
from tests.support.federation import (
    EnrolledPeer,
    Listener,
    enroll_peer,
    mtls_client,
    running_listener,
)
from tests.support.ledger import ca_says_revoked, ledger_rows
from tests.support.pki import make_csr
from tests.support.stepca import StepCAServer

pytestmark = pytest.mark.usefixtures("worker")

OVERLAP = 3
SCOPE = {"resources": ["tasks"], "excluded_resources": [], "max_rows_per_query": 10}


@pytest.fixture(scope="module")
async def listener(
    settings: Settings,
    ca: CertificateAuthority,
    step_ca: StepCAServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Listener]:
    short = settings.model_copy(update={"mosaic_renew_overlap_seconds": OVERLAP})
    async with running_listener(short, ca, step_ca, tmp_path_factory.mktemp("renewal")) as running:
        yield running


async def _renew(
    listener: Listener, peer: EnrolledPeer, key: ec.EllipticCurvePrivateKey
) -> httpx.Response:
    csr_pem, _ = make_csr(peer.grant["_peer"]["commonName"], key)
    async with mtls_client(listener, peer.cert_pem, peer.chain_pem, peer.key) as remote:
        return await remote.post("/api/federation/v1/renew", json={"csrPem": csr_pem})


async def _capabilities(listener: Listener, cert: str, chain: str, key: Any) -> int:
    async with mtls_client(listener, cert, chain, key) as remote:
        return (await remote.get("/api/federation/v1/capabilities")).status_code


async def test_renewal_pins_the_new_serial_and_the_old_one_lives_out_its_overlap(
    listener: Listener,
    client: httpx.AsyncClient,
    ca: CertificateAuthority,
    db_engine: AsyncEngine,
) -> None:
    peer = await enroll_peer(client, SCOPE)
    fresh = ec.generate_private_key(ec.SECP256R1())
    answer = await _renew(listener, peer, fresh)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    new = verify_issued_certificate(
        body["certPem"],
        body["certChainPem"],
        roots=ca.root_certificates(),
        expected_grant_id=peer.grant_id,
        expected_subject_user_id=peer.user_id,
        expected_public_key_der=public_key_der(fresh.public_key()),
    )
    assert new.serial == body["certSerial"] != peer.serial
    grant = (await client.get(f"/api/admin/federation/grants/{peer.grant_id}")).json()
    assert grant["certSerial"] == new.serial
    rows = {r["serial"]: r for r in await ledger_rows(db_engine, peer.grant_id)}
    assert rows[new.serial]["state"] == "active"
    assert rows[peer.serial]["state"] == "superseded" and rows[peer.serial]["revoke_after"]

    # In flight on the old certificate: still accepted during the overlap.
    assert await _capabilities(listener, peer.cert_pem, peer.chain_pem, peer.key) == 200
    assert await _capabilities(listener, body["certPem"], body["certChainPem"], fresh) == 200
    await asyncio.sleep(OVERLAP + 0.5)
    assert await _capabilities(listener, peer.cert_pem, peer.chain_pem, peer.key) == 403
    for _ in range(100):  # the RevokeCertificates run waited for the overlap's end
        if (await ledger_rows(db_engine, peer.grant_id))[0]["state"] == "revoked":
            break
        await asyncio.sleep(0.1)
    old = {r["serial"]: r for r in await ledger_rows(db_engine, peer.grant_id)}[peer.serial]
    assert old["state"] == "revoked" and await ca_says_revoked(ca, peer.serial)


async def test_the_same_csr_again_returns_the_same_certificate(
    listener: Listener, client: httpx.AsyncClient
) -> None:
    peer = await enroll_peer(client, SCOPE)
    fresh = ec.generate_private_key(ec.SECP256R1())
    csr_pem, _ = make_csr(peer.grant["_peer"]["commonName"], fresh)
    async with mtls_client(listener, peer.cert_pem, peer.chain_pem, peer.key) as remote:
        first = await remote.post("/api/federation/v1/renew", json={"csrPem": csr_pem})
        again = await remote.post("/api/federation/v1/renew", json={"csrPem": csr_pem})
    assert first.status_code == again.status_code == 200
    assert again.json()["certSerial"] == first.json()["certSerial"]


async def test_two_renewals_racing_produce_one_winner_and_a_clean_refusal(
    listener: Listener, client: httpx.AsyncClient, ca: CertificateAuthority, db_engine: AsyncEngine
) -> None:
    peer = await enroll_peer(client, SCOPE)
    answers = await asyncio.gather(
        _renew(listener, peer, ec.generate_private_key(ec.SECP256R1())),
        _renew(listener, peer, ec.generate_private_key(ec.SECP256R1())),
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()["certSerial"]
    for _ in range(100):
        rows = await ledger_rows(db_engine, peer.grant_id)
        losers = [r for r in rows if r["serial"] not in (winner, peer.serial)]
        if losers and all(r["state"] == "revoked" for r in losers):
            break
        await asyncio.sleep(0.1)
    assert [r["state"] for r in losers] == ["revoked"] * len(losers) and losers
    assert all([await ca_says_revoked(ca, r["serial"]) for r in losers])


async def test_a_renewal_csr_must_keep_the_peers_common_name(
    listener: Listener, client: httpx.AsyncClient
) -> None:
    peer = await enroll_peer(client, SCOPE)
    csr_pem, _ = make_csr("someone-else.example.com")
    async with mtls_client(listener, peer.cert_pem, peer.chain_pem, peer.key) as remote:
        answer = await remote.post("/api/federation/v1/renew", json={"csrPem": csr_pem})
    assert answer.status_code == 400 and "common name" in answer.json()["detail"]


async def test_the_crl_and_the_revocation_list_name_a_revoked_grants_serial(
    listener: Listener, client: httpx.AsyncClient, ca: CertificateAuthority
) -> None:
    peer = await enroll_peer(client, SCOPE)
    assert (
        await client.patch(f"/api/admin/federation/grants/{peer.grant_id}/revoke")
    ).status_code == 200
    async with mtls_client(listener, peer.cert_pem, peer.chain_pem, peer.key) as remote:
        listed = await remote.get("/api/federation/v1/revocations")
        crl = await remote.get("/api/federation/v1/crl")
    assert peer.serial in {r["serial"] for r in listed.json()["revoked"]}
    if not isinstance(ca, BuiltinCA):
        assert crl.status_code == 501 and "revocations" in crl.json()["detail"]
        return
    assert crl.status_code == 200 and crl.headers["content-type"] == "application/pkix-crl"
    parsed = x509.load_der_x509_crl(crl.content)
    assert parsed.is_signature_valid(ca.intermediate_certificates()[0].public_key())  # type: ignore[arg-type]
    entry = parsed.get_revoked_certificate_by_serial_number(int(peer.serial, 16))
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.privilege_withdrawn
    assert parsed.next_update_utc is not None and parsed.next_update_utc > datetime.now(UTC)


async def test_a_peer_whose_clock_is_30_s_behind_accepts_a_fresh_certificate(
    client: httpx.AsyncClient, ca: CertificateAuthority
) -> None:
    peer = await enroll_peer(client, SCOPE)
    behind = datetime.now(UTC) - timedelta(seconds=30)
    verified = verify_issued_certificate(
        peer.cert_pem,
        peer.chain_pem,
        roots=ca.root_certificates(),
        expected_grant_id=peer.grant_id,
        expected_subject_user_id=peer.user_id,
        expected_public_key_der=public_key_der(peer.key.public_key()),
        at=behind,
    )
    assert verified.not_before < behind
