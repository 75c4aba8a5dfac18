"""RedeemEnrollment: a remote peer's CSR + token → an activated grant and a client certificate.

validate and claim the token (and grant) → issue and verify → activate, all local
activities, so a run is one workflow task (runs started before ``THREE_STEPS`` finish in
five: validate → claim → issue → verify → activate). Each compensation is registered
before the step it undoes, together with the rule that decides whether it runs; on
failure they run in reverse. All of them are database steps: the CA revocation of
whatever this run had signed is handed to a RevokeCertificates run of its own, so
neither a slow CA nor a refusing one holds up the token, the audit row or the answer.
"""

# No `from __future__ import annotations` in this module: Temporal decodes its payload
# dataclasses with typing.get_type_hints on every call, and string annotations make
# that about three times dearer (docs/benchmarks.md, "What changed this round").

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.certificates import start_revocation, verify_issued
from workflows.common import (
    CA_CALL,
    GRANT_ID,
    OUTCOME,
    PEER_ID,
    SHORT_STEP,
    UNTIL_DONE,
    failure_of,
)

with workflow.unsafe.imports_passed_through():
    from activities.certificates import (
        CertificateActivities,
        Certified,
        CertifyInput,
        Issued,
        SignInput,
        Verified,
        WithdrawInput,
        Withdrawn,
    )
    from activities.redeem import (
        ActivateInput,
        ClaimInput,
        DenialInput,
        RedeemActivities,
        ReleaseInput,
        Validated,
        ValidateInput,
    )
    from federation.policy import REDEEM_FAILURE_POLICY, FailureRule, http_status_for, rule_for


# workflow.patched ids. The CA step runs as a local activity in the run's one workflow task:
SIGN_LOCALLY = "sign-as-local-activity"
# The redeem in three steps (validate and claim, sign and verify, activate), GrantId and
# PeerId set at the start: the runs of RedeemInput with a csr_fingerprint.
THREE_STEPS = "redeem-in-three-steps"
# Longer than any backoff of CA_CALL (5 s at most): the CA step never retries by timer.
CA_RETRIES_IN_PLACE = timedelta(minutes=1)


@dataclass(frozen=True)
class RedeemInput:
    request_id: str
    token_hash: str
    csr_pem: str
    ca_retry_seconds: float = 60.0
    # The CSR's fingerprint as the API computed it (the run checks it again): what the
    # claim's compensations name, registered before the claim. None in runs of old.
    csr_fingerprint: str | None = None


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


@dataclass(frozen=True)
class Compensation:
    """An undo step and the rule that decides, from the failure's policy, whether it runs."""

    name: str
    applies: Callable[[FailureRule], bool]
    run: Callable[[], Awaitable[object]]


def _always(_: FailureRule) -> bool:
    return True


def _when_released(rule: FailureRule) -> bool:
    return rule.releases_token


def _when_burnt(rule: FailureRule) -> bool:
    return rule.burns_token


def _identity(v: Validated) -> list[SearchAttributeUpdate[Any]]:
    return [GRANT_ID.value_set(v.grant_id), PEER_ID.value_set(v.peer_id)]


def _rejected_serial(err: ActivityError | ApplicationError) -> str | None:
    """The serial a refused certificate had (``certificates.certify`` names it)."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type == "CertificateRejected":
        return str(cause.details[0]) if cause.details else None
    return None


def _ca_step_options(budget: timedelta) -> dict[str, Any]:
    """The CA step's local-activity options. Its retries stay in place
    (``local_retry_threshold``, see ``workflows.deadlines``): they are held to ``budget``,
    counted from the step's first schedule, and the start-to-close covers the budget too,
    as core counts it over all the attempts retried in place. One attempt is held to
    seconds by the CA client's timeouts."""
    return {
        "start_to_close_timeout": max(budget, timedelta(seconds=10)),
        "schedule_to_close_timeout": budget,
        "retry_policy": CA_CALL,
        "local_retry_threshold": CA_RETRIES_IN_PLACE,
    }


