"""The certificate lifecycle between two gateway processes (issue 12, "done when").

Certificates live 60 s (MOSAIC_CERT_LIFETIME_SECONDS; notBefore is backdated a
minute, so A renews about 20 s after each issue). A renews on its own, over mTLS, with
a fresh key each time, while a loop of A → B `list` calls runs the whole time and must
see no failure across the swaps; B pins each new serial and revokes the superseded one
at the CA after the overlap. Then: B's CA down across a renewal point (A degraded, then
renewed, no failed call meanwhile), and `grant revoke` on B reaching A.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from federation.ca.builtin import BuiltinCA
from federation.ca.stepca_init import issue_listener_certificate
from federation.runs import peer_certificate_workflow_id
from tests.support.gateway_processes import (
    GatewayProcess,
    enroll_through_cli,
    free_ports,
    gateway_env,
    running_gateway_process,
)
from tests.support.ledger import ca_says_revoked
from tests.support.services import create_pg_database, drop_pg_database
from tests.support.stepca import StepCAServer

SCOPE = {"resources": ["tasks"], "excluded_resources": [], "max_rows_per_query": 50}
OVERLAP = 10


@dataclass
class Pair:
    a: GatewayProcess
    b: GatewayProcess
    b_ca_dir: Path | None
    pg_url: str


@dataclass
class Caller:
    """A → B `list` calls, one after the other, for as long as the test runs."""

    a: GatewayProcess
    peer_id: str
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.a.env['MOSAIC_ADMIN_TOKEN']}"}
        async with httpx.AsyncClient(base_url=self.a.url, headers=headers, timeout=60) as api:
            while not self._stop.is_set():
                answer = await api.post(
                    f"/api/admin/federation/peers/{self.peer_id}/requests",
                    json={"verb": "list", "resource": "tasks"},
                )
                self.calls += 1
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()


async def _pair(
    lane: str, temporal_env: WorkflowEnvironment, step_ca: StepCAServer, directory: Path
) -> AsyncIterator[Pair]:
    pg_name, pg_url = await create_pg_database()
    sqlite_url = f"sqlite+aiosqlite:///{directory / 'gw.db'}"
    a_port, b_port, listen = free_ports(3)
    temporal = temporal_env.client.service_client.config.target_host
    lifetime = {"MOSAIC_CERT_LIFETIME_SECONDS": "60", "MOSAIC_RENEW_OVERLAP_SECONDS": str(OVERLAP)}
    if lane == "stepca":
        b_env = gateway_env(
            "b",
            directory,
            database_url=pg_url,
            temporal_address=temporal,
            port=b_port,
            step_ca=step_ca,
            federation_port=listen,
            tls=issue_listener_certificate(step_ca.directory, ["127.0.0.1", "localhost"]),
            MOSAIC_CA_RETRY_SECONDS="5",
            **lifetime,
        )
        a_url, b_ca_dir = sqlite_url, None
    else:
        b_env = gateway_env(
            "b",
            directory,
            database_url=sqlite_url,
            temporal_address=temporal,
            port=b_port,
            federation_port=listen,
            **lifetime,
        )
        a_url, b_ca_dir = pg_url, Path(b_env["MOSAIC_DATA_DIR"]) / "ca"
    a_env = gateway_env("a", directory, database_url=a_url, temporal_address=temporal, port=a_port)
    try:
        async with (
            running_gateway_process("b", b_env, directory) as b,
            running_gateway_process("a", a_env, directory) as a,
        ):
            yield Pair(a, b, b_ca_dir, pg_url)
    finally:
        await drop_pg_database(pg_name)


@pytest.fixture(scope="module")
async def builtin_pair(
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pair]:
    async for pair in _pair("builtin", temporal_env, step_ca, tmp_path_factory.mktemp("life-b")):
        yield pair


@pytest.fixture(scope="module")
async def stepca_pair(
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pair]:
    async for pair in _pair("stepca", temporal_env, step_ca, tmp_path_factory.mktemp("life-s")):
        yield pair


def _enroll(pair: Pair) -> tuple[dict[str, Any], dict[str, Any]]:
    return enroll_through_cli(pair.b, pair.a, SCOPE, task="the one task")


def _certificates(pair: Pair, grant_id: str) -> list[dict[str, Any]]:
    return list(pair.b.json("federation", "grant", "certificates", grant_id))


async def _until(check: Any, *, within: float, every: float = 1.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = check()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def calling(pair: Pair, peer_id: str) -> AsyncIterator[Caller]:
    caller = Caller(pair.a, peer_id)
    task = asyncio.create_task(caller.run())
    try:
        yield caller
    finally:
        caller.stop()
        await task


async def test_three_renewals_in_a_row_with_no_failed_call_and_the_old_serials_revoked(
    builtin_pair: Pair,
) -> None:
    pair = builtin_pair
    grant, peer = _enroll(pair)
    first = peer["certSerial"]
    async with calling(pair, peer["id"]) as caller:
        rows = await _until(
            lambda: len(c := _certificates(pair, grant["id"])) >= 4 and c, within=150
        )
        await _until(
            lambda: (
                pair.a.json("federation", "peer", "show", peer["id"])["certSerial"]
                == pair.b.json("federation", "grant", "show", grant["id"])["certSerial"]
            ),
            within=20,
        )
        await asyncio.sleep(OVERLAP + 3)  # the last superseded one lives out its overlap
    assert caller.calls > 50 and caller.failures == [], caller.failures
    rows = _certificates(pair, grant["id"])
    active = [r for r in rows if r["state"] == "active"]
    assert len(active) == 1 and len(rows) >= 4
    a_now = pair.a.json("federation", "peer", "show", peer["id"])
    assert a_now["certSerial"] == active[0]["serial"] != first and a_now["state"] == "active"
    assert all(r["purpose"] == "renewal" for r in rows if r["serial"] != first)
    ca = BuiltinCA.open_or_create(pair.b_ca_dir) if pair.b_ca_dir else None
    assert ca is not None
    superseded = [r for r in rows if r["serial"] != active[0]["serial"]]
    assert superseded and all(r["state"] in ("superseded", "revoked") for r in superseded)
    due = [r for r in superseded if r["state"] == "revoked"]
    assert len(due) >= len(superseded) - 1  # the newest one may still be in its overlap
    assert all([await ca_says_revoked(ca, r["serial"]) for r in due])


async def test_grant_revoke_on_b_reaches_a_at_its_next_call_and_ends_its_lifecycle(
    builtin_pair: Pair, temporal_env: WorkflowEnvironment
) -> None:
    pair = builtin_pair
    grant, peer = _enroll(pair)
    serial = peer["certSerial"]
    pair.b.mosaic("federation", "grant", "revoke", grant["id"], "--reason", "contract ended")
    refused = pair.a.mosaic("federation", "list", peer["id"], "tasks", expect=5)
    assert "revoked" in refused.stderr
    assert pair.a.json("federation", "peer", "show", peer["id"])["state"] == "revoked"
    handle = temporal_env.client.get_workflow_handle(peer_certificate_workflow_id(peer["id"]))

    async def ended() -> bool:
        described = await handle.describe()
        return described.status != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING

    for _ in range(100):
        if await ended():
            break
        await asyncio.sleep(0.2)
    assert await ended()
    headers = {"Authorization": f"Bearer {pair.b.env['MOSAIC_ADMIN_TOKEN']}"}
    listed = [r["serial"] for r in _certificates(pair, grant["id"]) if r["state"] == "revoked"]
    assert serial in listed
    del headers


async def test_b_ca_down_across_a_renewal_point_degrades_a_then_renews_with_no_failed_call(
    stepca_pair: Pair, step_ca: StepCAServer
) -> None:
    pair = stepca_pair
    grant, peer = _enroll(pair)
    first = peer["certSerial"]
    seen_degraded = False
    async with calling(pair, peer["id"]) as caller:
        step_ca.stop()
        try:

            def degraded() -> bool:
                return bool(
                    pair.a.json("federation", "peer", "show", peer["id"])["state"] == "degraded"
                )

            seen_degraded = await _until(degraded, within=60)
        finally:
            step_ca.start()
        renewed = await _until(
            lambda: (
                (p := pair.a.json("federation", "peer", "show", peer["id"]))["certSerial"] != first
                and p["state"] == "active"
                and p
            ),
            within=60,
        )
    assert seen_degraded
    assert (
        renewed["certSerial"]
        == pair.b.json("federation", "grant", "show", grant["id"])["certSerial"]
    )
    assert caller.calls > 20 and caller.failures == [], caller.failures
