"""RevokeCertificates: carry revocations the ledger decided to the CA, durably.

Started by a failed redeem (the certificates it had signed), and by a renewal (the
superseded certificate, once its overlap window ends). It runs on its own, so a slow or
absent CA never holds up the answer to the peer; the reconcile sweep finishes whatever
a run like this could not.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, TypedSearchAttributes
from temporalio.workflow import ParentClosePolicy

from workflows.common import GRANT_ID, PEER_ID, VERIFY_STEP

with workflow.unsafe.imports_passed_through():
    from activities.certificates import (
        CARevocation,
        CARevoked,
        CertificateActivities,
        Issued,
        Verified,
        VerifyInput,
    )

# The CA may be down for a while: keep trying, then leave it to the reconcile sweep.
CA_REVOKE = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
CA_REVOKE_DEADLINE = timedelta(hours=1)


async def verify_issued(
    issued: Issued, grant_id: str, subject_user_id: str, public_key_der_b64: str
) -> Verified:
    """The check of what the CA signed (both OIDs, the CSR's key, our chain), as its own
    local activity: the five-step redeem's and the renewal's verify step."""
    return await workflow.execute_local_activity_method(
        CertificateActivities.verify,
        VerifyInput(
            issued.cert_pem, issued.chain_pem, grant_id, subject_user_id, public_key_der_b64
        ),
        start_to_close_timeout=timedelta(seconds=5),
        retry_policy=VERIFY_STEP,
    )


@dataclass(frozen=True)
class RevokeCertificatesInput:
    request_id: str
    serials: list[str]
    reason: str
    # ISO 8601: revoke no earlier than this (a superseded certificate's overlap end).
    not_before: str | None = None


@dataclass(frozen=True)
class RevokeCertificatesResult:
    revoked: list[str] = field(default_factory=list)
    # Refused by the CA or still unreachable at the deadline: reconcile retries them.
    left: list[str] = field(default_factory=list)


@workflow.defn(name="RevokeCertificates")
class RevokeCertificates:
    def __init__(self) -> None:
        self._step = "starting"

    @workflow.query
    def progress(self) -> str:
        return self._step

    @workflow.run
    async def run(self, arg: RevokeCertificatesInput) -> RevokeCertificatesResult:
        if arg.not_before:
            wait = datetime.fromisoformat(arg.not_before) - workflow.now()
            if wait > timedelta(0):
                self._step = f"waiting until {arg.not_before} (overlap window)"
                await workflow.sleep(wait)
        self._step = f"revoking {len(arg.serials)} certificate(s) at the CA"
        revoked, left = await revoke_all(arg.serials, arg.reason)
        self._step = "done" if not left else f"left to reconcile: {', '.join(left)}"
        return RevokeCertificatesResult(revoked, left)


async def revoke_all(serials: list[str], reason: str) -> tuple[list[str], list[str]]:
    """From a workflow: revoke decided serials at the CA side by side.

    Returns (revoked, left): left are those the CA refused or that were still
    unreachable at the deadline; the ledger keeps them decided for reconcile.
    """
    outcomes = await asyncio.gather(
        *(
            workflow.execute_activity_method(
                CertificateActivities.revoke_at_ca,
                CARevocation(serial, reason),
                start_to_close_timeout=timedelta(seconds=15),
                schedule_to_close_timeout=CA_REVOKE_DEADLINE,
                retry_policy=CA_REVOKE,
            )
            for serial in serials
        ),
        return_exceptions=True,
    )
    revoked = [o.serial for o in outcomes if isinstance(o, CARevoked) and o.confirmed]
    return revoked, [serial for serial in serials if serial not in revoked]


async def start_revocation(
    *,
    request_id: str,
    serials: list[str],
    reason: str,
    label: str,
    not_before: datetime | None = None,
) -> None:
    """From a workflow: hand decided serials to a RevokeCertificates run of their own,
    which outlives the caller (the caller's answer does not wait for the CA). ``label``
    tells a run's several hand-overs apart."""
    if not serials:
        return
    info = workflow.info()
    await workflow.start_child_workflow(
        RevokeCertificates.run,
        RevokeCertificatesInput(
            request_id, serials, reason, not_before.isoformat() if not_before else None
        ),
        id=f"revoke-certs-{info.workflow_id}-{info.run_id[:8]}-{label}",
        parent_close_policy=ParentClosePolicy.ABANDON,
        # The caller's GrantId/PeerId, so `runs --grant` and the UI find these runs too.
        search_attributes=TypedSearchAttributes(
            [
                pair
                for pair in info.typed_search_attributes.search_attributes
                if pair.key.name in (GRANT_ID.name, PEER_ID.name)
            ]
        ),
        static_summary=f"Revoke {len(serials)} certificate(s): {reason}",
    )
