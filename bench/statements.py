"""What one statement costs the client, built per call as an ORM statement or built once.

``python -m bench.statements [--n 2000]``

On a fresh, migrated PostgreSQL database (dropped at the end), in one session:

- the claim's grant UPDATE, built per call on the ORM class (as the redeem path did) and
  built once on the table with bound parameters (``federation.enrollment._CLAIM_GRANT``);
- a two-column SELECT by primary key, the same two ways;
- a checkout with one SELECT, on an engine that pings on every checkout
  (``pool_pre_ping``) and on ours (``federation.db.session``: ping after an idle spell).

Prints CPU microseconds of this process per operation (the client's side: statement
building, cache keys, compilation, the driver) and wall microseconds. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from federation.db.migrate import upgrade_async
from federation.db.models import Grant, table_of, utcnow
from federation.db.session import make_engine, make_sessionmaker
from federation.enrollment import _CLAIM_GRANT
from tests.support.services import create_pg_database, drop_pg_database

_GRANTS = table_of(Grant)
_SELECT_ONCE = select(_GRANTS.c.status, _GRANTS.c.cert_serial).where(
    _GRANTS.c.id == bindparam("grant", type_=_GRANTS.c.id.type)
)


async def _timed(label: str, n: int, step: Callable[[], Awaitable[object]]) -> float:
    for _ in range(min(50, n)):
        await step()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await step()
    per_cpu = 1e6 * (time.process_time() - cpu) / n
    per_wall = 1e6 * (time.perf_counter() - wall) / n
    print(f"  {label:<58} {per_cpu:7.0f} us CPU {per_wall:7.0f} us wall")
    return per_cpu


async def _statements(session: AsyncSession, n: int) -> None:
    grant, token = uuid.uuid4(), "0" * 64

    async def orm_update() -> object:
        return await session.execute(
            update(Grant)
            .where(
                Grant.id == grant,
                Grant.status == "pending",
                or_(Grant.enrolling_token_hash.is_(None), Grant.enrolling_token_hash == token),
            )
            .values(enrolling_token_hash=token, updated_at=utcnow())
        )

    async def core_update() -> object:
        return await session.execute(_CLAIM_GRANT, {"grant": grant, "hash": token, "now": utcnow()})

    async def orm_select() -> object:
        query = select(Grant.status, Grant.cert_serial).where(Grant.id == grant)
        return (await session.execute(query)).one_or_none()

    async def core_select() -> object:
        return (await session.execute(_SELECT_ONCE, {"grant": grant})).one_or_none()

    print("one statement in an open session (no row matches: the client's cost):")
    slow = await _timed("claim UPDATE, ORM statement built per call", n, orm_update)
    fast = await _timed("claim UPDATE, built once (Core, bound parameters)", n, core_update)
    print(f"  {'':<58} {slow / fast:7.2f}x")
    slow = await _timed("SELECT by key, ORM statement built per call", n, orm_select)
    fast = await _timed("SELECT by key, built once", n, core_select)
    print(f"  {'':<58} {slow / fast:7.2f}x")
    await session.rollback()


def _one_select_per_session(
    sessions: async_sessionmaker[AsyncSession], grant: uuid.UUID
) -> Callable[[], Awaitable[object]]:
    async def step() -> object:
        async with sessions() as session:
            return (await session.execute(_SELECT_ONCE, {"grant": grant})).first()

    return step


async def _checkouts(url: str, n: int) -> None:
    print("a session per step (checkout, one SELECT, rollback, checkin), back to back:")
    grant = uuid.uuid4()
    pre_ping = create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    ours = make_engine(url)
    try:
        for label, engine in (("pool_pre_ping (every checkout)", pre_ping), ("ours", ours)):
            await _timed(label, n, _one_select_per_session(make_sessionmaker(engine), grant))
    finally:
        await pre_ping.dispose()
        await ours.dispose()


async def main(n: int) -> None:
    name, url = await create_pg_database()
    try:
        await upgrade_async(url)
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session:
                await _statements(session, n)
        finally:
            await engine.dispose()
        await _checkouts(url, n)
    finally:
        await drop_pg_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="operations per figure")
    asyncio.run(main(parser.parse_args().n))
