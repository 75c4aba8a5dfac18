from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from api.deps import AdminDep, GatewayDep, RequestIdDep, SessionDep, TemporalDep
from api.schemas import (
    GrantCreate,
    GrantOut,
    GrantRevoke,
    GrantStatus,
    TokenCreate,
    TokenOut,
    problem_responses,
)
from federation import grants
from federation.errors import Conflict
from federation.runs import revoke_workflow_id
from workflows.revoke import RevokeGrant, RevokeGrantInput

router = APIRouter(prefix="/api/admin/federation/grants", tags=["grants"])


@router.post(
    "",
    status_code=201,
    response_model=GrantOut,
    responses=problem_responses(400, 401, 403, 404, 409, 413, 422),
)
async def create_grant(
    body: GrantCreate, session: SessionDep, actor: AdminDep, request_id: RequestIdDep
) -> GrantOut:
    grant = await grants.create_grant(
        session,
        subject_user_id=body.subject_user_id,
        peer_id=body.peer_id,
        scope=body.scope,
        actor=actor,
        request_id=request_id,
    )
    return GrantOut.of(grant)


@router.get("", response_model=list[GrantOut], responses=problem_responses(401, 403, 422))
async def list_grants(
    session: SessionDep,
    _: AdminDep,
    peer: Annotated[uuid.UUID | None, Query(description="only grants of this peer")] = None,
    status: Annotated[GrantStatus | None, Query()] = None,
) -> list[GrantOut]:
    return [GrantOut.of(g) for g in await grants.list_grants(session, peer_id=peer, status=status)]


@router.get("/{grant_id}", response_model=GrantOut, responses=problem_responses(401, 403, 404, 422))
async def get_grant(grant_id: uuid.UUID, session: SessionDep, _: AdminDep) -> GrantOut:
    return GrantOut.of(await grants.get_grant(session, grant_id))


@router.patch(
    "/{grant_id}/revoke",
    response_model=GrantOut,
    responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def revoke_grant(
    grant_id: uuid.UUID,
    session: SessionDep,
    gateway: GatewayDep,
    temporal: TemporalDep,
    actor: AdminDep,
    request_id: RequestIdDep,
    body: Annotated[GrantRevoke | None, Body()] = None,
) -> GrantOut:
    """Revoke a grant for good, through the ``RevokeGrant`` workflow.

    The grant is revoked, its certificate revoked at the CA, its peer marked
    revoked; the reason is audited. 409 if it is already revoked.
    """
    grant = await grants.get_grant(session, grant_id)
    if grant.status == "revoked":
        raise Conflict("grant is already revoked")
    await session.rollback()  # no connection held while the workflow runs
    settings = gateway.settings
    try:
        handle = await temporal.start_workflow(
            RevokeGrant.run,
            RevokeGrantInput(request_id, str(grant_id), body.reason if body else None, actor),
            id=revoke_workflow_id(str(grant_id)),
            task_queue=settings.mosaic_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            memo={"requestId": request_id},
            static_summary=f"Revoke grant {grant_id}",
            static_details=(
                "Marks the grant revoked (final), revokes its client certificate at the CA"
                " and marks the peer holding that certificate revoked. Requested by"
                f" {actor}; the reason is in the audit log."
            ),
        )
    except WorkflowAlreadyStartedError:
        raise Conflict("grant is already revoked") from None
    try:
        await asyncio.wait_for(handle.result(), timeout=settings.mosaic_enroll_wait_seconds)
    except TimeoutError:
        # The grant row is revoked first; the CA call keeps retrying in the workflow.
        pass
    except WorkflowFailureError as failure:
        cause = failure.cause
        if isinstance(cause, ApplicationError) and cause.type == "Conflict":
            raise Conflict(cause.message) from None
        raise
    await session.refresh(grant)
    return GrantOut.of(grant)


@router.post(
    "/{grant_id}/tokens",
    status_code=201,
    response_model=TokenOut,
    responses=problem_responses(400, 401, 403, 404, 409, 413, 422),
)
async def create_token(
    grant_id: uuid.UUID,
    session: SessionDep,
    gateway: GatewayDep,
    actor: AdminDep,
    request_id: RequestIdDep,
    body: Annotated[TokenCreate | None, Body()] = None,
) -> TokenOut:
    """Mint a single-use enrollment token; it is shown once and stored only as a hash."""
    issued = await grants.create_token(
        session,
        grant_id,
        ttl_seconds=(body or TokenCreate()).ttl_seconds,
        public_url=gateway.settings.mosaic_public_url,
        actor=actor,
        request_id=request_id,
    )
    return TokenOut(
        token=issued.token, expires_at=issued.expires_at, enrollment_url=issued.enrollment_url
    )
