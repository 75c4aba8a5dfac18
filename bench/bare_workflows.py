"""The bare-Temporal baseline workflow: RedeemEnrollment's shape, activities that do nothing.

The shape is the one issue 13 set as the baseline (RedeemEnrollment's when it was filed;
the redeem runs three local activities since ``redeem-in-three-steps``, see
``three_local``). Same activity count and kinds as that shape (validate, claim: local;
issue: regular; verify, activate: local), the same timeouts and retry policies (copied
here from ``workflows/redeem.py`` and ``workflows/common.py`` so that a rename there
cannot break the baseline; on the happy path no retry happens), payloads of about the
same size. The module is built like ``workflows/redeem.py`` (one workflow class, two
dataclasses, a few module constants, activities imported passed through), so the
sandbox's per-run re-import costs about the same. Input flags select the variants:

- ``upserts``: the search-attribute upserts of that shape (GrantId and PeerId, outcome);
- ``issue_local`` (experiment): the issue step as a local activity too;
- ``three_local``: the redeem's shape since ``redeem-in-three-steps``, three local
  activities (validate, issue, activate; no claim, no verify step), for comparison
  only: the issue's baseline is the shape above.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

# The real workflows' policies and search attributes: the baseline keeps their shape.
from workflows.common import GRANT_ID, OUTCOME, PEER_ID, SHORT_STEP, UNTIL_DONE

with workflow.unsafe.imports_passed_through():
    # Passed through, like the activities: re-importing per run would tax the baseline.
    from bench.bare_activities import (
        BareIssued,
        BareValidated,
        activate,
        claim_token,
        issue_certificate,
        validate,
        verify_certificate,
    )
    from workflows.common import CA_CALL


@dataclass(frozen=True)
class BareInput:
    request_id: str
    token_hash: str
    csr_pem: str
    ca_retry_seconds: float = 60.0
    upserts: bool = False
    issue_local: bool = False
    three_local: bool = False


@dataclass(frozen=True)
class BareResult:  # RedeemResult's fields
    cert_pem: str
    chain_pem: str
    serial: str
    not_after: str
    fingerprint: str
    grant_id: str
    subject_user_id: str
    peer_id: str
    csr_fingerprint: str


@workflow.defn(name="BareRedeem")
class BareRedeem:
    @workflow.run
    async def run(self, arg: BareInput) -> BareResult:
        v: BareValidated = await workflow.execute_local_activity(
            validate,
            arg.csr_pem,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=SHORT_STEP,
        )
        if arg.upserts:
            workflow.upsert_search_attributes(
                [GRANT_ID.value_set(v.grant_id), PEER_ID.value_set(v.peer_id)]
            )
        if arg.three_local:
            return await self._three_local(arg, v)
        await workflow.execute_local_activity(
            claim_token,
            arg.token_hash,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=SHORT_STEP,
        )
        issue = workflow.execute_local_activity if arg.issue_local else workflow.execute_activity
        issued: BareIssued = await issue(
            issue_certificate,
            arg.csr_pem,
            start_to_close_timeout=timedelta(seconds=10),
            schedule_to_close_timeout=timedelta(seconds=arg.ca_retry_seconds),
            retry_policy=CA_CALL,
        )
        serial: str = await workflow.execute_local_activity(
            verify_certificate,
            issued.cert_pem,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=SHORT_STEP,
        )
        await workflow.execute_local_activity(
            activate, serial, start_to_close_timeout=timedelta(seconds=15), retry_policy=UNTIL_DONE
        )
        if arg.upserts:
            workflow.upsert_search_attributes([OUTCOME.value_set("allowed")])
        return _result(issued, serial, v)

    async def _three_local(self, arg: BareInput, v: BareValidated) -> BareResult:
        issued: BareIssued = await workflow.execute_local_activity(
            issue_certificate,
            arg.csr_pem,
            start_to_close_timeout=timedelta(seconds=10),
            schedule_to_close_timeout=timedelta(seconds=arg.ca_retry_seconds),
            retry_policy=CA_CALL,
        )
        serial = "01"
        await workflow.execute_local_activity(
            activate, serial, start_to_close_timeout=timedelta(seconds=15), retry_policy=UNTIL_DONE
        )
        if arg.upserts:
            workflow.upsert_search_attributes([OUTCOME.value_set("allowed")])
        return _result(issued, serial, v)


def _result(issued: BareIssued, serial: str, v: BareValidated) -> BareResult:
    return BareResult(
        issued.cert_pem,
        issued.chain_pem,
        serial,
        "2030-01-01T00:00:00+00:00",
        v.csr_fingerprint,
        v.grant_id,
        v.subject_user_id,
        v.peer_id,
        v.csr_fingerprint,
    )
