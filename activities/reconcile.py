"""Activities of the reconcile workflow. They ask Temporal whether a run is still
alive before repairing what it would otherwise finish itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from federation import ledger, peer_lifecycle, reconcile, requesting_peer
from federation.ca.base import CertificateAuthority
from federation.db.models import utcnow
from federation.errors import FederationError
from federation.runs import (
    peer_add_workflow_id,
    peer_certificate_workflow_id,
    redeem_workflow_id,
)

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


@dataclass(frozen=True)
class CertificateRepairs:
    # Signed (or asked for) by a run that is gone, never pinned: decided for revocation.
    orphans_withdrawn: int
    # Rows of revoked or expired grants that no decision covered yet.
    closed_grant_rows_decided: int
    # Decided rows the CA confirmed revoked during this sweep; the rest are left for the next.
    revoked_at_ca: int
    left_at_ca: int


@dataclass(frozen=True)
class PeerWithoutLifecycle:
    peer_id: str
    grant_id: str | None


# Runs that ask the CA to sign: a ledger row issued by one of them, still running, is theirs.
SIGNING_WORKFLOWS = ("RedeemEnrollment", "RenewCertificate")
CA_CONCURRENCY = 8


class ReconcileActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client,
        ca: CertificateAuthority,
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._ca = ca

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
                failed += await requesting_peer.mark_failed(
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

    @activity.defn(name="reconcile.certificates")
    async def certificates(self, arg: SweepInput) -> CertificateRepairs:
        """Whatever the ledger holds that no live run will finish: withdraw, then revoke."""
        older = utcnow() - timedelta(seconds=arg.grace_seconds)
        async with self._sessions() as session:
            candidates = await ledger.orphans(session, older_than=older)
            live = await self._live_runs(SIGNING_WORKFLOWS) if candidates else set()
            gone = [serial for serial, run in candidates if run not in live]
            withdrawn = (
                await ledger.decide_revocation(
                    session, reason="issued by a run that is gone; never activated", serials=gone
                )
                if gone
                else []
            )
            closed = await ledger.decide_for_closed_grants(session)
            await session.commit()
            due = await ledger.pending_revocations(session, due_by=utcnow())
        revoked = await self._revoke_at_ca(due)
        _count_repairs("certificate_withdrawn", len(withdrawn) + len(closed))
        _count_repairs("certificate_revoked_at_ca", revoked)
        return CertificateRepairs(len(withdrawn), len(closed), revoked, len(due) - revoked)

    async def _live_runs(self, types: tuple[str, ...]) -> set[str]:
        """``<workflow id>/<run id>`` of every running run of these types (one query)."""
        names = ", ".join(f"'{t}'" for t in types)
        query = f"WorkflowType IN ({names}) AND ExecutionStatus = 'Running'"
        return {f"{e.id}/{e.run_id}" async for e in self._client.list_workflows(query)}

    async def _revoke_at_ca(self, serials: list[str]) -> int:
        """Revoke decided serials at the CA, a few at a time; returns how many it confirmed."""
        gate = asyncio.Semaphore(CA_CONCURRENCY)

        async def one(serial: str) -> bool:
            async with gate:
                try:
                    await ledger.revoke_at_ca(self._sessions, self._ca, serial, "reconcile")
                except FederationError as exc:
                    log.warning("reconcile could not revoke %s at the CA: %s", serial, exc.message)
                    return False
            return True

        return sum(await asyncio.gather(*(one(serial) for serial in serials)))

    @activity.defn(name="reconcile.peer_lifecycles")
    async def peer_lifecycles(self, arg: SweepInput) -> list[PeerWithoutLifecycle]:
        """Requesting-side peers with a certificate and no running lifecycle run: the
        reconcile run starts one for each."""
        async with self._sessions() as session:
            candidates = await peer_lifecycle.lifecycle_candidates(session)
        if not candidates:
            return []
        live = await self._live_runs(("PeerCertificate",))
        running = {ref.split("/", 1)[0] for ref in live}
        return [
            PeerWithoutLifecycle(str(peer_id), grant_id)
            for peer_id, grant_id in candidates
            if peer_certificate_workflow_id(str(peer_id)) not in running
        ]

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.peer_lifecycles,
            self.certificates,
            self.claimed_tokens,
            self.stale_pending_grants,
            self.orphaned_peers,
            self.lapsed_grants,
        ]
