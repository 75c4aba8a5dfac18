"""RevokeGrant: grant → revoked, every certificate of it decided for revocation and the
peers holding them → revoked (one transaction), then each certificate revoked at the CA.

Running it again on a revoked grant re-drives the CA part: a revocation the CA refused
or could not take is finished by a later run (or by the reconcile sweep)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow

from workflows.certificates import revoke_all
from workflows.common import GRANT_ID, PEER_ID, UNTIL_DONE

with workflow.unsafe.imports_passed_through():
    from activities.revoke import GrantRevoked, MarkGrantInput, RevokeActivities


@dataclass(frozen=True)
class RevokeGrantInput:
    request_id: str
    grant_id: str
    reason: str | None
    actor: str = "admin"


@dataclass(frozen=True)
class RevokeGrantResult:
    grant_id: str
    # Revoked at the CA by this run; left: refused or unreachable (reconcile retries).
    certificates_revoked: list[str] = field(default_factory=list)
    certificates_left: list[str] = field(default_factory=list)
    peers_revoked: list[str] = field(default_factory=list)


@workflow.defn(name="RevokeGrant")
class RevokeGrant:
    def __init__(self) -> None:
        self._step = "starting"

    @workflow.query
    def progress(self) -> str:
        return self._step

    @workflow.run
    async def run(self, arg: RevokeGrantInput) -> RevokeGrantResult:
        workflow.upsert_search_attributes([GRANT_ID.value_set(arg.grant_id)])
        self._step = "revoking the grant, its certificates in the ledger, and its peer"
        grant: GrantRevoked = await workflow.execute_local_activity_method(
            RevokeActivities.mark_grant,
            MarkGrantInput(arg.request_id, arg.grant_id, arg.reason, arg.actor),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )
        workflow.upsert_search_attributes([PEER_ID.value_set(grant.peer_id)])
        serials = grant.pending_serials
        self._step = f"revoking {len(serials)} certificate(s) at the CA"
        # The grant is already revoked here, so the CA may take its time.
        revoked, left = await revoke_all(serials, arg.reason or "grant revoked")
        self._step = "done" if not left else f"left to reconcile: {', '.join(left)}"
        return RevokeGrantResult(arg.grant_id, revoked, left, grant.peers_revoked)
