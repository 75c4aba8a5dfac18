"""Activities of the reconcile workflow. They ask Temporal whether a run is still
alive before repairing what it would otherwise finish itself."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from federation import reconcile, requester
from federation.db.models import utcnow
from federation.runs import peer_add_workflow_id, redeem_workflow_id

log = logging.getLogger("mosaic.activities.reconcile")


def _count_repairs(kind: str, count: int) -> None:
    """``mosaic_reconcile_repairs{kind}`` on the worker's SDK metrics endpoint."""
    if count and activity.in_activity():
        counter = activity.metric_meter().create_counter(
            "mosaic_reconcile_repairs", "Repairs made by the reconcile schedule"
        )
        counter.with_additional_attributes({"kind": kind}).add(count)
        log.info("reconcile repaired %d (%s)", count, kind)


@dataclass(frozen=True)
class SweepInput:
    request_id: str
    max_pending_age_seconds: float = 7 * 24 * 3600
    grace_seconds: float = 120


@dataclass(frozen=True)
class ClaimRepairs:
    released: int
    grants_expired: int


class ReconcileActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], client: Client) -> None:
        self._sessions = sessions
        self._client = client

    async def _running(self, workflow_type: str) -> set[str]:
        """Ids of the running runs of a type: one visibility query, not one call per candidate."""
        query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running'"
        return {execution.id async for execution in self._client.list_workflows(query)}

    @activity.defn(name="reconcile.claimed_tokens")
    async def claimed_tokens(self, arg: SweepInput) -> ClaimRepairs:
        # Candidates are older than the grace period, so visibility's lag cannot hide a run.
        claimed_before = utcnow() - timedelta(seconds=arg.grace_seconds)
        async with self._sessions() as session:
            candidates = await reconcile.claimed_tokens_without_certificate(
                session, claimed_before=claimed_before
            )
            if not candidates:
                return ClaimRepairs(0, 0)
            live = await self._running("RedeemEnrollment")
            orphans = [t for t in candidates if redeem_workflow_id(t.token_hash) not in live]
            released, expired = await reconcile.repair_claimed_tokens(
                session, orphans, request_id=arg.request_id
            )
        _count_repairs("claim_released", released)
        _count_repairs("stranded_grant_expired", expired)
        return ClaimRepairs(released, expired)

    @activity.defn(name="reconcile.stale_pending_grants")
    async def stale_pending_grants(self, arg: SweepInput) -> int:
        async with self._sessions() as session:
            count = await reconcile.expire_stale_pending_grants(
                session,
                max_age=timedelta(seconds=arg.max_pending_age_seconds),
                request_id=arg.request_id,
            )
        _count_repairs("stale_pending_grant_expired", count)
        return count

    @activity.defn(name="reconcile.orphaned_peers")
    async def orphaned_peers(self, arg: SweepInput) -> int:
        failed = 0
        async with self._sessions() as session:
            older = timedelta(seconds=arg.grace_seconds)
            candidates = await reconcile.enrolling_peers(session, older_than=older)
            live = await self._running("PeerAdd") if candidates else set()
            for peer_id in candidates:
                if peer_add_workflow_id(str(peer_id)) in live:
                    continue
                failed += await requester.mark_failed(
                    session,
                    peer_id,
                    reason="peer add run is gone; enrollment did not finish",
                    status_code=410,
                    request_id=arg.request_id,
                    actor=reconcile.ACTOR,
                )
        _count_repairs("orphaned_peer_failed", failed)
        return failed

    @activity.defn(name="reconcile.lapsed_grants")
    async def lapsed_grants(self, arg: SweepInput) -> int:
        async with self._sessions() as session:
            count = await reconcile.expire_lapsed_grants(session, request_id=arg.request_id)
        _count_repairs("lapsed_grant_expired", count)
        return count

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.claimed_tokens,
            self.stale_pending_grants,
            self.orphaned_peers,
            self.lapsed_grants,
        ]
