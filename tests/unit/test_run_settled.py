"""``run_settled`` keeps the loop open until aiosqlite's connection threads have ended, so
a command that cannot open its SQLite file prints its one line and no thread traceback."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import pytest

from federation.db.aio import SQLITE_THREAD_SUFFIX, run_settled


@pytest.fixture
def thread_errors() -> Iterator[list[BaseException | None]]:
    """What threads die of while the test runs (instead of printing it)."""
    errors: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        yield errors
    finally:
        threading.excepthook = previous


def test_a_thread_that_answers_after_the_command_failed_still_finds_the_loop_open(
    thread_errors: list[BaseException | None],
) -> None:
    # aiosqlite's shape: the coroutine raises, its connection thread answers the loop later.
    async def fails_before_its_thread_answers() -> None:
        loop = asyncio.get_running_loop()
        stopped = loop.create_future()

        def answer_late() -> None:
            time.sleep(0.2)
            loop.call_soon_threadsafe(stopped.set_result, None)

        threading.Thread(target=answer_late, name=f"Thread-99 {SQLITE_THREAD_SUFFIX}").start()
        raise sqlite3.OperationalError("unable to open database file")

    with pytest.raises(sqlite3.OperationalError):
        run_settled(fails_before_its_thread_answers())
    assert thread_errors == []


def test_a_sqlite_file_that_cannot_open_leaves_no_thread_behind(
    tmp_path: Path, thread_errors: list[BaseException | None]
) -> None:
    async def open_missing() -> None:
        async with aiosqlite.connect(tmp_path / "no-such-dir" / "mosaic.db"):
            pass

    for _ in range(20):
        with pytest.raises(sqlite3.OperationalError):
            run_settled(open_missing())
        alive = [t.name for t in threading.enumerate() if t.name.endswith(SQLITE_THREAD_SUFFIX)]
        assert alive == []
    assert thread_errors == []


def test_run_settled_returns_what_the_coroutine_returns() -> None:
    async def answer() -> int:
        return 42

    assert run_settled(answer()) == 42


def test_threads_of_connections_opened_before_are_not_waited_for(tmp_path: Path) -> None:
    # The migrations run in a thread of a process whose pool may hold SQLite connections.
    async def open_one() -> aiosqlite.Connection:
        return await aiosqlite.connect(tmp_path / "open.db")

    async def nothing() -> None:
        return None

    loop = asyncio.new_event_loop()
    held = loop.run_until_complete(open_one())
    try:
        started = time.monotonic()
        run_settled(nothing())
        waited = time.monotonic() - started
    finally:
        loop.run_until_complete(held.close())  # its thread ends: pytest can exit
        loop.close()
    assert waited < 0.5
