"""The PostgreSQL pool pings a connection only after it sat idle (federation.db.session).

Real PostgreSQL, a database of its own per test; its backends are terminated under the
pool's feet, as a database restart would:

- a connection that sat idle past the window is pinged, found dead and replaced: the
  caller never sees it;
- one reused within the window is not pinged: the statement that meets it fails as a
  dropped connection (what the API answers 503 "database unavailable" for and an
  activity retries), and the pool is rebuilt for the next caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.db import session as db_session
from federation.db.session import make_engine, unreachable_reason
from tests.support.faults import cut_off_database, own_pg_database, set_allow_connections

IDLE_WINDOW = 0.3


@pytest.fixture
async def pooled() -> AsyncIterator[tuple[str, AsyncEngine]]:
    async with own_pg_database() as (name, url):
        engine = make_engine(url)
        try:
            yield name, engine
        finally:
            await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _restart_backends(name: str) -> None:
    """Every open connection of the database is terminated; new ones are allowed again."""
    await cut_off_database(name)
    await set_allow_connections(name, True)


async def test_connection_dead_after_an_idle_spell_is_replaced_before_use(
    pooled: tuple[str, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", IDLE_WINDOW)
    name, engine = pooled
    before = await _backend_pid(engine)
    await _restart_backends(name)
    await asyncio.sleep(IDLE_WINDOW + 0.1)

    after = await _backend_pid(engine)  # no error: the ping found the old one dead

    assert after != before


async def test_connection_dead_within_the_window_fails_once_then_the_pool_recovers(
    pooled: tuple[str, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", 60.0)
    name, engine = pooled
    before = await _backend_pid(engine)
    await _restart_backends(name)

    with pytest.raises(DBAPIError) as dropped:
        await _backend_pid(engine)
    assert dropped.value.connection_invalidated
    assert unreachable_reason(dropped.value) is not None  # the API's 503, not a 500

    assert await _backend_pid(engine) != before


async def test_busy_pool_sends_no_ping_and_an_idle_one_pings_once(
    pooled: tuple[str, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the wire: asyncpg's ping is the empty statement ``;`` in a transaction of its own."""
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", IDLE_WINDOW)
    _, engine = pooled
    sent: list[str] = []  # what asyncpg logs: BEGIN, ROLLBACK, the ping (not SELECT 1)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        raw.driver_connection.add_query_logger(lambda record: sent.append(record.query))
    for _ in range(20):  # LIFO: the same connection every time
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    assert sent.count("BEGIN;") == 20  # one transaction per checkout
    assert ";" not in sent

    sent.clear()
    await asyncio.sleep(IDLE_WINDOW + 0.1)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    assert sent.count(";") == 1
