"""RenewCertificate (gateway B): a peer, authenticated by its current certificate, asks
for a new one for a fresh key. validate → sign → verify → pin (guarded by the old
serial) → the old certificate is revoked at the CA once its overlap window ends.

The same CSR again returns the same certificate (replay). On failure whatever this run
had signed is withdrawn and revoked; the pinned certificate is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.certificates import start_revocation, verify_issued
from workflows.common import (
    CA_CALL,
    GRANT_ID,
    PEER_ID,
    SHORT_STEP,
    UNTIL_DONE,
    failure_of,
)

with workflow.unsafe.imports_passed_through():
    from activities.certificates import (
        CertificateActivities,
        Issued,
        SignInput,
        WithdrawInput,
        Withdrawn,
    )
    from activities.renew import (
        PinInput,
        Pinned,
        RenewActivities,
        RenewalValidated,
        ValidateRenewalInput,
    )
    from federation.ledger import SUPERSEDED_REASON

RENEWAL_KINDS = frozenset(
    {
        "RenewalLost",
        "RenewalRefused",
        "InvalidCSR",
        "PeerMismatch",
        "ActivationLost",
        "CARefused",
        "CAUnavailable",
        "CertificateRejected",
    }
)


@dataclass(frozen=True)
class RenewInput:
    request_id: str
    grant_id: str
    presented_serial: str
    csr_pem: str
    overlap_seconds: float = 300.0
    ca_retry_seconds: float = 60.0


@dataclass(frozen=True)
class RenewResult:
    cert_pem: str
    chain_pem: str
    serial: str
    not_after: str
    replayed: bool = False


@workflow.defn(name="RenewCertificate")
class RenewCertificate:
    def __init__(self) -> None:
        self._step = "starting"

    @workflow.query
    def progress(self) -> str:
        return self._step

    @workflow.run
    async def run(self, arg: RenewInput) -> RenewResult:
        self._step = "checking the request"
        v: RenewalValidated = await workflow.execute_local_activity_method(
            RenewActivities.validate,
            ValidateRenewalInput(arg.grant_id, arg.presented_serial, arg.csr_pem),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=SHORT_STEP,
        )
        workflow.upsert_search_attributes(
            [GRANT_ID.value_set(v.grant_id), PEER_ID.value_set(v.peer_id)]
        )
        if v.replay is not None:
            self._step = "done (the same CSR was renewed already)"
            r = v.replay
            return RenewResult(r.cert_pem, r.chain_pem, r.serial, r.not_after, replayed=True)
        ca_step = False
        try:
            self._step, ca_step = "signing the new certificate", True
            issued: Issued = await workflow.execute_activity_method(
                CertificateActivities.sign,
                SignInput(
                    arg.csr_pem,
                    v.grant_id,
                    v.subject_user_id,
                    v.peer_id,
                    v.csr_fingerprint,
                    purpose="renewal",
                ),
                start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=timedelta(seconds=arg.ca_retry_seconds),
                retry_policy=CA_CALL,
            )
            self._step, ca_step = "verifying it", False
            verified = await verify_issued(
                issued, v.grant_id, v.subject_user_id, v.public_key_der_b64
            )
            self._step = f"pinning it in place of {v.old_serial}"
            pinned: Pinned = await workflow.execute_local_activity_method(
                RenewActivities.pin,
                PinInput(
                    arg.request_id,
                    v.grant_id,
                    v.peer_id,
                    v.old_serial,
                    issued.cert_pem,
                    verified.serial,
                    verified.not_after,
                    verified.fingerprint,
                    arg.overlap_seconds,
                ),
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=UNTIL_DONE,
            )
        except (ActivityError, ApplicationError) as err:
            kind, message = failure_of(err, kinds=RENEWAL_KINDS, ca_step=ca_step, step=self._step)
            await self._withdraw(arg.request_id)
            self._step = f"refused ({kind})"
            raise ApplicationError(message, type=kind, non_retryable=True) from None
        await start_revocation(
            request_id=arg.request_id,
            serials=pinned.leftovers,
            reason="superfluous certificate of this renewal",
            label="leftovers",
        )
        self._step = f"done; {v.old_serial} stays accepted until {pinned.overlap_end}"
        await start_revocation(
            request_id=arg.request_id,
            serials=[v.old_serial],
            reason=SUPERSEDED_REASON,
            label="superseded",
            not_before=datetime.fromisoformat(pinned.overlap_end),
        )
        return RenewResult(issued.cert_pem, issued.chain_pem, verified.serial, verified.not_after)

    async def _withdraw(self, request_id: str) -> None:
        withdrawn: Withdrawn = await workflow.execute_local_activity_method(
            CertificateActivities.withdraw_run,
            WithdrawInput("renewal rolled back"),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=UNTIL_DONE,
        )
        await start_revocation(
            request_id=request_id,
            serials=withdrawn.serials,
            reason="renewal rolled back",
            label="rollback",
        )
