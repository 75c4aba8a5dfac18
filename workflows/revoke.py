"""RevokeGrant: grant → revoked, its certificate revoked at the CA, its peer → revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.common import GRANT_ID, PEER_ID, UNTIL_DONE

with workflow.unsafe.imports_passed_through():
    from activities.redeem import RedeemActivities, RevokeInput
    from activities.revoke import GrantRevoked, MarkGrantInput, MarkPeerInput, RevokeActivities

CA_CALL = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@dataclass(frozen=True)
class RevokeGrantInput:
    request_id: str
    grant_id: str
    reason: str | None
    actor: str = "admin"


@dataclass(frozen=True)
class RevokeGrantResult:
    grant_id: str
    cert_serial: str | None
    certificate_revoked: bool
    peer_revoked: bool


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
        self._step = "revoking the grant"
        grant: GrantRevoked = await workflow.execute_local_activity_method(
            RevokeActivities.mark_grant,
            MarkGrantInput(arg.request_id, arg.grant_id, arg.reason, arg.actor),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )
        workflow.upsert_search_attributes([PEER_ID.value_set(grant.peer_id)])
        if grant.cert_serial is None:  # never enrolled: nothing was issued
            self._step = "done"
            return RevokeGrantResult(arg.grant_id, None, False, False)

        self._step = f"revoking certificate {grant.cert_serial} at the CA"
        # The grant is already revoked here, so the CA may take its time: keep trying.
        await workflow.execute_activity_method(
            RedeemActivities.revoke_certificate,
            RevokeInput(grant.cert_serial, arg.reason or "grant revoked"),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=CA_CALL,
        )
        self._step = "revoking the peer"
        peer_revoked: bool = await workflow.execute_local_activity_method(
            RevokeActivities.mark_peer,
            MarkPeerInput(arg.request_id, grant.peer_id, grant.cert_serial),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )
        self._step = "done"
        return RevokeGrantResult(arg.grant_id, grant.cert_serial, True, peer_revoked)
