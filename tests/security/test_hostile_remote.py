"""Gateway A enrolls with a hostile remote (issues 10 and 15).

The remote is a real HTTP server (FastAPI on uvicorn, or a raw asyncio server for
the endless answer) that A's real PeerAdd workflow talks to: real worker, real
Temporal dev server, A on PostgreSQL. Each answer breaks the protocol in one way;
A must refuse it at once (one request, no retries, well inside its submit window)
with a one-line reason naming what was wrong, store none of it, and wipe its key.
Transient answers are the opposite: A keeps its key while the remote may still
activate the CSR, and gives up only when its patience runs out.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from fastapi import Response
from temporalio.testing import WorkflowEnvironment

from federation.ca.builtin import BuiltinCA
from federation.db.migrate import upgrade_async
from federation.remote_trust import ca_fingerprint
from tests.conftest import make_settings
from tests.support.dbsnap import fetch_all
from tests.support.faults import db_id
from tests.support.gateways import Gateway, running_gateway, wait_for_peer
from tests.support.hostile import (
    DROP,
    Case,
    EndlessAnswer,
    HostileRemote,
    hostile_remote,
    json_answer,
    pem,
    raw_answer,
    rss_bytes,
    watching,
)
from tests.support.services import create_pg_database, drop_pg_database
from tests.support.stepca import free_port

SUBMIT_SECONDS = 4.0
PATIENCE_SECONDS = 8.0
PEERS = "/api/admin/federation/peers"
FORBIDDEN_IN_REASONS = ("sqlalchemy", "[SQL", "INSERT", "UPDATE ", "Traceback", "asyncpg", "\\x")


@pytest.fixture(scope="module")
async def a(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """Gateway A on PostgreSQL, with a short submit window and patience."""
    name, url = await create_pg_database()
    try:
        await upgrade_async(url)
        settings = make_settings(
            url,
            tmp_path_factory.mktemp("hostile-a"),
            temporal_address=temporal_env.client.service_client.config.target_host,
        )
        async with running_gateway(
            "a",
            settings,
            database_url=url,
            data_dir=tmp_path_factory.mktemp("hostile-a-data"),
            temporal_env=temporal_env,
            ca=BuiltinCA.open_or_create(tmp_path_factory.mktemp("hostile-a-ca")),
            sealing_secret="hostile-a-sealing-secret-0123456789",
            overrides={
                "mosaic_enroll_submit_seconds": SUBMIT_SECONDS,
                "mosaic_enroll_patience_seconds": PATIENCE_SECONDS,
            },
        ) as gateway:
            yield gateway
    finally:
        await drop_pg_database(name)


@pytest.fixture(scope="module")
async def remote(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HostileRemote]:
    async with hostile_remote(tmp_path_factory.mktemp("remote-ca")) as server:
        yield server


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> BuiltinCA:
    """Another CA: it can sign A's CSR with the right OIDs, but it is not the remote's."""
    return BuiltinCA.open_or_create(tmp_path_factory.mktemp("other-ca"))


@dataclass
class Ended:
    peer: dict[str, Any]
    row: dict[str, Any]
    seconds: float

    @property
    def reason(self) -> str:
        return str(self.peer["failureReason"])


async def _enroll(a: Gateway, url: str, **extra: Any) -> str:
    started = await a.api.post(f"{PEERS}/enroll", json={"enrollmentUrl": url, **extra})
    assert started.status_code == 202, started.text
    return str(started.json()["peerId"])


async def _row(a: Gateway, peer_id: str) -> dict[str, Any]:
    rows = await fetch_all(
        a.engine, "SELECT * FROM federation_peers WHERE id = :id", id=db_id(a.engine, peer_id)
    )
    return rows[0]


async def _run(a: Gateway, url: str, *, within: float = 60, **extra: Any) -> Ended:
    loop = asyncio.get_running_loop()
    started = loop.time()
    peer_id = await _enroll(a, url, **extra)
    peer = await wait_for_peer(a, peer_id, within=within)
    return Ended(peer, await _row(a, peer_id), loop.time() - started)


def _assert_clean_reason(reason: str) -> None:
    assert reason and len(reason) <= 500, reason
    assert reason.isprintable(), repr(reason)  # one line: no newline, ESC or NUL
    for text in FORBIDDEN_IN_REASONS:
        assert text not in reason, reason


def _assert_refused_at_once(ended: Ended, expected: str) -> None:
    assert ended.peer["state"] == "failed", ended.peer
    assert expected in ended.reason, ended.reason
    _assert_clean_reason(ended.reason)
    assert ended.seconds < SUBMIT_SECONDS, f"not at once: {ended.seconds:.1f}s"
    assert ended.row["client_key_sealed"] is None and ended.row["enrollment_url_sealed"] is None
    assert ended.row["cert_pem"] is None and ended.row["remote_ca_pem"] is None


# --- the preflight answer: refused before any key or CSR is made ----------------------

Preflight = Callable[[HostileRemote], dict[str, Any] | Response]

PREFLIGHT_CASES: list[tuple[str, Preflight, str]] = [
    ("not-json", lambda r: raw_answer(b"<html>welcome</html>"), "preflight answer is not JSON"),
    ("json-list", lambda r: json_answer([r.preflight_body()]), "is not a JSON object"),
    ("json-string", lambda r: json_answer("peer"), "is not a JSON object"),
    (
        "cn-newline-ansi",
        lambda r: r.preflight_body(peerCommonName="gw.example.com\n\x1b[31mEVIL\x1b[0m"),
        "peerCommonName is not a valid common name",
    ),
    (
        "cn-wildcard",
        lambda r: r.preflight_body(peerCommonName="*.example.com"),
        "peerCommonName is not a valid common name",
    ),
    (
        "cn-5001-chars-with-nul",
        lambda r: r.preflight_body(peerCommonName="a" * 2500 + "\x00" + "a" * 2500),
        "peerCommonName is not a valid common name",
    ),
    ("cn-number", lambda r: r.preflight_body(peerCommonName=7), "peerCommonName is not a string"),
    (
        "grant-id-uppercase",
        lambda r: r.preflight_body(grantId=str(uuid.uuid4()).upper()),
        "grantId is not a canonical UUID",
    ),
    ("user-id-missing", lambda r: r.preflight_body(subjectUserId=DROP), "subjectUserId is missing"),
    (
        "expires-at-words",
        lambda r: r.preflight_body(expiresAt="tomorrow\x1b[2J"),
        "expiresAt is not an ISO 8601 timestamp",
    ),
    (
        "expires-at-naive",
        lambda r: r.preflight_body(expiresAt="2099-01-01T00:00:00"),
        "expiresAt is not an ISO 8601 timestamp",
    ),
    ("ca-fingerprint-missing", lambda r: r.preflight_body(caFingerprint=DROP), "is missing"),
    (
        "ca-fingerprint-uppercase",
        lambda r: r.preflight_body(caFingerprint=ca_fingerprint(r.root).upper()),
        "caFingerprint is not a SHA-256 fingerprint",
    ),
    (
        "federation-url-plain-http",
        lambda r: r.preflight_body(federationUrl="http://gw.example.com:8443"),
        "federationUrl must use https",
    ),
    (
        "federation-url-link-local",
        lambda r: r.preflight_body(federationUrl="https://169.254.169.254/"),
        "federationUrl points to 169.254.169.254, a link-local address",
    ),
    (
        "error-detail-with-escapes",
        lambda r: json_answer({"detail": "\x1b[31mgo\naway\x1b[0m\r\x00 now" + "!" * 5000}, 403),
        "remote answered 403: go away now!!!",
    ),
    (
        "redirect-to-metadata-service",
        lambda r: Response(
            b"", 302, headers={"location": "http://169.254.169.254/latest/meta-data/"}
        ),
        "remote answered 302: Found",
    ),
]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [pytest.param(answer, expected, id=case_id) for case_id, answer, expected in PREFLIGHT_CASES],
)
async def test_bad_preflight_answer_fails_the_peer_at_once_before_any_csr(
    a: Gateway, remote: HostileRemote, answer: Preflight, expected: str
) -> None:
    url = remote.add(Case(preflight=answer(remote), redeem=_never_called))
    ended = await _run(a, url)

    _assert_refused_at_once(ended, expected)
    assert remote.case(url).requests == ["GET"]  # not retried, and no CSR sent
    assert ended.row["common_name"] is None  # nothing of the answer was stored
    assert ended.row["remote_grant_id"] is None


async def _never_called(csr_pem: str, pre: dict[str, Any]) -> Any:
    raise AssertionError("A sent a CSR after a preflight it should have refused")


# --- the redeem answer: a definitive, final refusal after one POST ---------------------

Redeem = Callable[[HostileRemote, BuiltinCA], Callable[[str, dict[str, Any]], Any]]


def _answer(answer: Callable[[], Response]) -> Redeem:
    async def redeem(csr_pem: str, pre: dict[str, Any]) -> Any:
        return answer()

    return lambda r, other: redeem


def _signed(change: Callable[[dict[str, str], HostileRemote, BuiltinCA], None]) -> Redeem:
    def build(r: HostileRemote, other: BuiltinCA) -> Any:
        async def redeem(csr_pem: str, pre: dict[str, Any]) -> Any:
            answer = await r.signed(csr_pem, pre)
            change(answer, r, other)
            return json_answer(answer)

        return redeem

    return build


def _by_other_ca(announce_other_root: bool) -> Redeem:
    """A certificate with the right OIDs and A's key, from a CA that is not the one the
    preflight announced (announcing that CA's root in the answer, or the remote's)."""

    def build(r: HostileRemote, other: BuiltinCA) -> Any:
        async def redeem(csr_pem: str, pre: dict[str, Any]) -> Any:
            answer = await r.signed(csr_pem, pre, by=other)
            if announce_other_root:
                answer["caCertPem"] = pem(other.root_certificates()[0])
            return json_answer(answer)

        return redeem

    return build


def _drop(field: str) -> Callable[[dict[str, str], HostileRemote, BuiltinCA], None]:
    return lambda answer, r, other: answer.pop(field)


REDEEM_CASES: list[tuple[str, Redeem, str]] = [
    ("not-json", _answer(lambda: raw_answer(b"-----BEGIN CERTIFICATE-----")), "is not JSON"),
    ("json-list", _answer(lambda: json_answer([{"certPem": "x"}])), "is not a JSON object"),
    ("no-certificate", _signed(_drop("certPem")), "redeem answer: certPem is missing"),
    ("no-ca-root", _signed(_drop("caCertPem")), "redeem answer: caCertPem is missing"),
    (
        "cert-pem-50-mb",
        _answer(lambda: json_answer({"certPem": "A" * (50 << 20)})),
        "remote answer too large",
    ),
    (
        "cert-pem-over-16-kib",
        _signed(lambda answer, r, o: answer.update(certPem=answer["certPem"] + "\n" * 17000)),
        "certPem is larger than 16384 characters",
    ),
    (
        "other-ca-same-oids-and-key",
        _by_other_ca(announce_other_root=False),
        "issued certificate does not chain to the trusted root",
    ),
    (
        "other-ca-announced-in-the-answer",
        _by_other_ca(announce_other_root=True),
        "remote CA certificate does not match the fingerprint of its preflight answer",
    ),
]


@pytest.mark.parametrize(
    ("redeem", "expected"),
    [pytest.param(redeem, expected, id=case_id) for case_id, redeem, expected in REDEEM_CASES],
)
async def test_bad_redeem_answer_fails_the_peer_at_once_and_wipes_the_key(
    a: Gateway, remote: HostileRemote, other_ca: BuiltinCA, redeem: Redeem, expected: str
) -> None:
    url = remote.add(Case(preflight=remote.preflight_body(), redeem=redeem(remote, other_ca)))
    ended = await _run(a, url)

    _assert_refused_at_once(ended, expected)
    assert remote.case(url).requests == ["GET", "POST"]  # one CSR, never retried
    assert ended.row["cert_serial"] is None and ended.row["remote_ca_fingerprint"] is None
    # The status showed the CA the preflight announced (what the pin is checked against).
    shown = (await a.api.get(f"{PEERS}/{ended.peer['id']}", params={"workflow": "true"})).json()
    assert shown["workflow"]["caFingerprint"] == ca_fingerprint(remote.root)


# --- the pin ----------------------------------------------------------------------------


async def test_wrong_pinned_ca_fingerprint_refuses_before_any_csr_is_sent(
    a: Gateway, remote: HostileRemote
) -> None:
    url = remote.add(Case(preflight=remote.preflight_body(), redeem=_never_called))
    elsewhere = hashlib.sha256(b"some other CA").hexdigest()
    # Written as `step` prints it: colon-separated, upper case.
    colons = ":".join(elsewhere[i : i + 2] for i in range(0, 64, 2)).upper()
    ended = await _run(a, url, caFingerprint=colons)

    _assert_refused_at_once(ended, "does not match the pinned caFingerprint")
    assert remote.case(url).requests == ["GET"]
    assert ended.row["common_name"] is None


async def test_matching_pin_enrolls_and_stores_the_pinned_ca_and_federation_url(
    a: Gateway, remote: HostileRemote
) -> None:
    fingerprint = ca_fingerprint(remote.root)
    held = asyncio.Event()
    release = asyncio.Event()

    async def redeem(csr_pem: str, pre: dict[str, Any]) -> Any:
        held.set()
        await release.wait()
        return json_answer(await remote.signed(csr_pem, pre))

    body = remote.preflight_body(federationUrl="https://remote.example:8443")
    url = remote.add(Case(preflight=body, redeem=redeem))
    peer_id = await _enroll(a, url, caFingerprint=fingerprint.upper())
    await asyncio.wait_for(held.wait(), 30)
    # While the CSR is with the remote, the status names the CA it will be held to.
    pending = (await a.api.get(f"{PEERS}/{peer_id}")).json()
    assert pending["state"] == "pending"
    assert pending["workflow"]["caFingerprint"] == fingerprint
    assert pending["workflow"]["commonName"] == body["peerCommonName"]
    release.set()

    peer = await wait_for_peer(a, peer_id)
    assert peer["state"] == "active", peer
    assert peer["commonName"] == body["peerCommonName"]
    assert peer["remoteCaFingerprint"] == fingerprint
    assert peer["federationUrl"] == "https://remote.example:8443"
    row = await _row(a, peer_id)
    assert x509.load_pem_x509_certificate(row["remote_ca_pem"].encode()) == remote.root
    assert row["remote_ca_fingerprint"] == fingerprint and row["client_key_sealed"]


# --- size -------------------------------------------------------------------------------


async def test_endless_preflight_answer_is_cut_at_the_cap_and_fails_at_once(a: Gateway) -> None:
    async with EndlessAnswer(total=1 << 30) as endless, watching(a) as watch:
        before = rss_bytes()
        url = f"http://127.0.0.1:{endless.port}/api/federation/enrollment/{'ab' * 32}"
        ended = await _run(a, url)

    _assert_refused_at_once(ended, "remote answer too large")
    assert endless.requests == 1
    assert endless.sent < 64 << 20, f"A read on: {endless.sent} bytes sent"
    assert watch.peak_rss - before < 64 << 20, f"RSS grew by {(watch.peak_rss - before) >> 20} MiB"
    assert watch.slowest_health < 1.0, f"/healthz took {watch.slowest_health:.2f}s"


# --- transient answers: the key is kept while the remote may still activate ------------


def _still_in_progress() -> Response:
    detail = {"detail": "enrollment is still in progress; retry the same request"}
    return json_answer(detail, 503, **{"retry-after": "1"})


async def _wait_until_waiting(a: Gateway, peer_id: str, within: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        peer: dict[str, Any] = (await a.api.get(f"{PEERS}/{peer_id}")).json()
        if (peer.get("workflow") or {}).get("step", "").startswith("waiting for"):
            return peer
        assert peer["state"] == "pending", peer
        await asyncio.sleep(0.1)
    raise AssertionError("peer add never started waiting")


async def test_transient_answers_keep_the_key_until_patience_runs_out(
    a: Gateway, remote: HostileRemote
) -> None:
    async def redeem(csr_pem: str, pre: dict[str, Any]) -> Any:
        return _still_in_progress()

    url = remote.add(Case(preflight=remote.preflight_body(), redeem=redeem))
    started = asyncio.get_running_loop().time()
    peer_id = await _enroll(a, url)

    waiting = await _wait_until_waiting(a, peer_id)
    # The fast retries came first (Temporal ends them early when the next backoff would
    # not fit in the submit window).
    assert asyncio.get_running_loop().time() - started >= SUBMIT_SECONDS / 2
    assert remote.case(url).posts >= 2
    step = waiting["workflow"]["step"]
    assert step.startswith(f"waiting for 127.0.0.1:{remote.server.port}: remote answered 503:")
    assert "enrollment is still in progress" in step and "(since 20" in step, step
    row = await _row(a, peer_id)
    assert row["state"] == "pending" and row["client_key_sealed"] and row["enrollment_url_sealed"]

    peer = await wait_for_peer(a, peer_id, within=60)
    elapsed = asyncio.get_running_loop().time() - started
    assert peer["state"] == "failed"
    assert "gave up after" in peer["failureReason"] and "503" in peer["failureReason"]
    assert "the client key was wiped" in peer["failureReason"]
    _assert_clean_reason(peer["failureReason"])
    assert elapsed >= SUBMIT_SECONDS + PATIENCE_SECONDS - 1, elapsed
    assert remote.case(url).posts >= 4  # fast retries, then the slow ones
    row = await _row(a, peer_id)
    assert row["client_key_sealed"] is None and row["enrollment_url_sealed"] is None


@pytest.mark.parametrize("final", ["signed", "refused"])
async def test_a_definitive_answer_while_waiting_ends_the_wait_at_once(
    a: Gateway, remote: HostileRemote, final: str
) -> None:
    decided = asyncio.Event()

    async def redeem(csr_pem: str, pre: dict[str, Any]) -> Any:
        if not decided.is_set():
            return _still_in_progress()
        if final == "signed":
            return json_answer(await remote.signed(csr_pem, pre))
        return json_answer({"detail": "enrollment token has expired or was already used"}, 410)

    url = remote.add(Case(preflight=remote.preflight_body(), redeem=redeem))
    started = asyncio.get_running_loop().time()
    peer_id = await _enroll(a, url)
    await _wait_until_waiting(a, peer_id)
    decided.set()

    peer = await wait_for_peer(a, peer_id, within=60)
    elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < SUBMIT_SECONDS + PATIENCE_SECONDS - 1, elapsed  # patience not used up
    row = await _row(a, peer_id)
    if final == "signed":
        assert peer["state"] == "active", peer
        assert row["client_key_sealed"] and row["cert_serial"] == peer["certSerial"]
    else:
        assert peer["state"] == "failed"
        assert peer["failureReason"].startswith("remote answered 410: enrollment token has")
        assert row["client_key_sealed"] is None


async def test_an_unreachable_remote_fails_the_preflight_after_the_submit_window(
    a: Gateway,
) -> None:
    # No key exists before the preflight answers, so there is nothing to be patient for.
    url = f"http://127.0.0.1:{free_port()}/api/federation/enrollment/{'cd' * 32}"
    ended = await _run(a, url)

    assert ended.peer["state"] == "failed"
    assert ended.reason.startswith("gave up waiting for the remote gateway: remote 127.0.0.1:")
    assert ended.reason.endswith("unreachable: ConnectError"), ended.reason
    assert SUBMIT_SECONDS - 2 <= ended.seconds < SUBMIT_SECONDS + PATIENCE_SECONDS
    assert ended.row["client_key_sealed"] is None and ended.row["common_name"] is None
