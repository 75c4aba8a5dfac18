"""PeerAdd: the requesting gateway enrolls with a remote and ends with an active peer.

preflight → key + CSR → submit → verify → store. The token never enters this
workflow's history: activities read the sealed enrollment URL by peer id.

Once the CSR is submitted the remote may activate it at any time, so the key is
kept while the only failures are transient: fast retries for ``submit_seconds``,
then one try per durable timer for ``patience_seconds`` more, the status saying
what it waits for. A definitive answer ends it at once (200 → verify and store;
a refusal → ``failed``); only a final failure marks the peer ``failed`` and wipes
its sealed key and URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError
from temporalio.workflow import ParentClosePolicy

from workflows.common import GRANT_ID, OUTCOME, SHORT_STEP, UNTIL_DONE
from workflows.peer_certificate import PeerCertificate, PeerCertificateInput, lifecycle_start

with workflow.unsafe.imports_passed_through():
    from activities.peer_add import (
        Checked,
        FailInput,
        PeerAddActivities,
        PeerRef,
        Preflight,
        PreflightInput,
        Received,
        StoreInput,
        SubmitInput,
        VerifyReceivedInput,
    )
    from federation.errors import status_for_kind
    from workflows.deadlines import STEP_TIMED_OUT

REMOTE_CALL = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
)
ONE_TRY = RetryPolicy(maximum_attempts=1)
REMOTE_ATTEMPT = timedelta(seconds=45)
# At most this many slow tries per run: the history stays near 16k events whatever
# the patience (the interval grows instead).
SLOW_TRIES_MAX = 1440
PATIENCE_PATCH = "peer-add-patience"


@dataclass(frozen=True)
class PeerAddInput:
    request_id: str
    peer_id: str
    submit_seconds: float = 300.0
    # After submit_seconds of transient failures, keep the key and retry this long.
    patience_seconds: float = 0.0
    retry_interval_seconds: float = 60.0
    # The admin's pin of the remote CA (64 lowercase hex), checked before any CSR.
    ca_fingerprint: str | None = None


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
    """What the `status` query answers: the step and, after preflight, what the token is
    for and which CA the remote announced (its root's SHA-256)."""

    step: str
    remote_host: str | None = None
    common_name: str | None = None
    grant_id: str | None = None
    subject_user_id: str | None = None
    token_expires_at: str | None = None
    failure: str | None = None
    ca_fingerprint: str | None = None


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
        try:
            self._status.step = "asking the remote what the token is for"
            pre: Preflight = await workflow.execute_activity_method(
                PeerAddActivities.preflight,
                PreflightInput(arg.peer_id, arg.ca_fingerprint),
                start_to_close_timeout=REMOTE_ATTEMPT,
                schedule_to_close_timeout=timedelta(seconds=arg.submit_seconds),
                retry_policy=REMOTE_CALL,
            )
            self._status.remote_host = pre.remote_host
            self._status.common_name = pre.common_name
            self._status.grant_id = pre.grant_id
            self._status.subject_user_id = pre.subject_user_id
            self._status.token_expires_at = pre.expires_at
            self._status.ca_fingerprint = pre.ca_fingerprint or None
            workflow.upsert_search_attributes([GRANT_ID.value_set(pre.grant_id)])

            self._status.step = "generating a P-256 key (sealed at once) and a CSR"
            csr_pem: str = await workflow.execute_local_activity_method(
                PeerAddActivities.make_csr,
                ref,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=SHORT_STEP,
            )

            received = await self._submit(arg, pre.remote_host, SubmitInput(arg.peer_id, csr_pem))

            self._status.step = "verifying the certificate (pinned CA, OIDs, key, expiry)"
            checked: Checked = await workflow.execute_local_activity_method(
                PeerAddActivities.verify,
                VerifyReceivedInput(
                    arg.peer_id,
                    received.cert_pem,
                    received.chain_pem,
                    pre.grant_id,
                    pre.subject_user_id,
                    received.ca_cert_pem,
                    pre.ca_fingerprint,
                ),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=SHORT_STEP,
            )

            self._status.step = "storing the credential"
            await workflow.execute_local_activity_method(
                PeerAddActivities.store,
                StoreInput(
                    arg.request_id,
                    arg.peer_id,
                    received.cert_pem,
                    checked,
                    received.ca_cert_pem,
                    pre.ca_fingerprint,
                    received.federation_url or pre.federation_url,
                    received.chain_pem,
                ),
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

        self._status.step = "done; its certificate's lifecycle run takes over"
        workflow.upsert_search_attributes([OUTCOME.value_set("allowed")])
        await workflow.start_child_workflow(
            PeerCertificate.run,
            PeerCertificateInput(arg.peer_id, arg.request_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            **lifecycle_start(arg.peer_id, checked.grant_id),
        )
        return PeerAddResult(
            arg.peer_id,
            checked.serial,
            checked.not_after,
            checked.fingerprint,
            checked.grant_id,
            checked.subject_user_id,
        )

    async def _submit(self, arg: PeerAddInput, host: str, submit: SubmitInput) -> Received:
        """Submit the CSR until the remote answers definitively or patience runs out."""
        since = workflow.now()
        self._status.step = f"submitting the CSR to {host}"
        try:
            received: Received = await workflow.execute_activity_method(
                PeerAddActivities.submit,
                submit,
                start_to_close_timeout=REMOTE_ATTEMPT,
                schedule_to_close_timeout=timedelta(seconds=arg.submit_seconds),
                retry_policy=REMOTE_CALL,
            )
            return received
        except ActivityError as err:
            last = _transient(err)
            if last is None or not workflow.patched(PATIENCE_PATCH):
                raise
        patience = timedelta(seconds=arg.patience_seconds)
        interval = timedelta(
            seconds=max(arg.retry_interval_seconds, arg.patience_seconds / SLOW_TRIES_MAX, 1.0)
        )
        gives_up = workflow.now() + patience
        while (left := gives_up - workflow.now()) > timedelta(0):
            self._status.step = f"waiting for {host}: {last} (since {_utc(since)})"
            await workflow.sleep(min(interval, left))
            try:
                received = await workflow.execute_activity_method(
                    PeerAddActivities.submit,
                    submit,
                    start_to_close_timeout=REMOTE_ATTEMPT,
                    retry_policy=ONE_TRY,
                )
                return received
            except ActivityError as err:
                last = _transient(err)
                if last is None:
                    raise
        waited = int((workflow.now() - since).total_seconds())
        raise ApplicationError(
            f"gave up after {waited}s without a definitive answer from {host}"
            f" (last: {last}); the client key was wiped",
            type="RemoteUnavailable",
            non_retryable=True,
        )


def _transient(err: ActivityError) -> str | None:
    """The last answer, in words, when the submit failed only for transient reasons
    (the remote may still activate the CSR); None when its answer was definitive."""
    cause = err.cause
    if isinstance(cause, TimeoutError):
        last = cause.cause
        if isinstance(last, ApplicationError) and not last.non_retryable:
            return last.message
        return "no answer in time"
    if isinstance(cause, ApplicationError) and not cause.non_retryable:
        return cause.message
    return None


def _classify(err: ActivityError | ApplicationError) -> tuple[str, str, int]:
    """(kind, one-line reason, status code for the audit row).

    Messages come from our own activities or this workflow: one line each, never a
    library's or the remote's raw text.
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, TimeoutError):
        last = cause.cause
        detail = f": {last.message}" if isinstance(last, ApplicationError) else ""
        return "RemoteUnavailable", f"gave up waiting for the remote gateway{detail}", 504
    if isinstance(cause, ApplicationError):
        kind = cause.type or "Error"
        if kind == STEP_TIMED_OUT:  # one of our own local steps hung (a database, say)
            return "Unavailable", f"peer add could not complete: {cause.message}", 503
        if kind == "RemoteUnavailable" and not cause.non_retryable:
            # Retries ran out early: the next backoff would not have fit the window.
            return kind, f"gave up waiting for the remote gateway: {cause.message}", 504
        return kind, cause.message, status_for_kind(kind)
    return "Error", "peer add failed", 500


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
