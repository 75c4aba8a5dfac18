"""Run the API (and, in dev, the worker) in one event loop."""

from __future__ import annotations

import asyncio

import uvicorn

from api.app import create_app
from federation.logsetup import configure_logging
from federation.settings import Settings


async def run_gateway(settings: Settings, *, host: str, port: int, with_worker: bool) -> None:
    """Serve the API until interrupted; with ``with_worker`` also run the Temporal worker."""
    configure_logging(settings.mosaic_log_format)
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", log_config=None)
    server = uvicorn.Server(config)
    tasks = [asyncio.create_task(server.serve(), name="api")]
    if with_worker:
        from workflows.worker import run_worker

        tasks.append(asyncio.create_task(run_worker(settings), name="worker"))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        server.should_exit = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
