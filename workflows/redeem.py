"""RedeemEnrollment: a remote peer's CSR + token → an activated grant and a client certificate.

validate → claim token → issue → verify → activate. Compensations are
registered before the step they undo and run in reverse; which of them run is
decided by the failure policy table (``federation.policy``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from workflows.common import GRANT_ID, OUTCOME, PEER_ID, SHORT_STEP, UNTIL_DONE

with workflow.unsafe.imports_passed_through():
    from activities.redeem import (
        ActivateInput,
        ClaimInput,
        DenialInput,
        Issued,
        IssueInput,
        RedeemActivities,
        ReleaseInput,
        RevokeInput,
        Validated,
        ValidateInput,
        Verified,
        VerifyInput,
    )
    from federation.policy import REDEEM_FAILURE_POLICY, rule_for

CA_CALL = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=5),
    non_retryable_error_types=["CARefused"],
)


@dataclass(frozen=True)
class RedeemInput:
    request_id: str
    token_hash: str
    csr_pem: str
    ca_retry_seconds: float = 60.0


@dataclass(frozen=True)
class RedeemResult:
    cert_pem: str
    chain_pem: str
    serial: str
    not_after: str
    fingerprint: str
    grant_id: str
    subject_user_id: str
    peer_id: str
    csr_fingerprint: str


@workflow.defn(name="RedeemEnrollment")
class RedeemEnrollment:
    def __init__(self) -> None:
        self._step = "starting"

    @workflow.query
    def progress(self) -> str:
        """The step the run is on, in words."""
        return self._step

    @workflow.run
    async def run(self, arg: RedeemInput) -> RedeemResult:
        undo: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        issued: Issued | None = None
        try:
            self._step = "validating request"
            v: Validated = await workflow.execute_local_activity_method(
                RedeemActivities.validate,
                ValidateInput(arg.token_hash, arg.csr_pem),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=SHORT_STEP,
            )
            workflow.upsert_search_attributes(
                [GRANT_ID.value_set(v.grant_id), PEER_ID.value_set(v.peer_id)]
            )

            self._step = "claiming token"
            undo.append(("release", lambda: self._settle_token(arg, v, release=True)))
            undo.append(("burn", lambda: self._settle_token(arg, v, release=False)))
            await workflow.execute_local_activity_method(
                RedeemActivities.claim_token,
                ClaimInput(arg.token_hash, v.peer_id, v.csr_fingerprint),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=SHORT_STEP,
            )

            self._step = "issuing certificate"
            issued = await workflow.execute_activity_method(
                RedeemActivities.issue_certificate,
                IssueInput(arg.csr_pem, v.grant_id, v.subject_user_id),
                start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=timedelta(seconds=arg.ca_retry_seconds),
                retry_policy=CA_CALL,
            )
            serial = issued.serial
            undo.append(("certificate", lambda: self._revoke(serial)))

            self._step = "verifying certificate"
            verified: Verified = await workflow.execute_local_activity_method(
                RedeemActivities.verify_certificate,
                VerifyInput(
                    issued.cert_pem,
                    issued.chain_pem,
                    v.grant_id,
                    v.subject_user_id,
                    v.public_key_der_b64,
                ),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=SHORT_STEP,
            )

            self._step = "activating grant"
            await workflow.execute_local_activity_method(
                RedeemActivities.activate,
                ActivateInput(
                    arg.request_id,
                    arg.token_hash,
                    v.grant_id,
                    v.peer_id,
                    issued.cert_pem,
                    verified.serial,
                    verified.not_after,
                    verified.fingerprint,
                ),
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=UNTIL_DONE,
            )
        except (ActivityError, ApplicationError) as err:
            kind, message = _classify(err)
            await self._fail(arg, kind, message, undo, issued)
            raise ApplicationError(message, type=kind, non_retryable=True) from None

        self._step = "done"
        workflow.upsert_search_attributes([OUTCOME.value_set("allowed")])
        return RedeemResult(
            cert_pem=issued.cert_pem,
            chain_pem=issued.chain_pem,
            serial=verified.serial,
            not_after=verified.not_after,
            fingerprint=verified.fingerprint,
            grant_id=v.grant_id,
            subject_user_id=v.subject_user_id,
            peer_id=v.peer_id,
            csr_fingerprint=v.csr_fingerprint,
        )

    async def _fail(
        self,
        arg: RedeemInput,
        kind: str,
        message: str,
        undo: list[tuple[str, Callable[[], Awaitable[object]]]],
        issued: Issued | None,
    ) -> None:
        rule = rule_for(kind)
        self._step = f"compensating ({kind})"
        for what, compensate in reversed(undo):
            if what == "release" and not rule.releases_token:
                continue
            if what == "burn" and not rule.burns_token:
                continue
            if what == "certificate" and not rule.revoke_certificate:
                continue
            await compensate()
        await workflow.execute_local_activity_method(
            RedeemActivities.record_denial,
            DenialInput(
                arg.request_id,
                arg.token_hash,
                kind,
                rule.http_status,
                message,
                issued.serial if issued else None,
                idempotency_key=f"{workflow.info().run_id}:denial",
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )
        workflow.upsert_search_attributes([OUTCOME.value_set(f"denied:{kind}")])
        self._step = f"denied ({kind})"

    async def _settle_token(self, arg: RedeemInput, v: Validated, *, release: bool) -> object:
        """Release the claim, or mark the token burnt so reconcile leaves it alone."""
        step = RedeemActivities.release_claim if release else RedeemActivities.burn_token
        return await workflow.execute_local_activity_method(
            step,
            ReleaseInput(arg.token_hash, v.csr_fingerprint),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )

    async def _revoke(self, serial: str) -> object:
        return await workflow.execute_activity_method(
            RedeemActivities.revoke_certificate,
            RevokeInput(serial, "enrollment rolled back"),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )


def _classify(err: ActivityError | ApplicationError) -> tuple[str, str]:
    """(failure kind, safe message) of a failed activity.

    A local activity's failure can surface as the bare ApplicationError, a
    regular one as an ActivityError wrapping it: both are handled.
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type in REDEEM_FAILURE_POLICY:
        return cause.type, cause.message
    if isinstance(cause, TimeoutError):
        # Only the CA call has a schedule-to-close deadline: it ran out of retries.
        return "CAUnavailable", "certificate authority unreachable; try again later"
    return "Unavailable", "enrollment could not complete; try again later"
