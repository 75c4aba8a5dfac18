"""PeerCertificate (gateway A): one long-running run per active peer keeps its client
certificate alive. It sleeps until 2/3 of the certificate's lifetime (±5 % jitter,
computed from the certificate itself), then renews with a fresh key over mTLS, checks
and swaps, and continues as new with a small history.

A renewal failing for a transient reason is retried with backoff until notAfter: the
peer shows ``degraded`` with the reason meanwhile, and ``expired`` past notAfter. A
refusal that means revocation makes the peer ``revoked`` and ends the run; network
errors never do. Signal ``renew_now`` renews at once, ``stop`` ends the run; query
``status`` says where it stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import (
    RetryPolicy,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.common import GRANT_ID, PEER_ID, SHORT_STEP, UNTIL_DONE

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import (
        Held,
        LifecycleActivities,
        LifecyclePeer,
        MarkInput,
        RenewalAnswer,
        SubmitRenewal,
        SwapInput,
        Swapped,
    )
    from federation.runs import peer_certificate_workflow_id

RENEW_AT = 2 / 3
JITTER = 0.05
FIRST_BACKOFF = timedelta(seconds=10)
MAX_BACKOFF = timedelta(minutes=5)
# The remote call: a quick retry of a dropped connection; the workflow's own backoff does
# the rest, so the peer's state says what is going on between attempts.
REMOTE_CALL = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5), maximum_attempts=3
)


@dataclass(frozen=True)
class PeerCertificateInput:
    peer_id: str
    request_id: str = "peer-certificate"
    # Renewals done by the earlier runs of this chain (continue-as-new carries it).
    renewals: int = 0


@dataclass
class LifecycleStatus:
    state: str
    serial: str | None = None
    not_after: str | None = None
    next_renewal_at: str | None = None
    last_error: str | None = None
    renewals: int = 0


def lifecycle_search_attributes(peer_id: str, grant_id: str | None) -> TypedSearchAttributes:
    """PeerId and GrantId of a lifecycle run, set by whoever starts it (the run never
    upserts them, so it also runs on a server without custom search attributes)."""
    pairs = [SearchAttributePair(PEER_ID, peer_id)]
    if grant_id:
        pairs.append(SearchAttributePair(GRANT_ID, grant_id))
    return TypedSearchAttributes(pairs)


@workflow.defn(name="PeerCertificate")
class PeerCertificate:
    def __init__(self) -> None:
        self._status = LifecycleStatus(state="starting")
        self._renew_now = False
        self._stop: str | None = None

    @workflow.signal
    def renew_now(self) -> None:
        """Renew at once rather than at the renewal point."""
        self._renew_now = True

    @workflow.signal
    def stop(self, reason: str) -> None:
        """End the run (the peer was revoked, or removed)."""
        self._stop = reason

    @workflow.query
    def status(self) -> LifecycleStatus:
        return self._status

    @workflow.run
    async def run(self, arg: PeerCertificateInput) -> LifecycleStatus:
        peer = LifecyclePeer(arg.peer_id)
        held: Held | None = await workflow.execute_local_activity_method(
            LifecycleActivities.describe,
            peer,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )
        if held is None or held.state not in ("active", "degraded"):
            self._status = LifecycleStatus(state=held.state if held else "gone")
            return self._status
        not_before = datetime.fromisoformat(held.not_before)
        not_after = datetime.fromisoformat(held.not_after)
        factor = RENEW_AT * (1 + workflow.random().uniform(-JITTER, JITTER))
        renew_at = not_before + (not_after - not_before) * factor
        self._status = LifecycleStatus(
            held.state, held.serial, held.not_after, renew_at.isoformat(), renewals=arg.renewals
        )
        await self._sleep_until(renew_at)
        if self._stop is not None:
            return self._ended(self._stop)
        swapped = await self._renew(arg, held, not_after)
        if swapped is None:
            return self._status
        workflow.continue_as_new(
            PeerCertificateInput(arg.peer_id, arg.request_id, self._status.renewals)
        )

    async def _sleep_until(self, moment: datetime) -> bool:
        """Wait for ``moment``, a ``renew_now`` or a ``stop``; True if woken by a signal."""
        wait = moment - workflow.now()
        if wait <= timedelta(0):
            return False
        try:
            await workflow.wait_condition(
                lambda: self._renew_now or self._stop is not None, timeout=wait
            )
        except TimeoutError:
            return False
        return True

    async def _renew(
        self, arg: PeerCertificateInput, held: Held, not_after: datetime
    ) -> Swapped | None:
        """Renew until it works, the certificate lapses, the remote revokes, or a stop."""
        backoff = FIRST_BACKOFF
        while True:
            if workflow.now() >= not_after:
                await self._mark(
                    arg, held.serial, "expired", "certificate passed notAfter unrenewed"
                )
                self._status.state = "expired"
                return None
            self._renew_now = False
            answer = await self._attempt(arg)
            if answer.outcome == "renewed":
                try:
                    swapped: Swapped = await workflow.execute_local_activity_method(
                        LifecycleActivities.swap,
                        SwapInput(
                            arg.peer_id,
                            held.serial,
                            answer.cert_pem,
                            answer.chain_pem,
                            arg.request_id,
                        ),
                        start_to_close_timeout=timedelta(seconds=15),
                        retry_policy=SHORT_STEP,
                    )
                except (ActivityError, ApplicationError) as failed:
                    # The remote's answer failed our checks, or the swap could not be
                    # stored: the old certificate still holds. Degrade and try again
                    # later, never fail the run (reconcile would only restart it). A local
                    # activity's failure may arrive as its ApplicationError itself.
                    cause = str(failed.cause or failed)
                    answer = RenewalAnswer("failed", detail=f"renewed certificate refused: {cause}")
                else:
                    self._status = LifecycleStatus(
                        "active",
                        swapped.serial,
                        swapped.not_after,
                        renewals=self._status.renewals + 1,
                    )
                    return swapped
            if answer.outcome == "revoked":
                self._ended(answer.detail or "revoked by the remote", state="revoked")
                return None
            self._status.state, self._status.last_error = "degraded", answer.detail
            await self._mark(arg, held.serial, "degraded", answer.detail)
            retry_at = min(workflow.now() + backoff, not_after)
            self._status.next_renewal_at = retry_at.isoformat()
            await self._sleep_until(retry_at)
            if self._stop is not None:
                self._ended(self._stop)
                return None
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _attempt(self, arg: PeerCertificateInput) -> RenewalAnswer:
        self._status.next_renewal_at = workflow.now().isoformat()
        try:
            csr: str = await workflow.execute_local_activity_method(
                LifecycleActivities.prepare,
                LifecyclePeer(arg.peer_id),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=SHORT_STEP,
            )
            answer: RenewalAnswer = await workflow.execute_activity_method(
                LifecycleActivities.submit,
                SubmitRenewal(arg.peer_id, csr, arg.request_id),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=REMOTE_CALL,
            )
        except Exception as failed:  # noqa: BLE001 - any failure here is a retry later
            return RenewalAnswer(
                "failed", detail=f"renewal attempt failed: {type(failed).__name__}"
            )
        return answer

    async def _mark(self, arg: PeerCertificateInput, serial: str, state: str, reason: str) -> None:
        await workflow.execute_local_activity_method(
            LifecycleActivities.mark,
            MarkInput(arg.peer_id, serial, state, reason, arg.request_id),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )

    def _ended(self, reason: str, *, state: str = "stopped") -> LifecycleStatus:
        self._status.state = state
        self._status.last_error = reason
        self._status.next_renewal_at = None
        return self._status


def lifecycle_start(peer_id: str, grant_id: str | None) -> dict[str, Any]:
    """The id, search attributes and summary every start of a lifecycle run uses."""
    return {
        "id": peer_certificate_workflow_id(peer_id),
        "search_attributes": lifecycle_search_attributes(peer_id, grant_id),
        "static_summary": f"Certificate lifecycle of peer {peer_id}",
        "static_details": (
            "Keeps this peer's client certificate alive: sleeps until 2/3 of its lifetime,"
            " renews with a fresh key over mTLS, swaps, continues as new. Signal renew_now,"
            " query status."
        ),
    }


async def start_lifecycle(
    client: Client, *, peer_id: str, grant_id: str | None, task_queue: str, request_id: str
) -> None:
    """From outside a workflow (the API's manual path, reconcile): start the peer's run,
    or leave the one already running."""
    await client.start_workflow(
        PeerCertificate.run,
        PeerCertificateInput(peer_id, request_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        **lifecycle_start(peer_id, grant_id),
    )
