"""Audit rows of federated requests, written off the request's critical path.

A request hands its row to a queue and answers; one task writes what accumulated in a
single INSERT, every ``interval`` or every ``batch`` rows. Nothing is dropped: when
the queue is full a request waits for room (back-pressure, never loss), a failed
write is retried, and shutdown flushes. The price: a row lands up to ``interval``
after its answer, and rows still queued when the process is killed are lost (at most
``interval`` worth of traffic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from federation.db.models import AuditEntry

log = logging.getLogger("mosaic.api.audit")


class AuditWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        batch: int = 500,
        interval: float = 0.05,
        capacity: int = 20_000,
    ) -> None:
        self._sessions = sessions
        self._batch = batch
        self._interval = interval
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(capacity)
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def record(self, row: dict[str, Any]) -> None:
        """Queue one row (``AuditEntry`` column values); waits only when the queue is full."""
        self.start()
        await self._queue.put(row)

    async def flush(self) -> None:
        """Wait until every row queued so far is written."""
        await self._queue.join()

    async def close(self) -> None:
        if self._task is None:
            return
        await self.flush()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            rows = [await self._queue.get()]
            await asyncio.sleep(self._interval)  # let a burst gather into one INSERT
            while len(rows) < self._batch and not self._queue.empty():
                rows.append(self._queue.get_nowait())
            await self._write(rows)
            for _ in rows:
                self._queue.task_done()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        delay = 0.1
        while True:
            try:
                async with self._sessions() as session:
                    await session.execute(insert(AuditEntry), rows)
                    await session.commit()
            except Exception as exc:  # noqa: BLE001 - the database may be away: keep the rows
                log.warning("audit write of %d rows failed (%s); retrying", len(rows), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.written += len(rows)
            return
