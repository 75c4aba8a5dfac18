"""Run the API (and, in dev, the worker) in one event loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from api.app import create_app
from federation.settings import Settings


async def run_gateway(settings: Settings, *, host: str, port: int, with_worker: bool) -> None:
    """Serve the API until interrupted; with ``with_worker`` also run the Temporal worker."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
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
