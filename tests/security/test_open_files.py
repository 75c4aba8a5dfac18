"""Issue 15, "Sockets and files": a real `mosaic gateway run` (API + worker in one
process) with a low open-files limit, while the test holds more slow sockets than
that limit. Health and a whole enrollment must still answer within a second, and
the log must not fill with accept errors."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from federation.db.migrate import upgrade_async
from federation.logredact import install_redaction
from tests.conftest import ADMIN_TOKEN, SEALING_SECRET
from tests.support.factories import make_grant, make_token
from tests.support.faults import WorkerProcess, spawn_command, unique_queue
from tests.support.gateway_processes import wait_until_serving
from tests.support.pki import make_csr
from tests.support.stepca import free_port

MOSAIC = str(Path(sys.executable).parent / "mosaic")
FD_LIMIT = 256
SLOW_SOCKETS = 300  # more than the gateway may open in all
ANSWER_WITHIN = 1.0


@dataclass
class LimitedGateway:
    url: str
    process: WorkerProcess


def limit_open_files() -> None:
    # Soft and hard: the gateway raises its soft limit to the hard one at start.
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture
async def limited_gateway(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[LimitedGateway]:
    install_redaction()  # this process logs enrollment URLs (httpx) too
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'mosaic.db'}"
    await upgrade_async(database_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    inherited = ("MOSAIC_", "STEP_CA_", "DATABASE_URL", "TEMPORAL_", "BETTER_AUTH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update(
        {
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "MOSAIC_TASK_QUEUE": unique_queue("open-files"),
            "MOSAIC_DATA_DIR": str(tmp_path / "data"),
            "MOSAIC_ADMIN_TOKEN": ADMIN_TOKEN,
            "BETTER_AUTH_SECRET": SEALING_SECRET,
            "MOSAIC_CA": "builtin",
            "MOSAIC_PUBLIC_URL": url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    (tmp_path / "data").mkdir()
    process = spawn_command(
        [MOSAIC, "gateway", "run", "--host", "127.0.0.1", "--port", str(port)],
        env,
        tmp_path / "gateway.log",
        before_exec=limit_open_files,
    )
    try:
        await wait_until_serving(url, process)
        yield LimitedGateway(url, process)
    finally:
        if process.process.poll() is None:
            process.process.send_signal(signal.SIGINT)
            try:
                await process.wait(within=20)
            except TimeoutError:
                process.kill()
                raise


async def open_slow_sockets(
    port: int, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Connections that send part of a request and then nothing (slowloris)."""
    sockets = []
    for index in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        partial = b"GET /healthz HTTP/1.1\r\n" if index % 2 else b"GET /api/admin/us"
        writer.write(partial)
        sockets.append((reader, writer))
    return sockets


async def test_more_slow_sockets_than_open_files_leave_health_and_enrollment_answering(
    limited_gateway: LimitedGateway,
) -> None:
    gateway = limited_gateway
    port = int(gateway.url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    answered: list[tuple[str, float]] = []
    started: dict[int, float] = {}

    async def on_request(request: httpx.Request) -> None:
        started[id(request)] = loop.time()

    async def on_response(response: httpx.Response) -> None:
        request = response.request
        elapsed = loop.time() - started[id(request)]
        answered.append((f"{request.method} {request.url.path}", elapsed))

    hooks: dict[str, list[Callable[..., Any]]] = {
        "request": [on_request],
        "response": [on_response],
    }
    slow = await open_slow_sockets(port, SLOW_SOCKETS)
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            base_url=gateway.url, headers=headers, timeout=10, event_hooks=hooks
        ) as api:
            assert (await api.get("/healthz")).status_code == 200
            grant = await make_grant(api)
            token = await make_token(api, grant["id"])
            csr_pem, _ = make_csr(grant["_peer"]["commonName"])
            async with httpx.AsyncClient(timeout=10, event_hooks=hooks) as peer:
                enrolled = await peer.post(token["enrollmentUrl"], json={"csrPem": csr_pem})
            assert enrolled.status_code == 200, enrolled.text
            assert (await api.get("/healthz")).status_code == 200
            grant_now = (await api.get(f"/api/admin/federation/grants/{grant['id']}")).json()
    finally:
        for _, writer in slow:
            writer.close()

    assert grant_now["status"] == "active"
    assert len(answered) == 8  # health, user, peer, grant, token, enroll, health, grant
    slowest = max(answered, key=lambda pair: pair[1])
    assert slowest[1] < ANSWER_WITHIN, answered

    log = gateway.process.log()
    assert f"open files limit {FD_LIMIT}" in log
    assert "Traceback" not in log, log[-5000:]
    accept_errors = [
        line
        for line in log.splitlines()
        if "out of system resource" in line or "Too many open files" in line
    ]
    assert len(accept_errors) <= 3, accept_errors
    # Hundreds of sockets were dropped or refused; the log says so a few times, not hundreds.
    connection_lines = [line for line in log.splitlines() if "mosaic.api.connections" in line]
    assert 1 <= len(connection_lines) <= 4, connection_lines
