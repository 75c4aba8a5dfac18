"""Run the gateway's listeners (and, with ``gateway run``/``dev``, the worker) in one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

import uvicorn

from api.app import create_app
from api.federation_app import create_federation_app
from api.federation_listener import federation_listener
from api.openfiles import raise_open_files_limit
from api.server import build_server
from federation.ca.factory import ca_from_settings
from federation.logsetup import configure_logging
from federation.settings import Settings


async def run_gateway(
    settings: Settings,
    *,
    host: str,
    port: int,
    with_worker: bool,
    proxy_headers: bool = False,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve the API (and the federation listener when configured) until interrupted; with
    ``with_worker`` also run the Temporal worker.

    ``proxy_headers`` trusts X-Forwarded-For/-Proto from ``forwarded_allow_ips`` only.
    """
    # The listener's settings and files first: a bad one is one line, before anything logs.
    listener = federation_listener(settings, ca_from_settings(settings))
    configure_logging(settings.mosaic_log_format)
    raise_open_files_limit()
    app = create_app(settings)
    servers = [
        build_server(
            app,
            host=host,
            port=port,
            settings=settings,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    ]
    if listener is not None:
        servers.append(
            build_server(
                create_federation_app(settings),
                host=listener.host,
                port=listener.port,
                settings=settings,
                tls=listener.tls,
            )
        )
    companions: list[Coroutine[Any, Any, None]] = []
    if with_worker:
        from workflows.worker import run_worker

        companions.append(run_worker(settings, share_client=app.state.gateway.share_worker_client))
    await serve_together(servers, companions)


async def serve_together(
    servers: Sequence[uvicorn.Server], companions: Sequence[Coroutine[Any, Any, None]] = ()
) -> None:
    """Run every server and companion (e.g. the worker) until one of them ends, then stop
    the rest: servers shut down gracefully, companions are cancelled. An error is raised."""
    server_tasks = [
        asyncio.create_task(server.serve(), name=f"server-{index}")
        for index, server in enumerate(servers)
    ]
    other_tasks = [
        asyncio.create_task(coro, name=f"companion-{index}")
        for index, coro in enumerate(companions)
    ]
    tasks = server_tasks + other_tasks
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for server in servers:
            server.should_exit = True
        for task in other_tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
