"""Experiment worker: ``mosaic gateway worker`` with one or more proposed changes applied.

Used only by ``python -m bench.enroll --experiments`` to measure a change before anyone
makes it in ``workflows/worker.py`` or ``federation/db/session.py``. It runs the real
``workflows.worker.run_worker`` (same workflows, activities, schedule, task queue and
environment) with these substitutions in that module's namespace:

- ``--unsandboxed``: every ``Worker`` it builds gets ``UnsandboxedWorkflowRunner``
  instead of the default sandbox;
- ``--no-pre-ping``: the PostgreSQL engine never pings (ours pings a connection that
  sat idle; see ``federation.db.session``);
- ``--wft-threads N``: workflow activations run on N threads instead of the SDK's
  default pool (up to 500 threads, one per workflow task in flight).

It fails at start when ``run_worker``'s module no longer has those names, rather than
silently measuring the unchanged worker.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.worker import UnsandboxedWorkflowRunner

import workflows.worker as real_worker
from federation.settings import load_settings

log = logging.getLogger("mosaic.worker")


def apply(*, unsandboxed: bool, pre_ping: bool, wft_threads: int | None = None) -> None:
    for name in ("Worker", "make_engine", "run_worker"):
        if not hasattr(real_worker, name):
            raise SystemExit(f"workflows.worker has no {name}: update bench/altworker.py")
    if unsandboxed or wft_threads:
        original_worker = getattr(real_worker, "Worker")  # noqa: B009 - patched below

        def changed_worker(*args: Any, **kwargs: Any) -> Any:
            if unsandboxed:
                kwargs.setdefault("workflow_runner", UnsandboxedWorkflowRunner())
            if wft_threads:
                kwargs["workflow_task_executor"] = ThreadPoolExecutor(max_workers=wft_threads)
            return original_worker(*args, **kwargs)

        setattr(real_worker, "Worker", changed_worker)  # noqa: B010
    if not pre_ping:
        original_engine = getattr(real_worker, "make_engine")  # noqa: B009

        def engine_without_pre_ping(url: str) -> AsyncEngine:
            if not url.startswith("postgresql"):
                engine: AsyncEngine = original_engine(url)
                return engine
            # make_engine's PostgreSQL pool, minus the ping after an idle spell
            return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=False)

        setattr(real_worker, "make_engine", engine_without_pre_ping)  # noqa: B010


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--unsandboxed", action="store_true")
    parser.add_argument("--no-pre-ping", action="store_true")
    parser.add_argument("--wft-threads", type=int, default=None)
    args = parser.parse_args()
    # The same log set-up as `mosaic gateway worker`.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    apply(unsandboxed=args.unsandboxed, pre_ping=not args.no_pre_ping, wft_threads=args.wft_threads)
    log.info(
        "experiment worker: unsandboxed=%s pre_ping=%s wft_threads=%s",
        args.unsandboxed,
        not args.no_pre_ping,
        args.wft_threads,
    )
    try:
        asyncio.run(real_worker.run_worker(load_settings()))
    except KeyboardInterrupt:
        pass
    gc.collect()  # sdk-python#300


if __name__ == "__main__":
    main()
