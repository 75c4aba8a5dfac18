"""Two gateways on one Temporal dev server and namespace, on default settings (no
MOSAIC_TASK_QUEUE): each one's runs are served by its own worker and land in its own
database; a worker never joins another gateway's queue (issue 14)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from federation.ca.builtin import BuiltinCA
from federation.db.migrate import upgrade_async
from federation.db.session import make_engine
from federation.identity import task_queue_for
from federation.runs import reconcile_schedule_id, redeem_workflow_id
from federation.tokens import hash_token
from tests.conftest import ADMIN_TOKEN, SEALING_SECRET, make_settings
from tests.support.commands import MOSAIC, clean_env
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.faults import db_id
from tests.support.gateways import Gateway, running_gateway, wait_for_peer
from tests.support.identity import gateway_client, gateway_id_of
from tests.support.pki import make_csr
from tests.support.services import create_pg_database, drop_pg_database
from tests.support.stepca import StepCAServer, free_port
from workflows.identity import MEMO_KEY, gateway_of_worker
from workflows.reconcile import ReconcileInput, ensure_reconcile_schedule
from workflows.task_queue import recent_pollers

REDEEMS_EACH = 4
# The history events that name the worker which handled them.
_SERVED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED: "workflow_task_started_event_attributes",
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: "activity_task_started_event_attributes",
}


@dataclass
class Shared:
    a: Gateway
    b: Gateway
    a_id: uuid.UUID
    b_id: uuid.UUID
    temporal_env: WorkflowEnvironment

    def queue(self, gateway: Gateway) -> str:
        return task_queue_for(self.a_id if gateway is self.a else self.b_id)


@pytest.fixture(scope="module")
async def shared(
    temporal_env: WorkflowEnvironment,
    step_ca: StepCAServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Shared]:
    """A on SQLite with the built-in CA, B on PostgreSQL with step-ca; both on the default
    task queue setting ("": derived from each one's identity)."""
    pg_name, pg_url = await create_pg_database()
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('shared-a') / 'a.db'}"
    await upgrade_async(pg_url)
    await upgrade_async(sqlite_url)
    stepca = step_ca.provider()
    base = make_settings(
        sqlite_url,
        tmp_path_factory.mktemp("shared-base"),
        temporal_address=temporal_env.client.service_client.config.target_host,
    )
    assert base.mosaic_task_queue == ""  # the default: nothing set
    default_queue = {"mosaic_task_queue": ""}
    try:
        async with (
            running_gateway(
                "b",
                base,
                database_url=pg_url,
                data_dir=tmp_path_factory.mktemp("shared-b"),
                temporal_env=temporal_env,
                ca=stepca,
                sealing_secret="shared-b-sealing-secret-0123456789",
                overrides=default_queue,
            ) as b,
            running_gateway(
                "a",
                base,
                database_url=sqlite_url,
                data_dir=tmp_path_factory.mktemp("shared-a-data"),
                temporal_env=temporal_env,
                ca=BuiltinCA.open_or_create(tmp_path_factory.mktemp("shared-a-ca")),
                sealing_secret="shared-a-sealing-secret-0123456789",
                overrides=default_queue,
            ) as a,
        ):
            yield Shared(
                a, b, await gateway_id_of(a.engine), await gateway_id_of(b.engine), temporal_env
            )
    finally:
        await stepca.aclose()
        await drop_pg_database(pg_name)


async def _redeem_count(gateway: Gateway) -> int:
    rows = await fetch_all(
        gateway.engine,
        "SELECT count(*) AS n FROM federation_audit_log WHERE verb = 'enrollment.redeem'",
    )
    return int(rows[0]["n"])


async def _served_by(handle: WorkflowHandle[Any, Any]) -> set[uuid.UUID | None]:
    """The gateways whose workers handled the run's workflow and activity tasks."""
    served: set[uuid.UUID | None] = set()
    async for event in handle.fetch_history_events():
        attributes = _SERVED.get(event.event_type)
        if attributes:
            served.add(gateway_of_worker(getattr(event, attributes).identity))
    return served


async def _redeem(gateway: Gateway) -> tuple[str, str]:
    """A grant and token minted on ``gateway``, redeemed at its own enrollment URL."""
    grant = await make_grant(gateway.api)
    token = (await make_token(gateway.api, grant["id"]))["token"]
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(
            f"{gateway.url}/api/federation/enrollment/{token}", json={"csrPem": csr_pem}
        )
    assert answer.status_code == 200, answer.text
    return grant["id"], token


