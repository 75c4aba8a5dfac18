"""Whole gateways for end-to-end tests: a real uvicorn server and a real worker each,
sharing one Temporal dev server, each on its own database and task queue."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from federation.ca.base import CertificateAuthority
from federation.db.session import make_engine, make_sessionmaker
from federation.identity import load_gateway_id, task_queue_for
from federation.settings import Settings
from tests.support.stepca import free_port
from workflows.worker import build_worker, remote_settings, sealer_from_settings


@dataclass
class UvicornServer:
    """uvicorn serving an app on a fixed port; stop() and start() again on the same port."""

    app: FastAPI
    port: int
    host: str = "127.0.0.1"
    # More uvicorn.Config arguments (ssl_certfile, ssl_keyfile, ...).
    options: dict[str, Any] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            **self.options,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(200):
            if self._server.started:
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        raise RuntimeError(f"uvicorn did not start on {self.port}")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


@dataclass
class Gateway:
    name: str
    settings: Settings
    url: str
    api: httpx.AsyncClient
    engine: AsyncEngine
    server: UvicornServer
    extra: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def running_gateway(
    name: str,
    base_settings: Settings,
    *,
    database_url: str,
    data_dir: Path,
    temporal_env: WorkflowEnvironment,
    ca: CertificateAuthority,
    sealing_secret: str,
    overrides: dict[str, Any] | None = None,
) -> AsyncIterator[Gateway]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = base_settings.model_copy(
        update={
            "database_url": database_url,
            "mosaic_data_dir": data_dir,
            "mosaic_task_queue": f"mosaic-{name}-{uuid.uuid4().hex[:6]}",
            "mosaic_public_url": url,
            "better_auth_secret": type(base_settings.better_auth_secret)(sealing_secret),
            "mosaic_enroll_allow_http_loopback": True,
            "mosaic_enroll_submit_seconds": 60,
            **(overrides or {}),
        }
    )
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    gateway_id = await load_gateway_id(sessions)
    worker = build_worker(
        temporal_env.client,
        gateway_id=gateway_id,
        # "" in overrides: the default, derived from the gateway's identity.
        task_queue=task_queue_for(gateway_id, settings.mosaic_task_queue),
        sessions=sessions,
        ca=ca,
        sealer=sealer_from_settings(settings),
        remote=remote_settings(settings),
        workflow_failure_exception_types=[Exception],
    )
    app = create_app(settings)
    # The app announces the root of the CA its worker signs with (preflight, redeem).
    app.state.gateway._ca = ca
    server = UvicornServer(app, port)
    await server.start()
    headers = {"Authorization": f"Bearer {settings.mosaic_admin_token.get_secret_value()}"}
    async with worker, httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
        try:
            yield Gateway(name, settings, url, api, engine, server)
        finally:
            await server.stop()
            await app.state.gateway.close()
            await engine.dispose()


async def wait_for_peer(gateway: Gateway, peer_id: str, within: float = 60) -> dict[str, Any]:
    """Poll the peer until it leaves ``pending``."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        peer: dict[str, Any] = (
            await gateway.api.get(f"/api/admin/federation/peers/{peer_id}")
        ).json()
        if peer["state"] != "pending":
            return peer
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"peer still pending: {peer}")
        await asyncio.sleep(0.1)
