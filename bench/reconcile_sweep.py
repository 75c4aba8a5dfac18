"""Reconcile sweep benchmark: 100k grants and tokens in PostgreSQL, 1% stranded.

    python -m bench.reconcile_sweep [--grants 100000] [--stranded 0.01]

Seeds a fresh database (dropped at the end), prints the plan of every candidate
query (they must use indexes), then times one sweep: the four reconcile
activities called in-process against the real database and a real Temporal dev
server (for the one visibility query), and the same sweep as a whole
ReconcileEnrollments workflow run. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.reconcile import ReconcileActivities, SweepInput
from api.devserver import temporal_cli_path
from federation.ca.builtin import BuiltinCA
from federation.db.migrate import upgrade_async
from federation.db.models import EnrollmentToken, Grant, Peer
from federation.db.session import make_engine, make_sessionmaker
from workflows.common import GRANT_ID, OUTCOME, PEER_ID
from workflows.reconcile import ReconcileEnrollments, ReconcileInput

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SCOPE = '{"resources": ["tasks"], "excluded_resources": [], "max_rows_per_query": 100}'


async def seed(dsn: str, grants: int, stranded: float) -> int:
    """COPY users, peers, grants and tokens; returns how many claims are stranded."""
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        users = [(uuid.uuid4(), f"u{i}", f"u{i}@bench.example", now) for i in range(1000)]
        await conn.copy_records_to_table(
            "users", records=users, columns=["id", "name", "email", "created_at"]
        )
        peers, grant_rows, tokens = [], [], []
        n_stranded = int(grants * stranded)
        for i in range(grants):
            peer_id, grant_id = uuid.uuid4(), uuid.uuid4()
            serial = f"{i:032x}"
            is_stranded = i < n_stranded
            peers.append(
                (
                    peer_id,
                    f"peer-{i}.bench.example",
                    f"peer {i}",
                    "pending" if is_stranded else "active",
                    now,
                    now,
                )
            )
            grant_rows.append(
                (
                    grant_id,
                    users[i % len(users)][0],
                    peer_id,
                    SCOPE,
                    "pending" if is_stranded else "active",
                    None if is_stranded else serial,
                    None if is_stranded else now + timedelta(days=30),
                    now,
                    now,
                )
            )
            token_hash = hashlib.sha256(f"bench-token-{i}".encode()).hexdigest()
            tokens.append(
                (
                    token_hash,
                    grant_id,
                    peer_id,
                    now + timedelta(minutes=10) if is_stranded else now - timedelta(days=1),
                    now - timedelta(minutes=5) if is_stranded else now - timedelta(days=1),
                    "ab" * 32,
                    None if is_stranded else serial,
                    now,
                )
            )
        await conn.copy_records_to_table(
            "federation_peers",
            records=peers,
            columns=["id", "common_name", "display_name", "state", "created_at", "updated_at"],
        )
        await conn.copy_records_to_table(
            "federation_grants",
            records=grant_rows,
            columns=[
                "id",
                "subject_user_id",
                "peer_id",
                "scope",
                "status",
                "cert_serial",
                "cert_not_after",
                "created_at",
                "updated_at",
            ],
        )
        await conn.copy_records_to_table(
            "federation_enrollment_tokens",
            records=tokens,
            columns=[
                "token_hash",
                "grant_id",
                "peer_id",
                "expires_at",
                "used_at",
                "csr_fingerprint",
                "cert_serial",
                "created_at",
            ],
        )
        await conn.execute("ANALYZE")
        return n_stranded
    finally:
        await conn.close()


CANDIDATE_QUERIES = {
    "claimed tokens without certificate": select(EnrollmentToken.token_hash)
    .where(
        EnrollmentToken.used_at.is_not(None),
        EnrollmentToken.cert_serial.is_(None),
        EnrollmentToken.burnt_at.is_(None),
        EnrollmentToken.used_at < datetime.now(UTC) - timedelta(seconds=120),
    )
    .limit(2000),
    "stale pending grants": select(Grant.id)
    .where(Grant.status == "pending", Grant.created_at < datetime.now(UTC) - timedelta(days=7))
    .limit(2000),
    "lapsed active grants": select(Grant.id)
    .where(Grant.status == "active", Grant.cert_not_after < datetime.now(UTC))
    .limit(2000),
    "enrolling peers": select(Peer.id)
    .where(
        Peer.state == "pending",
        Peer.enrollment_url_sealed.is_not(None),
        Peer.created_at < datetime.now(UTC) - timedelta(seconds=120),
    )
    .limit(2000),
}


async def explain(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        for name, query in CANDIDATE_QUERIES.items():
            compiled = query.compile(engine.sync_engine, compile_kwargs={"literal_binds": True})
            plan = (await conn.execute(text(f"EXPLAIN (COSTS OFF) {compiled}"))).scalars().all()
            uses_index = any("Index" in line for line in plan)
            print(f"  {name:<38} {'index' if uses_index else 'SEQ SCAN'}: {plan[1:2] or plan[:1]}")


async def main(grants: int, stranded: float) -> None:
    name = f"mosaic_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli_path()),
        search_attributes=[GRANT_ID, PEER_ID, OUTCOME],
    )
    engine = make_engine(url)
    try:
        await upgrade_async(url)
        started = time.perf_counter()
        n = await seed(url.replace("+asyncpg", ""), grants, stranded)
        print(
            f"seeded {grants} grants + tokens ({n} stranded claims) in "
            f"{time.perf_counter() - started:.1f}s"
        )
        print("query plans (candidate selection):")
        await explain(engine)

        # The certificate sweep may revoke at the CA: a built-in CA of its own does.
        ca = BuiltinCA.open_or_create(Path(tempfile.mkdtemp(prefix="bench-ca-")))
        acts = ReconcileActivities(make_sessionmaker(engine), env.client, ca)
        sweep = SweepInput(request_id="bench", grace_seconds=120)
        t0 = time.perf_counter()
        claims, stale, peers, lapsed, certificates, lifecycles = await asyncio.gather(
            acts.claimed_tokens(sweep),
            acts.stale_pending_grants(sweep),
            acts.orphaned_peers(sweep),
            acts.lapsed_grants(sweep),
            acts.certificates(sweep),
            acts.peer_lifecycles(sweep),
        )
        sweep_ms = (time.perf_counter() - t0) * 1000
        print(
            f"sweep in-process: {sweep_ms:.0f} ms — released {claims.released}, "
            f"expired {claims.grants_expired + stale + lapsed}, peers failed {peers}, "
            f"certificates {certificates}, peers without a lifecycle run {len(lifecycles)}"
        )

        t0 = time.perf_counter()
        idle = await asyncio.gather(
            acts.claimed_tokens(sweep),
            acts.stale_pending_grants(sweep),
            acts.orphaned_peers(sweep),
            acts.lapsed_grants(sweep),
            acts.certificates(sweep),
            acts.peer_lifecycles(sweep),
        )
        print(f"sweep with nothing to repair: {(time.perf_counter() - t0) * 1000:.0f} ms {idle}")

        await seed_more_stranded(url.replace("+asyncpg", ""), n)
        async with Worker(
            env.client,
            task_queue="bench-reconcile",
            workflows=[ReconcileEnrollments],
            activities=acts.all(),
        ):
            t0 = time.perf_counter()
            report = await env.client.execute_workflow(
                ReconcileEnrollments.run,
                ReconcileInput(grace_seconds=120),
                id=f"bench-reconcile-{uuid.uuid4().hex[:6]}",
                task_queue="bench-reconcile",
            )
            wf_ms = (time.perf_counter() - t0) * 1000
        print(f"whole ReconcileEnrollments run via Temporal: {wf_ms:.0f} ms — {report}")
    finally:
        await engine.dispose()
        await env.shutdown()
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def seed_more_stranded(dsn: str, n: int) -> None:
    """Claim the released tokens again (5 min ago), so the workflow run has work too."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE federation_enrollment_tokens SET used_at = now() - interval '5 minutes',"
            " csr_fingerprint = 'ab' WHERE used_at IS NULL AND cert_serial IS NULL"
        )
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--stranded", type=float, default=0.01)
    args = parser.parse_args()
    asyncio.run(main(args.grants, args.stranded))
    gc.collect()
