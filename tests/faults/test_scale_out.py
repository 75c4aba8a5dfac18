"""Scale beyond one machine (issue 13): two API processes and two worker processes of one
gateway against one Temporal server and one PostgreSQL database, a burst of redeems,
and one worker SIGKILLed halfway through it.

Every process is the real ``mosaic gateway api`` / ``mosaic gateway worker`` with its own
data directory (nothing shared but the database, Temporal, step-ca and the secrets), on
the default task queue setting: both workers derive the queue from the gateway identity
in the shared database, so they serve one queue. The client behaves as the enrollment
route documents: a 503 (still in progress, ``Retry-After``) is answered by sending the
same request (same token, same CSR) again, here through the other API, as a load
balancer might.

What must hold: every redeem ends 200 with its certificate; each grant is active with
exactly one ``active`` ledger row, the serial pinned on the grant, its peer and its token,
and answered to the client; every other certificate signed for the grant (a worker that
died with a CA call in flight leaves one) is revoked, in the ledger and at the CA; one
``allowed`` audit row per grant. The Temporal histories show both workers served runs and
that the kill interrupted some, which the survivor finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from federation.db.session import make_engine
from federation.identity import task_queue_for
from federation.pki.certs import load_certificate, serial_hex
from federation.runs import reconcile_schedule_id, redeem_workflow_id
from federation.tokens import hash_token
from tests.support.commands import MOSAIC
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.faults import WorkerProcess, own_pg_database, spawn_command
from tests.support.gateway_processes import free_ports, gateway_env, stop_gracefully
from tests.support.identity import gateway_client, gateway_id_of
from tests.support.ledger import ca_says_revoked, settled_ledger
from tests.support.pki import make_csr
from tests.support.stepca import StepCAServer

pytestmark = [pytest.mark.postgres, pytest.mark.temporal, pytest.mark.stepca]

REDEEMS = 60
CONCURRENCY = 16
# Per redeem, from its first attempt: a run the dead worker held waits out Temporal's
# timeouts (10 s sticky queue / workflow task / CA call) before the survivor takes it.
REDEEM_DEADLINE = 120.0
START_WITHIN = 60.0
_TIMED_OUT = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
}
_STARTED_BY = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED: "workflow_task_started_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: "activity_task_started_event_attributes",
}


@dataclass
class Cluster:
    api_urls: list[str]
    apis: list[WorkerProcess]
    workers: list[WorkerProcess]
    engine: AsyncEngine
    admin_token: str

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.log_path.name}\n{p.log()[-2000:]}" for p in [*self.apis, *self.workers]
        )


@dataclass
class Redeem:
    grant: dict[str, Any]
    token: str
    csr_pem: str
    statuses: list[int] = field(default_factory=list)
    answer: dict[str, Any] | None = None


async def _until(ready: Callable[[], Awaitable[bool]], process: WorkerProcess, what: str) -> None:
    deadline = time.monotonic() + START_WITHIN
    while not await ready():
        assert process.process.poll() is None, f"{what} exited:\n{process.log()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} did not start:\n{process.log()[-3000:]}"
        await asyncio.sleep(0.1)


async def _api_ready(url: str, process: WorkerProcess) -> None:
    async with httpx.AsyncClient(timeout=1) as http:

        async def healthy() -> bool:
            try:
                return (await http.get(f"{url}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await _until(healthy, process, f"API {url}")


async def _worker_ready(process: WorkerProcess) -> None:
    async def polling() -> bool:
        return "worker on task queue" in process.log()

    await _until(polling, process, process.log_path.name)


@pytest.fixture
async def cluster(
    temporal_env: WorkflowEnvironment, step_ca: StepCAServer, tmp_path: Path
) -> AsyncIterator[Cluster]:
    """One gateway as four processes: ``gateway api`` ×2, ``gateway worker`` ×2."""
    async with own_pg_database() as (_, url):
        engine = make_engine(url)
        queue = task_queue_for(await gateway_id_of(engine))
        ports = free_ports(2)
        address = temporal_env.client.service_client.config.target_host
        first = gateway_env(
            "api-0", tmp_path, database_url=url, temporal_address=address, port=ports[0]
        )
        # What every process of the gateway shares; the data directory is each one's own.
        shared = {
            "MOSAIC_ADMIN_TOKEN": first["MOSAIC_ADMIN_TOKEN"],
            "BETTER_AUTH_SECRET": first["BETTER_AUTH_SECRET"],
            "MOSAIC_PUBLIC_URL": first["MOSAIC_PUBLIC_URL"],
            "MOSAIC_TASK_QUEUE": "",  # the default: derived from the gateway identity
        }

        def env(name: str, port: int) -> dict[str, str]:
            return {
                **gateway_env(
                    name,
                    tmp_path,
                    database_url=url,
                    temporal_address=address,
                    port=port,
                    step_ca=step_ca,
                ),
                **shared,
            }

        apis: list[WorkerProcess] = []
        workers: list[WorkerProcess] = []
        try:
            for index, port in enumerate(ports):
                apis.append(
                    spawn_command(
                        [MOSAIC, "gateway", "api", "--host", "127.0.0.1", "--port", str(port)],
                        env(f"api-{index}", port),
                        tmp_path / f"api-{index}.log",
                    )
                )
            for index in range(2):
                workers.append(
                    spawn_command(
                        [MOSAIC, "gateway", "worker"],
                        env(f"worker-{index}", ports[0]),
                        tmp_path / f"worker-{index}.log",
                    )
                )
            api_urls = [f"http://127.0.0.1:{port}" for port in ports]
            await asyncio.gather(
                *(_api_ready(u, p) for u, p in zip(api_urls, apis, strict=True)),
                *(_worker_ready(w) for w in workers),
            )
            for worker in workers:
                assert f"worker on task queue {queue} " in worker.log(), worker.log()[-2000:]
            yield Cluster(api_urls, apis, workers, engine, shared["MOSAIC_ADMIN_TOKEN"])
        finally:
            processes = [*apis, *workers]
            stopped = await asyncio.gather(
                *(stop_gracefully(p) for p in processes), return_exceptions=True
            )
            for process in processes:
                process.kill()
            with contextlib.suppress(RPCError):  # no worker got as far as creating it
                client = await gateway_client(temporal_env, engine)
                await client.get_schedule_handle(reconcile_schedule_id(queue)).delete()
            await engine.dispose()
            slow = [p.log_path.name for p, e in zip(processes, stopped, strict=True) if e]
            assert not slow, f"did not stop on SIGINT within 20 s: {slow}"


async def _mint(cluster: Cluster) -> list[Redeem]:
    """N pending grants with a token and a CSR each, through the first API."""
    headers = {"Authorization": f"Bearer {cluster.admin_token}"}
    async with httpx.AsyncClient(
        base_url=cluster.api_urls[0], headers=headers, timeout=30
    ) as admin:

        async def one() -> Redeem:
            grant = await make_grant(admin)
            token = (await make_token(admin, grant["id"]))["token"]
            return Redeem(grant, token, make_csr(grant["_peer"]["commonName"])[0])

        gate = asyncio.Semaphore(8)

        async def gated() -> Redeem:
            async with gate:
                return await one()

        return list(await asyncio.gather(*(gated() for _ in range(REDEEMS))))


async def _served_by(temporal_env: WorkflowEnvironment, token: str) -> tuple[set[str], bool]:
    """(identities of the workers that started a task of the run, whether a task of it
    timed out: a worker died holding it)."""
    handle = temporal_env.client.get_workflow_handle(redeem_workflow_id(hash_token(token)))
    identities: set[str] = set()
    timed_out = False
    async for event in handle.fetch_history_events():
        timed_out = timed_out or event.event_type in _TIMED_OUT
        attributes = _STARTED_BY.get(event.event_type)
        if attributes is not None:
            identities.add(getattr(event, attributes).identity)
    return identities, timed_out


async def test_two_apis_and_two_workers_serve_a_burst_with_one_worker_killed_halfway_and_sign_no_duplicate(  # noqa: E501
    cluster: Cluster, temporal_env: WorkflowEnvironment, step_ca: StepCAServer
) -> None:
    redeems = await _mint(cluster)
    victim, survivor = cluster.workers
    gate = asyncio.Semaphore(CONCURRENCY)
    answered = 0
    killed_after: int | None = None
    loop = asyncio.get_running_loop()

    async def redeem(index: int, r: Redeem, http: httpx.AsyncClient) -> None:
        nonlocal answered, killed_after
        api = index % 2
        deadline = loop.time() + REDEEM_DEADLINE
        while True:
            async with gate:
                response = await http.post(
                    f"{cluster.api_urls[api]}/api/federation/enrollment/{r.token}",
                    json={"csrPem": r.csr_pem},
                )
            r.statuses.append(response.status_code)
            if response.status_code != 503 or loop.time() > deadline:
                break
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            api = 1 - api
        if response.status_code != 200:
            return
        r.answer = response.json()
        answered += 1
        if answered >= REDEEMS // 2 and killed_after is None:
            killed_after = answered
            victim.kill()

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(redeem(i, r, http) for i, r in enumerate(redeems)))
    burst_seconds = time.monotonic() - started

    assert killed_after is not None, "the burst never reached half: no worker was killed"
    assert victim.process.returncode == -signal.SIGKILL, victim.log()[-2000:]
    assert survivor.process.poll() is None, survivor.log()[-3000:]
    assert all(api.process.poll() is None for api in cluster.apis), cluster.logs()
    failed = {r.grant["id"]: r.statuses for r in redeems if r.answer is None}
    assert not failed, f"redeems without a certificate: {failed}\n{cluster.logs()}"
    retries = Counter(status for r in redeems for status in r.statuses[:-1])
    assert set(retries) <= {503}, retries

    # The database: one usable certificate per grant, the one pinned and answered.
    engine = cluster.engine
    grants = {
        str(row["id"]): row
        for row in await fetch_all(
            engine,
            "SELECT g.id, g.status, g.cert_serial, p.state AS peer_state,"
            " p.cert_serial AS peer_serial FROM federation_grants g"
            " JOIN federation_peers p ON p.id = g.peer_id",
        )
    }
    tokens = {
        str(row["grant_id"]): row["cert_serial"]
        for row in await fetch_all(
            engine, "SELECT grant_id, cert_serial FROM federation_enrollment_tokens"
        )
    }
    allowed = Counter(
        (str(row["grant_id"]), row["cert_serial"])
        for row in await fetch_all(
            engine,
            "SELECT grant_id, cert_serial FROM federation_audit_log"
            " WHERE verb = 'enrollment.redeem' AND outcome = 'allowed'",
        )
    )
    assert len(grants) == REDEEMS
    withdrawn: list[str] = []
    for r in redeems:
        grant_id = r.grant["id"]
        grant = grants[grant_id]
        pinned = grant["cert_serial"]
        where = f"grant {grant_id}: {grant}"
        assert grant["status"] == "active" and pinned, where
        assert grant["peer_state"] == "active" and grant["peer_serial"] == pinned, where
        assert tokens[grant_id] == pinned, where
        assert r.answer is not None and r.answer["grantId"] == grant_id, where
        assert r.answer["certSerial"] == pinned, (r.answer["certSerial"], where)
        assert serial_hex(load_certificate(r.answer["certPem"])) == pinned, where
        assert allowed[(grant_id, pinned)] == 1, (allowed, where)
        # Every other certificate signed (or asked for) for this grant is revoked.
        rows = await settled_ledger(engine, grant_id, within=30)
        active = [row for row in rows if row["state"] == "active"]
        assert [row["serial"] for row in active] == [pinned], (rows, where)
        assert active[0]["revoke_after"] is None, (rows, where)
        others = [row for row in rows if row["serial"] != pinned]
        assert all(row["state"] == "revoked" for row in others), (others, where)
        withdrawn += [row["serial"] for row in others]
    assert sum(allowed.values()) == REDEEMS, allowed
    provider = step_ca.provider()
    try:
        at_ca = await asyncio.gather(*(ca_says_revoked(provider, s) for s in withdrawn))
    finally:
        await provider.aclose()
    assert all(at_ca), [s for s, ok in zip(withdrawn, at_ca, strict=True) if not ok]

    # Temporal: both workers served runs, and the kill interrupted runs the survivor finished.
    served = await asyncio.gather(*(_served_by(temporal_env, r.token) for r in redeems))
    by_worker = Counter(
        worker.process.pid
        for identities, _ in served
        for identity in identities
        for worker in cluster.workers
        if identity.endswith(f":{worker.process.pid}")
    )
    interrupted = sum(timed_out for _, timed_out in served)
    assert by_worker[victim.process.pid] and by_worker[survivor.process.pid], by_worker
    assert interrupted, "the kill interrupted no run: it did not happen under load"
    # The figures of the run, shown with -s.
    print(
        f"\nburst {burst_seconds:.1f}s; worker killed after {killed_after} answers;"
        f" {interrupted} runs interrupted; retries {dict(retries)};"
        f" {len(withdrawn)} extra certificate(s) revoked; runs per worker {dict(by_worker)}"
    )
