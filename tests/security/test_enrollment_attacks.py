"""Issue 15 (gateway B, the enrollment side), on both lanes with the real worker and CA:
each redeem gets the answer to its own CSR and its own audit row, a revoked
certificate is never handed out again, and weak signature hashes are named as such."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from temporalio.testing import WorkflowEnvironment

from federation.ca.base import CertificateAuthority
from federation.settings import Settings
from tests.support.factories import make_grant, make_token
from tests.support.lanes import lane_with_ca
from tests.support.legacy_csr import LegacyHash, legacy_signed_csr
from tests.support.pki import make_csr

pytestmark = pytest.mark.usefixtures("worker")

ENROLL = "/api/federation/enrollment"
SIGNATURE_NOT_ALLOWED = "CSR signature algorithm not allowed (use SHA-256 or better)"
# Long enough for a request to reach Temporal and start or attach; short of the 10 s
# a local activity may run before it is retried.
SETTLE_SECONDS = 0.5


class HoldFirst:
    """Activity hook: the first ``activity_type`` waits until released, so a run stays
    open while a second request starts or attaches."""

    def __init__(self, activity_type: str) -> None:
        self.activity_type = activity_type
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, activity_type: str, proceed: Callable[[], Awaitable[Any]]) -> Any:
        if activity_type == self.activity_type and not self.entered.is_set():
            self.entered.set()
            await asyncio.wait_for(self.release.wait(), timeout=8)
        return await proceed()


async def _enrollable(http: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    grant = await make_grant(http)
    return grant, (await make_token(http, grant["id"]))["token"]


async def _audit(http: httpx.AsyncClient, grant_id: str, **params: str) -> list[dict[str, Any]]:
    response = await http.get("/api/admin/federation/audit", params={"grant": grant_id, **params})
    return list(response.json())


def _redeem(
    http: httpx.AsyncClient, token: str, csr_pem: str, request_id: str
) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(
        http.post(
            f"{ENROLL}/{token}", json={"csrPem": csr_pem}, headers={"X-Request-ID": request_id}
        )
    )


@pytest.fixture
async def held_lane(
    settings: Settings, temporal_env: WorkflowEnvironment, ca: CertificateAuthority
) -> AsyncIterator[tuple[httpx.AsyncClient, HoldFirst]]:
    """A lane whose first redeem run waits in validate until the test releases it."""
    hold = HoldFirst("redeem.validate_and_claim")
    async with lane_with_ca(settings, temporal_env, ca, hook=hold) as lane:
        yield lane, hold


async def test_bad_csr_racing_a_good_one_gets_its_own_400_and_the_good_one_its_certificate(
    held_lane: tuple[httpx.AsyncClient, HoldFirst],
) -> None:
    lane, hold = held_lane
    grant, token = await _enrollable(lane)
    good_csr, _ = make_csr(grant["_peer"]["commonName"])
    bad = _redeem(lane, token, make_csr("someone-else.example.com")[0], "bad-csr")
    # Before the fix the bad CSR started the run (held in validate); now it is refused
    # at once. Either way the good request comes second.
    entered = asyncio.create_task(hold.entered.wait())
    await asyncio.wait({bad, entered}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    good = _redeem(lane, token, good_csr, "good-csr")
    await asyncio.sleep(SETTLE_SECONDS)
    hold.release.set()
    refused, enrolled = await bad, await good
    entered.cancel()
    audit = await _audit(lane, grant["id"])

    assert refused.status_code == 400, refused.text
    assert "common name" in refused.json()["detail"]
    assert enrolled.status_code == 200, enrolled.text
    rows = {
        (a["requestId"], a["outcome"], a["statusCode"])
        for a in audit
        if a["verb"] == "enrollment.redeem"
    }
    assert rows == {("bad-csr", "denied", 400), ("good-csr", "allowed", 200)}


async def test_request_attached_to_a_refused_run_gets_its_own_audit_row(
    held_lane: tuple[httpx.AsyncClient, HoldFirst],
) -> None:
    lane, hold = held_lane
    grant, token = await _enrollable(lane)
    cn = grant["_peer"]["commonName"]
    starter = _redeem(lane, token, make_csr(cn)[0], "starter")
    await asyncio.wait_for(hold.entered.wait(), timeout=15)
    attacher = _redeem(lane, token, make_csr(cn)[0], "attacher")
    await asyncio.sleep(SETTLE_SECONDS)
    # The held run now finds its grant revoked: a refusal for both requests.
    revoked = await lane.patch(f"/api/admin/federation/grants/{grant['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    hold.release.set()
    first, second = await starter, await attacher
    denied = await _audit(lane, grant["id"], outcome="denied")

    assert first.status_code == second.status_code == 409, (first.text, second.text)
    assert first.json() == second.json()
    redeems = [a for a in denied if a["verb"] == "enrollment.redeem"]
    # One row each: the run's for the request that started it, the API's for the other.
    assert sorted(a["requestId"] for a in redeems) == ["attacher", "starter"], redeems
    assert all(a["statusCode"] == 409 and a["actor"] == "anonymous" for a in redeems)
    assert all(a["reason"].startswith("GrantNotPending:") for a in redeems)


async def test_replay_after_revocation_is_410_with_the_reason_and_audited(
    client: httpx.AsyncClient,
) -> None:
    grant, token = await _enrollable(client)
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    enrolled = await client.post(f"{ENROLL}/{token}", json={"csrPem": csr_pem})
    assert enrolled.status_code == 200, enrolled.text
    serial = enrolled.json()["certSerial"]
    revoked = await client.patch(f"/api/admin/federation/grants/{grant['id']}/revoke")
    assert revoked.status_code == 200, revoked.text

    replay = await client.post(
        f"{ENROLL}/{token}", json={"csrPem": csr_pem}, headers={"X-Request-ID": "replay-1"}
    )

    assert replay.status_code == 410, replay.text
    detail = replay.json()["detail"]
    assert "no longer valid" in detail and "grant revoked" in detail
    assert "BEGIN CERTIFICATE" not in replay.text
    denied = [a for a in await _audit(client, grant["id"], outcome="denied")]
    assert [(a["requestId"], a["statusCode"], a["certSerial"]) for a in denied] == [
        ("replay-1", 410, serial)
    ]
    assert "grant revoked" in denied[0]["reason"]


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.mark.parametrize(
    ("digest", "key"),
    [("sha1", _p256), ("sha1", _rsa), ("md5", _rsa)],
    ids=["sha1-ecdsa", "sha1-rsa", "md5-rsa"],
)
async def test_weak_signature_hash_is_named_as_such_and_audited(
    client: httpx.AsyncClient,
    digest: LegacyHash,
    key: Callable[[], ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey],
) -> None:
    grant, token = await _enrollable(client)
    cn = grant["_peer"]["commonName"]

    weak = await client.post(
        f"{ENROLL}/{token}", json={"csrPem": legacy_signed_csr(cn, digest, key())}
    )

    assert weak.status_code == 400
    assert weak.json() == {"detail": SIGNATURE_NOT_ALLOWED}
    denied = await _audit(client, grant["id"], outcome="denied")
    assert [(a["statusCode"], a["reason"]) for a in denied] == [
        (400, f"InvalidCSR: {SIGNATURE_NOT_ALLOWED}")
    ]
    good = await client.post(f"{ENROLL}/{token}", json={"csrPem": make_csr(cn)[0]})
    assert good.status_code == 200, good.text
