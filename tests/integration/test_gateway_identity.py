"""The gateway identity row: made once, race-free, by whichever process starts first; an
unmigrated or unreachable database is said so at worker start."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.db.migrate import upgrade_async
from federation.db.session import make_engine, make_sessionmaker
from federation.identity import gateway_id_when_up, load_gateway_id
from federation.settings import ConfigurationError
from tests.support.dbsnap import fetch_all
from tests.support.faults import own_pg_database
from tests.support.stepca import REPO_ROOT, free_port

PROCESSES = 4
ENGINES = 8
# Each process loads the identity at the same wall-clock instant, after its imports.
_LOAD_AT = """
import asyncio, sys, time
from federation.db.session import make_engine, make_sessionmaker
from federation.identity import load_gateway_id

async def main() -> None:
    engine = make_engine(sys.argv[1])
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    print(await load_gateway_id(make_sessionmaker(engine)))
    await engine.dispose()

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated database no gateway has started on yet."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'mosaic.db'}"
        await upgrade_async(url)
        yield url
        return
    async with own_pg_database() as (_, url):
        yield url


async def _rows(engine: AsyncEngine) -> list[str]:
    rows = await fetch_all(engine, "SELECT id FROM mosaic_gateway")
    return [str(uuid.UUID(str(r["id"]))) for r in rows]


async def test_processes_starting_at_once_end_with_one_identity(fresh_database: str) -> None:
    start_at = time.time() + 4  # every process is imported and connected by then
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _LOAD_AT,
            fresh_database,
            str(start_at),
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err.decode() for _, err in outputs]
    ids = {out.decode().strip() for out, _ in outputs}
    engine = make_engine(fresh_database)
    try:
        assert len(ids) == 1, ids
        assert await _rows(engine) == list(ids)
    finally:
        await engine.dispose()


async def test_connections_racing_on_a_fresh_database_agree_and_make_one_row(
    fresh_database: str,
) -> None:
    """Every caller reads "no identity yet" before any of them writes: the lock decides."""
    engines = [make_engine(fresh_database) for _ in range(ENGINES)]
    try:
        ids = await asyncio.gather(*(load_gateway_id(make_sessionmaker(e)) for e in engines))
        assert len(set(ids)) == 1, ids
        assert await _rows(engines[0]) == [str(ids[0])]
        # Read again later (a restart): the same identity, nothing added.
        assert await load_gateway_id(make_sessionmaker(engines[0])) == ids[0]
        assert len(await _rows(engines[0])) == 1
    finally:
        for engine in engines:
            await engine.dispose()


async def test_worker_start_on_an_unmigrated_database_names_db_upgrade(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'mosaic.db'}")
    try:
        with pytest.raises(ConfigurationError) as refused:
            await gateway_id_when_up(make_sessionmaker(engine))
    finally:
        await engine.dispose()
    message = str(refused.value)
    assert "\n" not in message
    assert "DATABASE_URL" in message and "`mosaic db upgrade`" in message


async def test_worker_start_waits_while_the_database_is_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
    caplog.set_level(logging.WARNING, logger="mosaic.identity")
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                gateway_id_when_up(make_sessionmaker(engine), retry_seconds=0.05), 1.0
            )
    finally:
        await engine.dispose()
    waiting = [r.getMessage() for r in caplog.records if r.name == "mosaic.identity"]
    assert len(waiting) >= 2, waiting
    assert waiting[0].startswith("waiting for the database (DATABASE_URL): connection refused")