@workflow.defn(name="RedeemEnrollment")
class RedeemEnrollment:
    def __init__(self) -> None:
        self._step = "starting"
        # What a timeout of the current step means (see _classify).
        self._timeout_kind = "Unavailable"
        # The serial the CA signed for this run, once it did (for the denial's audit row).
        self._serial: str | None = None

    @workflow.query
    def progress(self) -> str:
        """The step the run is on, in words."""
        return self._step

    @workflow.run
    async def run(self, arg: RedeemInput) -> RedeemResult:
        undo: list[Compensation] = []
        try:
            if arg.csr_fingerprint is not None and workflow.patched(THREE_STEPS):
                done = await self._three_steps(arg, arg.csr_fingerprint, undo)
            else:
                done = await self._five_steps(arg, undo)
        except (ActivityError, ApplicationError) as err:
            kind, message = self._classify(err)
            self._serial = self._serial or _rejected_serial(err)
            await self._fail(arg, kind, message, undo)
            raise ApplicationError(message, type=kind, non_retryable=True) from None

        self._step = "done"
        workflow.upsert_search_attributes([OUTCOME.value_set("allowed")])
        return done

    async def _three_steps(
        self, arg: RedeemInput, csr_fingerprint: str, undo: list[Compensation]
    ) -> RedeemResult:
        """validate and claim → have the CA sign, and verify → activate: three local
        activities (THREE_STEPS). GrantId and PeerId come with the start."""
        # Before the claim: its reply may be lost after it committed.
        settle = ReleaseInput(arg.token_hash, csr_fingerprint)
        undo.append(Compensation("release the claim", _when_released, self._release(settle)))
        undo.append(Compensation("burn the token", _when_burnt, self._burn(settle)))
        self._at("validating request and claiming token")
        v: Validated = await workflow.execute_local_activity_method(
            RedeemActivities.validate_and_claim,
            ValidateInput(arg.token_hash, arg.csr_pem),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=SHORT_STEP,
        )
        if workflow.info().typed_search_attributes.get(GRANT_ID) is None:
            workflow.upsert_search_attributes(_identity(v))  # started without them

        # Before the CA is called: the reply may be lost after the CA signed.
        withdraw = self._withdraw(arg.request_id)
        undo.append(Compensation("withdraw this run's certificates", _always, withdraw))
        self._at("issuing and verifying certificate", timeout_kind="CAUnavailable")
        budget = timedelta(seconds=arg.ca_retry_seconds)
        certified: Certified = await workflow.execute_local_activity_method(
            CertificateActivities.certify,
            CertifyInput(
                arg.csr_pem,
                v.grant_id,
                v.subject_user_id,
                v.peer_id,
                v.csr_fingerprint,
                v.public_key_der_b64,
            ),
            **_ca_step_options(budget),
        )
        self._serial = certified.serial
        return await self._activate(
            arg,
            v,
            certified.cert_pem,
            certified.chain_pem,
            Verified(certified.serial, certified.not_after, certified.fingerprint),
        )

    async def _five_steps(self, arg: RedeemInput, undo: list[Compensation]) -> RedeemResult:
        """The shape before THREE_STEPS, for runs started before it (and replays):
        validate → claim → sign → verify → activate."""
        self._at("validating request")
        v: Validated = await workflow.execute_local_activity_method(
            RedeemActivities.validate,
            ValidateInput(arg.token_hash, arg.csr_pem),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=SHORT_STEP,
        )
        workflow.upsert_search_attributes(_identity(v))

        self._at("claiming token")
        settle = ReleaseInput(arg.token_hash, v.csr_fingerprint)
        undo.append(Compensation("release the claim", _when_released, self._release(settle)))
        undo.append(Compensation("burn the token", _when_burnt, self._burn(settle)))
        await workflow.execute_local_activity_method(
            RedeemActivities.claim_token,
            ClaimInput(arg.token_hash, v.grant_id, v.peer_id, v.csr_fingerprint),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=SHORT_STEP,
        )

        # Before the CA is called: the reply may be lost after the CA signed.
        withdraw = self._withdraw(arg.request_id)
        undo.append(Compensation("withdraw this run's certificates", _always, withdraw))
        self._at("issuing certificate", timeout_kind="CAUnavailable")
        issued = await self._sign(
            SignInput(arg.csr_pem, v.grant_id, v.subject_user_id, v.peer_id, v.csr_fingerprint),
            timedelta(seconds=arg.ca_retry_seconds),
        )
        self._serial = issued.serial

        self._at("verifying certificate")
        verified = await verify_issued(issued, v.grant_id, v.subject_user_id, v.public_key_der_b64)
        return await self._activate(arg, v, issued.cert_pem, issued.chain_pem, verified)

    async def _activate(
        self, arg: RedeemInput, v: Validated, cert_pem: str, chain_pem: str, verified: Verified
    ) -> RedeemResult:
        self._at("activating grant")
        activated: Withdrawn = await workflow.execute_local_activity_method(
            RedeemActivities.activate,
            ActivateInput(
                arg.request_id,
                arg.token_hash,
                v.grant_id,
                v.peer_id,
                cert_pem,
                verified.serial,
                verified.not_after,
                verified.fingerprint,
            ),
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=UNTIL_DONE,
        )
        # A retry after a lost CA reply signed twice: the other one goes.
        await start_revocation(
            request_id=arg.request_id,
            serials=activated.serials,
            reason="superfluous certificate of this enrollment",
            label="leftovers",
        )
        return RedeemResult(
            cert_pem=cert_pem,
            chain_pem=chain_pem,
            serial=verified.serial,
            not_after=verified.not_after,
            fingerprint=verified.fingerprint,
            grant_id=v.grant_id,
            subject_user_id=v.subject_user_id,
            peer_id=v.peer_id,
            csr_fingerprint=v.csr_fingerprint,
        )

    async def _sign(self, request: SignInput, budget: timedelta) -> Issued:
        """The CA step, a local activity like the others: the whole run is one workflow
        task (no activity task, no second workflow task). A worker that dies before the
        task completes has the steps run again; the ledger answers a repeated sign with
        the certificate this run already has, so the CA signs once.

        Runs that started before this change scheduled it as a regular activity and
        replay that way (``SIGN_LOCALLY``).

        Its options are ``_ca_step_options``."""
        if not workflow.patched(SIGN_LOCALLY):
            return await workflow.execute_activity_method(
                CertificateActivities.sign,
                request,
                start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=budget,
                retry_policy=CA_CALL,
            )
        return await workflow.execute_local_activity_method(
            CertificateActivities.sign, request, **_ca_step_options(budget)
        )

    def _at(self, step: str, *, timeout_kind: str = "Unavailable") -> None:
        self._step = step
        self._timeout_kind = timeout_kind

    async def _fail(
        self,
        arg: RedeemInput,
        kind: str,
        message: str,
        undo: list[Compensation],
    ) -> None:
        rule = rule_for(kind)
        self._step = f"compensating ({kind})"
        for compensation in reversed(undo):
            if not compensation.applies(rule):
                continue
            try:
                await compensation.run()
            except (ActivityError, ApplicationError) as failed:
                # The rest still runs; the ledger and reconcile finish what this left.
                workflow.logger.warning(
                    "compensation %r did not finish: %s", compensation.name, failed
                )
        await workflow.execute_local_activity_method(
            RedeemActivities.record_denial,
            DenialInput(
                arg.request_id,
                arg.token_hash,
                kind,
                http_status_for(kind),
                message,
                self._serial,
                idempotency_key=f"{workflow.info().run_id}:denial",
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )
        workflow.upsert_search_attributes([OUTCOME.value_set(f"denied:{kind}")])
        self._step = f"denied ({kind})"

    def _release(self, settle: ReleaseInput) -> Callable[[], Awaitable[object]]:
        async def release() -> object:
            return await workflow.execute_local_activity_method(
                RedeemActivities.release_claim,
                settle,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=UNTIL_DONE,
            )

        return release

    def _burn(self, settle: ReleaseInput) -> Callable[[], Awaitable[object]]:
        """Mark the token burnt so reconcile leaves it alone."""

        async def burn() -> object:
            return await workflow.execute_local_activity_method(
                RedeemActivities.burn_token,
                settle,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=UNTIL_DONE,
            )

        return burn

    def _withdraw(self, request_id: str) -> Callable[[], Awaitable[object]]:
        """Decide the revocation of this run's unpinned certificates; the CA part runs apart."""

        async def withdraw() -> object:
            withdrawn: Withdrawn = await workflow.execute_local_activity_method(
                CertificateActivities.withdraw_run,
                WithdrawInput("enrollment rolled back"),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=UNTIL_DONE,
            )
            await start_revocation(
                request_id=request_id,
                serials=withdrawn.serials,
                reason="enrollment rolled back",
                label="rollback",
            )
            return withdrawn

        return withdraw

    def _classify(self, err: ActivityError | ApplicationError) -> tuple[str, str]:
        kind, message = failure_of(
            err,
            kinds=REDEEM_FAILURE_POLICY,
            ca_step=self._timeout_kind == "CAUnavailable",
            step=self._step,
        )
        if kind == "Unavailable":
            message = f"enrollment could not complete ({self._step}); try again later"
        return kind, message
