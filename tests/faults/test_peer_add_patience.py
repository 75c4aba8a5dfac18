"""Issue 10: gateway A must not destroy its client key while B may still activate it.

B (PostgreSQL, real step-ca, its real worker) claims the token and has the CSR
signed; as its activation starts, B's database stops accepting connections and
every backend is terminated, so the activation keeps failing and retrying while B
answers A's POSTs with 503/5xx. The outage lasts longer than A's submit window
(MOSAIC_ENROLL_SUBMIT_SECONDS, short here): A must keep its sealed key and URL and
go on waiting (slow retries, the status saying so), and reconcile's orphaned-peer
sweep must leave the peer alone. When B's database returns, B activates and A's
next try gets the certificate: A ends ``active`` with a certificate for the key it
holds, and the serials agree on both sides.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from temporalio.testing import WorkflowEnvironment

from activities.reconcile import ReconcileActivities, SweepInput
from api.app import create_app
from federation.ca.builtin import BuiltinCA
from federation.client_key import open_client_key
from federation.db.migrate import upgrade_async
from federation.db.session import make_engine, make_sessionmaker
from federation.pki.fingerprints import public_key_der
from federation.sealing import Sealer
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.faults import (
    cut_off_database,
    db_id,
    lane_worker,
    own_pg_database,
    set_allow_connections,
    unique_queue,
)
from tests.support.gateways import Gateway, UvicornServer, running_gateway, wait_for_peer
from tests.support.stepca import StepCAServer, free_port

SUBMIT_SECONDS = 4.0
SECRET_A = "patience-a-sealing-secret-0123456789"
PEERS = "/api/admin/federation/peers"


class ActivationOutage:
    """Cuts B's database off as its first activation starts; it stays down until told."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.cut = asyncio.Event()
        self.cut_at = 0.0
        self.attempts: list[str] = []

    async def hook(self, activity_type: str, proceed: Callable[[], Awaitable[Any]]) -> Any:
        if activity_type != "redeem.activate":
            return await proceed()
        if not self.cut.is_set():
            await cut_off_database(self.database)
            self.cut_at = asyncio.get_running_loop().time()
            self.cut.set()
        try:
            result = await proceed()
        except BaseException as exc:
            self.attempts.append(type(exc).__name__)
            raise
        self.attempts.append("ok")
        return result


async def _waiting(a: Gateway, peer_id: str, within: float) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        peer: dict[str, Any] = (await a.api.get(f"{PEERS}/{peer_id}")).json()
        assert peer["state"] == "pending", peer
        if (peer.get("workflow") or {}).get("step", "").startswith("waiting for"):
            return peer
        await asyncio.sleep(0.2)
    raise AssertionError("A never started waiting for B")


async def _a_row(a: Gateway, peer_id: str) -> dict[str, Any]:
    rows = await fetch_all(
        a.engine, "SELECT * FROM federation_peers WHERE id = :id", id=db_id(a.engine, peer_id)
    )
    return rows[0]


async def test_b_database_down_past_the_submit_window_keeps_as_key_and_ends_active(
    temporal_env: WorkflowEnvironment, step_ca: StepCAServer, tmp_path: Path
) -> None:
    temporal_address = temporal_env.client.service_client.config.target_host
    async with own_pg_database() as (database, b_url):
        b_port = free_port()
        b_settings = make_settings(
            b_url,
            tmp_path / "b",
            temporal_address=temporal_address,
            mosaic_task_queue=unique_queue("patience-b"),
            mosaic_public_url=f"http://127.0.0.1:{b_port}",
            mosaic_enroll_wait_seconds=2,
            mosaic_ca_retry_seconds=30,
        )
        a_url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
        await upgrade_async(a_url)
        a_ca = BuiltinCA.open_or_create(tmp_path / "a-ca")
        outage = ActivationOutage(database)
        b_engine = make_engine(b_url)
        provider = step_ca.provider()
        b_app = create_app(b_settings)
        b_app.state.gateway._ca = provider  # B announces the root its worker signs under
        b_server = UvicornServer(b_app, b_port)
        b_worker = await lane_worker(
            temporal_env.client, b_settings, b_engine, provider, hook=outage.hook
        )
        try:
            async with (
                b_worker,
                running_gateway(
                    "a",
                    make_settings(a_url, tmp_path / "a", temporal_address=temporal_address),
                    database_url=a_url,
                    data_dir=tmp_path / "a",
                    temporal_env=temporal_env,
                    ca=a_ca,
                    sealing_secret=SECRET_A,
                    overrides={
                        "mosaic_enroll_submit_seconds": SUBMIT_SECONDS,
                        "mosaic_enroll_patience_seconds": 300,
                    },
                ) as a,
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{b_port}",
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    timeout=30,
                ) as b_api,
            ):
                await b_server.start()
                grant = await make_grant(b_api)
                url = (await make_token(b_api, grant["id"]))["enrollmentUrl"]
                started = await a.api.post(f"{PEERS}/enroll", json={"enrollmentUrl": url})
                assert started.status_code == 202, started.text
                peer_id = started.json()["peerId"]

                # B claimed, signed, and its activation hit the outage.
                await asyncio.wait_for(outage.cut.wait(), 60)
                waiting = await _waiting(a, peer_id, within=60)
                step = waiting["workflow"]["step"]
                assert step.startswith(f"waiting for 127.0.0.1:{b_port}: remote answered 5"), step
                # Stay down well past A's submit window; A still holds its key and URL.
                loop = asyncio.get_running_loop()
                await asyncio.sleep(max(0.0, outage.cut_at + SUBMIT_SECONDS + 4 - loop.time()))
                row = await _a_row(a, peer_id)
                assert row["state"] == "pending"
                assert row["client_key_sealed"] and row["enrollment_url_sealed"]
                # The orphaned-peer sweep sees a live run and leaves the peer alone.
                sweep = ReconcileActivities(make_sessionmaker(a.engine), temporal_env.client, a_ca)
                swept = await sweep.orphaned_peers(SweepInput("patience-sweep", grace_seconds=0))
                assert swept == 0
                assert (await _a_row(a, peer_id))["state"] == "pending"

                await set_allow_connections(database, True)
                peer = await wait_for_peer(a, peer_id, within=120)
                run = temporal_env.client.get_workflow_handle(started.json()["workflowId"])
                assert (await run.result())["serial"] == peer["certSerial"]

                assert peer["state"] == "active", peer
                row = await _a_row(a, peer_id)
                cert = x509.load_pem_x509_certificate(row["cert_pem"].encode())
                key = open_client_key(Sealer(SECRET_A), _Row(row))
                assert public_key_der(key.public_key()) == public_key_der(cert.public_key())
                b_grant = (await b_api.get(f"/api/admin/federation/grants/{grant['id']}")).json()
                assert b_grant["status"] == "active"
                assert b_grant["certSerial"] == peer["certSerial"] == row["cert_serial"]
                assert format(cert.serial_number, "x") == row["cert_serial"]
                # The outage really hit B's activation: it failed, then landed once.
                assert outage.attempts[0] != "ok" and outage.attempts[-1] == "ok"
                assert outage.attempts.count("ok") == 1
        finally:
            await set_allow_connections(database, True)
            await b_server.stop()
            await b_app.state.gateway.close()
            await provider.aclose()
            await b_engine.dispose()


class _Row:
    """The columns ``open_client_key`` reads, from a raw row."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.id = uuid.UUID(str(row["id"]))
        self.client_key_sealed: str | None = row["client_key_sealed"]