async def _assert_own_run(
    shared: Shared, gateway: Gateway, workflow_id: str
) -> WorkflowHandle[Any, Any]:
    own = shared.a_id if gateway is shared.a else shared.b_id
    handle = shared.temporal_env.client.get_workflow_handle(workflow_id)
    described = await handle.describe()
    assert described.task_queue == shared.queue(gateway)
    assert await described.memo_value(MEMO_KEY) == str(own)
    assert await _served_by(handle) == {own}, f"{workflow_id} served by another worker"
    return handle


def test_each_gateway_gets_a_queue_of_its_own_from_its_identity(shared: Shared) -> None:
    assert shared.a_id != shared.b_id
    for gateway, own in ((shared.a, shared.a_id), (shared.b, shared.b_id)):
        assert shared.queue(gateway) == f"mosaic-{own.hex[:12]}"
    assert shared.queue(shared.a) != shared.queue(shared.b)


async def test_redeems_and_peer_adds_of_two_gateways_are_served_by_their_own_workers(
    shared: Shared,
) -> None:
    a, b = shared.a, shared.b
    before = {a.name: await _redeem_count(a), b.name: await _redeem_count(b)}

    # As in the incident: several redeems in a row on each gateway, side by side.
    redeemed = await asyncio.gather(
        *(_redeem(gateway) for gateway in (a, b) for _ in range(REDEEMS_EACH))
    )
    # A enrolls with B (A's PeerAdd run, B's RedeemEnrollment run), and B with A.
    peer_adds = []
    for requester, remote in ((a, b), (b, a)):
        grant = await make_grant(remote.api)
        issued = await make_token(remote.api, grant["id"])
        started = await requester.api.post(
            "/api/admin/federation/peers/enroll", json={"enrollmentUrl": issued["enrollmentUrl"]}
        )
        assert started.status_code == 202, started.text
        peer = await wait_for_peer(requester, started.json()["peerId"])
        assert peer["state"] == "active", peer
        peer_adds.append((requester, remote, grant["id"], issued["token"], started.json()))

    for index, (grant_id, token) in enumerate(redeemed):
        gateway = a if index < REDEEMS_EACH else b
        await _assert_own_run(shared, gateway, redeem_workflow_id(hash_token(token)))
        rows = await fetch_all(
            gateway.engine,
            "SELECT outcome FROM federation_audit_log"
            " WHERE verb = 'enrollment.redeem' AND grant_id = :g",
            g=db_id(gateway.engine, grant_id),
        )
        assert [r["outcome"] for r in rows] == ["allowed"]
    for requester, remote, grant_id, token, started in peer_adds:
        await _assert_own_run(shared, requester, started["workflowId"])
        await _assert_own_run(shared, remote, redeem_workflow_id(hash_token(token)))
        enrolled = await fetch_all(
            requester.engine,
            "SELECT outcome FROM federation_audit_log WHERE verb = 'peer.enroll' AND peer_id = :p",
            p=db_id(requester.engine, started["peerId"]),
        )
        assert "allowed" in [r["outcome"] for r in enrolled]

    # Every redeem audited once, in the database of the gateway it was sent to: nothing
    # was validated against, or denied in, the other one.
    assert await _redeem_count(a) == before[a.name] + REDEEMS_EACH + 1
    assert await _redeem_count(b) == before[b.name] + REDEEMS_EACH + 1


async def test_reconcile_schedule_runs_carry_their_gateway(shared: Shared) -> None:
    """A schedule created by a gateway's client starts runs with its header and memo: the
    run's activities act (a run without it would be refused with WrongGateway)."""
    a = shared.a
    client = await gateway_client(shared.temporal_env, a.engine)
    schedule_id = await ensure_reconcile_schedule(
        client,
        task_queue=shared.queue(a),
        interval=timedelta(hours=1),
        arg=ReconcileInput(grace_seconds=3600),
    )
    try:
        assert schedule_id == reconcile_schedule_id(shared.queue(a))
        answer = await a.api.post("/api/admin/federation/reconcile")
        assert answer.status_code == 200, answer.text
        await _assert_own_run(shared, a, answer.json()["workflowId"])
    finally:
        await client.get_schedule_handle(schedule_id).delete()


# ------------------------------------------------------------- a worker on a foreign queue


@activity.defn(name="not-mosaic.noop")
async def _noop() -> None:
    return None


