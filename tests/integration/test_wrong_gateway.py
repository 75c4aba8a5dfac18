"""A run that names another gateway (or none) reaches this gateway's worker: every
activity refuses it (``WrongGateway``, not retried) and nothing changes in the database."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from federation.runs import redeem_workflow_id
from federation.settings import Settings
from federation.tokens import hash_token
from tests.support.dbsnap import fetch_all
from tests.support.factories import make_grant, make_token
from tests.support.faults import db_id, redeem_state
from tests.support.pki import make_csr
from workflows.identity import MEMO_KEY, WRONG_GATEWAY, speaking_for
from workflows.reconcile import ReconcileEnrollments, ReconcileInput
from workflows.redeem import RedeemEnrollment, RedeemInput

pytestmark = pytest.mark.usefixtures("worker")
OTHER_GATEWAY = uuid.UUID("00000000-0000-4000-8000-00000000000b")


def _starter(temporal_env: WorkflowEnvironment, claims: str) -> Client:
    """A client that starts runs as another gateway, or (``none``) as no gateway at all."""
    if claims == "none":
        return temporal_env.client
    return speaking_for(temporal_env.client, OTHER_GATEWAY)


def _failure_types(error: BaseException | None) -> list[str]:
    types = []
    while error is not None:
        if isinstance(error, ApplicationError) and error.type:
            types.append(error.type)
        error = error.__cause__ if error.__cause__ is not None else getattr(error, "cause", None)
    return types


async def _failed_activities(handle: WorkflowHandle[Any, Any]) -> tuple[list[str], int]:
    """(failure types of the activity tasks that failed, how many completed)."""
    failed, completed = [], 0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failure = event.activity_task_failed_event_attributes.failure
            failed.append(failure.application_failure_info.type)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed += 1
    return failed, completed


@pytest.mark.parametrize("claims", ["another-gateway", "none"])
async def test_reconcile_run_of_another_gateway_is_refused_and_expires_nothing(
    claims: str,
    client: httpx.AsyncClient,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    db_engine: AsyncEngine,
) -> None:
    # A pending grant that this run would expire at once (max age ~0), were it obeyed.
    grant = await make_grant(client)
    handle = await _starter(temporal_env, claims).start_workflow(
        ReconcileEnrollments.run,
        ReconcileInput(max_pending_age_seconds=0.001, grace_seconds=0),
        id=f"wrong-gateway-reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=settings.mosaic_task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    assert WRONG_GATEWAY in _failure_types(failed.value)
    refused, completed = await _failed_activities(handle)
    # Regular activities, each refused once: WrongGateway is not retried.
    assert refused and set(refused) == {WRONG_GATEWAY} and completed == 0, (refused, completed)
    if claims != "none":
        described = await handle.describe()
        assert await described.memo_value(MEMO_KEY) == str(OTHER_GATEWAY)
    gid = db_id(db_engine, grant["id"])
    [row] = await fetch_all(db_engine, "SELECT status FROM federation_grants WHERE id = :g", g=gid)
    assert row["status"] == "pending"
    audit = await fetch_all(
        db_engine, "SELECT verb FROM federation_audit_log WHERE grant_id = :g", g=gid
    )
    assert [a["verb"] for a in audit] == ["grant.create"], audit


async def test_redeem_run_of_another_gateway_is_refused_and_claims_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    db_engine: AsyncEngine,
) -> None:
    """The redeem's steps are local activities: refused all the same, the token and grant
    untouched and no audit row (not even a denial) written for another gateway's run."""
    grant = await make_grant(client)
    token_hash = hash_token((await make_token(client, grant["id"]))["token"])
    csr_pem, _ = make_csr(grant["_peer"]["commonName"])
    handle = await _starter(temporal_env, "another-gateway").start_workflow(
        RedeemEnrollment.run,
        RedeemInput("wrong-gateway", token_hash, csr_pem),
        id=redeem_workflow_id(token_hash),
        task_queue=settings.mosaic_task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    assert WRONG_GATEWAY in _failure_types(failed.value)
    state = await redeem_state(db_engine, grant["id"], token_hash)
    assert state.token["used_at"] is None and state.token["cert_serial"] is None, state
    assert state.grant["status"] == "pending" and state.grant["cert_serial"] is None, state
    assert state.audit == [], state
