"""Running a coroutine on an event loop of its own (a command, a migration), without
closing that loop under a SQLite connection's thread.

aiosqlite (0.22) runs each connection's calls on a thread of its own and answers them
on the loop. When a connection cannot open (a missing directory, say), the coroutine
gets the error at once, and the thread ends a moment later by answering one more call
on the loop. Had ``asyncio.run`` closed the loop in between, that thread dies printing
"RuntimeError: Event loop is closed" with two tracebacks, under a command's one-line
error. It depends on timing: seen under load in the startup-errors test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# aiosqlite names no thread: Python names it after the target, "Thread-N (target)".
SQLITE_THREAD_SUFFIX = "(_connection_worker_thread)"
# How long the loop stays open for them: such a thread ends within milliseconds, and one
# of a connection still open (never the case after an engine's dispose) would hold the
# interpreter's exit anyway, being no daemon.
SQLITE_SETTLE_SECONDS = 2.0


def run_settled(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, closing the loop only once the aiosqlite threads that ``coro``
    started have ended. Threads of connections opened before (the migrations run in a
    thread of a process whose pool may hold SQLite connections) are not waited for."""
    before = set(_sqlite_threads())
    with asyncio.Runner() as runner:
        try:
            return runner.run(coro)
        finally:
            deadline = time.monotonic() + SQLITE_SETTLE_SECONDS
            for thread in _sqlite_threads():
                if thread not in before:
                    thread.join(max(0.0, deadline - time.monotonic()))


def _sqlite_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith(SQLITE_THREAD_SUFFIX)]