@dataclass(frozen=True)
class Refusal:
    code: int
    stderr: str

    @property
    def error(self) -> str:
        """The one line the refusal is: the last on stderr, the only ``Error:`` line
        (log lines before it are the worker's start-up), no traceback."""
        lines = self.stderr.strip().splitlines()
        assert "Traceback" not in self.stderr, self.stderr
        assert [line for line in lines if line.startswith("Error:")] == lines[-1:], lines
        return lines[-1]


def _worker_env(
    data_dir: Path, database_url: str, temporal_address: str, **env: str
) -> dict[str, str]:
    return clean_env(
        data_dir,
        MOSAIC_DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        TEMPORAL_ADDRESS=temporal_address,
        MOSAIC_ADMIN_TOKEN=ADMIN_TOKEN,
        BETTER_AUTH_SECRET=SEALING_SECRET,
        **env,
    )


async def _mosaic_gateway(
    env: dict[str, str], command: tuple[str, ...] = ("worker",)
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        MOSAIC,
        "gateway",
        *command,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _start_as_third_gateway(
    data_dir: Path, temporal_address: str, queue: str, command: tuple[str, ...] = ("worker",)
) -> Refusal:
    """``mosaic gateway <command>`` of a third gateway (its own migrated SQLite database)
    with ``MOSAIC_TASK_QUEUE=queue``; how it ended."""
    database_url = f"sqlite+aiosqlite:///{data_dir / 'mosaic.db'}"
    await upgrade_async(database_url)
    engine = make_engine(database_url)
    try:
        await gateway_id_of(engine)  # made now: the worker's stderr holds its answer alone
    finally:
        await engine.dispose()
    env = _worker_env(data_dir, database_url, temporal_address, MOSAIC_TASK_QUEUE=queue)
    process = await _mosaic_gateway(env, command)
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Refusal(process.returncode, stderr.decode())


async def _polled(shared: Shared, queue: str) -> None:
    namespace = shared.a.settings.temporal_namespace
    for _ in range(200):
        if await recent_pollers(shared.temporal_env.client, namespace, queue):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"nobody polls {queue}")


@pytest.mark.parametrize("command", ["worker", "run"])
async def test_worker_set_to_another_gateways_queue_refuses_in_one_line(
    command: str, shared: Shared, tmp_path: Path
) -> None:
    queue = shared.queue(shared.a)
    await _polled(shared, queue)
    args = ("run", "--port", str(free_port())) if command == "run" else ("worker",)
    refused = await _start_as_third_gateway(
        tmp_path, shared.a.settings.temporal_address, queue, args
    )
    assert refused.code == 2, refused.stderr
    error = refused.error
    assert error.startswith(f"Error: task queue {queue} is served by another gateway's worker")
    assert f"mosaic-gw-{shared.a_id}@" in error and "MOSAIC_TASK_QUEUE" in error


async def test_worker_refuses_a_queue_polled_by_a_worker_that_names_no_gateway(
    shared: Shared, tmp_path: Path
) -> None:
    queue = f"not-mosaic-{uuid.uuid4().hex[:8]}"
    async with Worker(shared.temporal_env.client, task_queue=queue, activities=[_noop]):
        await _polled(shared, queue)
        refused = await _start_as_third_gateway(tmp_path, shared.a.settings.temporal_address, queue)
    assert refused.code == 2, refused.stderr
    assert refused.error.startswith(
        f"Error: task queue {queue} is served by a worker that names no gateway"
    )


async def test_second_worker_of_the_same_gateway_derives_its_queue_and_joins_it(
    shared: Shared,
) -> None:
    """Another process of gateway A (its database, no MOSAIC_TASK_QUEUE) finds A's queue
    from A's identity, sees only A's worker there, and serves."""
    a = shared.a
    await _polled(shared, shared.queue(a))
    settings = a.settings
    process = await _mosaic_gateway(
        _worker_env(
            settings.mosaic_data_dir, settings.effective_database_url, settings.temporal_address
        )
    )
    assert process.stderr is not None
    try:
        line = b""
        while b"worker on task queue" not in line:
            line = await asyncio.wait_for(process.stderr.readline(), 60)
            assert line, "the worker ended without serving"
        assert f"worker on task queue {shared.queue(a)} (gateway {shared.a_id})" in line.decode()
        assert process.returncode is None
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        client = await gateway_client(shared.temporal_env, a.engine)
        await client.get_schedule_handle(reconcile_schedule_id(shared.queue(a))).delete()
