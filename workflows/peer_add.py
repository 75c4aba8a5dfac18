"""PeerAdd: the requesting gateway enrolls with a remote and ends with an active peer.

preflight → key + CSR → submit → verify → store. On a final failure the peer
is marked ``failed`` with the reason and its sealed key and URL are wiped.
The token never enters this workflow's history: activities read the sealed
enrollment URL from the database by peer id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from workflows.common import GRANT_ID, OUTCOME, SHORT_STEP, UNTIL_DONE

with workflow.unsafe.imports_passed_through():
    from activities.peer_add import (
        Checked,
        FailInput,
        PeerAddActivities,
        PeerRef,
        Preflight,
        Received,
        StoreInput,
        SubmitInput,
        VerifyReceivedInput,
    )

REMOTE_CALL = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=["EnrollmentRefused"],
)


@dataclass(frozen=True)
class PeerAddInput:
    request_id: str
    peer_id: str
    submit_seconds: float = 300.0


@dataclass(frozen=True)
class PeerAddResult:
    peer_id: str
    serial: str
    not_after: str
    fingerprint: str
    grant_id: str
    subject_user_id: str


@dataclass
class PeerAddStatus:
    """What the `status` query answers: the step and, after preflight, what the token is for."""

    step: str
    remote_host: str | None = None
    common_name: str | None = None
    grant_id: str | None = None
    subject_user_id: str | None = None
    token_expires_at: str | None = None
    failure: str | None = None


@workflow.defn(name="PeerAdd")
class PeerAdd:
    def __init__(self) -> None:
        self._status = PeerAddStatus(step="starting")

    @workflow.query
    def progress(self) -> str:
        """The current step, in words."""
        return self._status.step

    @workflow.query
    def status(self) -> PeerAddStatus:
        return self._status

    @workflow.run
    async def run(self, arg: PeerAddInput) -> PeerAddResult:
        ref = PeerRef(arg.peer_id)
        remote_deadline = timedelta(seconds=arg.submit_seconds)
        try:
            self._status.step = "asking the remote what the token is for"
            pre: Preflight = await workflow.execute_activity_method(
                PeerAddActivities.preflight,
                ref,
                start_to_close_timeout=timedelta(seconds=45),
                schedule_to_close_timeout=remote_deadline,
                retry_policy=REMOTE_CALL,
            )
            self._status.remote_host = pre.remote_host
            self._status.common_name = pre.common_name
            self._status.grant_id = pre.grant_id
            self._status.subject_user_id = pre.subject_user_id
            self._status.token_expires_at = pre.expires_at
            workflow.upsert_search_attributes([GRANT_ID.value_set(pre.grant_id)])

            self._status.step = "generating a P-256 key (sealed at once) and a CSR"
            csr_pem: str = await workflow.execute_local_activity_method(
                PeerAddActivities.make_csr,
                ref,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=SHORT_STEP,
            )

            self._status.step = f"submitting the CSR to {pre.remote_host}"
            received: Received = await workflow.execute_activity_method(
                PeerAddActivities.submit,
                SubmitInput(arg.peer_id, csr_pem),
                start_to_close_timeout=timedelta(seconds=45),
                schedule_to_close_timeout=remote_deadline,
                retry_policy=REMOTE_CALL,
            )

            self._status.step = "verifying the certificate (OIDs, key, chain, expiry)"
            checked: Checked = await workflow.execute_local_activity_method(
                PeerAddActivities.verify,
                VerifyReceivedInput(
                    arg.peer_id,
                    received.cert_pem,
                    received.chain_pem,
                    pre.grant_id,
                    pre.subject_user_id,
                ),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=SHORT_STEP,
            )

            self._status.step = "storing the credential"
            await workflow.execute_local_activity_method(
                PeerAddActivities.store,
                StoreInput(arg.request_id, arg.peer_id, received.cert_pem, checked),
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=UNTIL_DONE,
            )
        except (ActivityError, ApplicationError) as err:
            kind, reason, status = _classify(err)
            self._status.step = "failed"
            self._status.failure = reason
            await workflow.execute_local_activity_method(
                PeerAddActivities.mark_failed,
                FailInput(arg.request_id, arg.peer_id, reason, status),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=UNTIL_DONE,
            )
            workflow.upsert_search_attributes([OUTCOME.value_set(f"denied:{kind}")])
            raise ApplicationError(reason, type=kind, non_retryable=True) from None

        self._status.step = "done"
        workflow.upsert_search_attributes([OUTCOME.value_set("allowed")])
        return PeerAddResult(
            arg.peer_id,
            checked.serial,
            checked.not_after,
            checked.fingerprint,
            checked.grant_id,
            checked.subject_user_id,
        )


def _classify(err: ActivityError | ApplicationError) -> tuple[str, str, int]:
    """(kind, one-line reason, status code for the audit row)."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, TimeoutError):
        last = cause.cause
        detail = f": {last.message}" if isinstance(last, ApplicationError) else ""
        return "RemoteUnavailable", f"gave up waiting for the remote gateway{detail}", 504
    if isinstance(cause, ApplicationError):
        kind = cause.type or "Error"
        status = {"EnrollmentRefused": 502, "RemoteUnavailable": 504, "CertificateRejected": 502}
        return kind, cause.message, status.get(kind, 409)
    return "Error", "peer add failed", 500
