from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from temporalio.common import WorkflowIDReusePolicy

from api.deps import AdminDep, GatewayDep, RequestIdDep, SessionDep, TemporalDep
from api.paging import CreatedPage, CursorQuery, LimitQuery, paged_responses
from api.schemas import (
    CertificateOut,
    GrantCreate,
    GrantOut,
    GrantRevoke,
    GrantStatus,
    TokenCreate,
    TokenOut,
    problem_responses,
)
from api.workflow_runs import RunStart, start_or_attach
from federation import grants, ledger, revocation
from federation.errors import Conflict, from_kind
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


@router.get("", response_model=list[GrantOut], responses=paged_responses(401, 403, 422))
async def list_grants(
    session: SessionDep,
    _: AdminDep,
    response: Response,
    peer: Annotated[uuid.UUID | None, Query(description="only grants of this peer")] = None,
    status: Annotated[GrantStatus | None, Query()] = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> list[GrantOut]:
    """Grants, oldest first; with ``limit``, one page and ``X-Next-Cursor`` if more follow."""
    page = CreatedPage("grants", limit, cursor)
    rows = await grants.list_grants(
        session, peer_id=peer, status=status, after=page.after, limit=page.fetch
    )
    return [GrantOut.of(g) for g in page.trim(rows, response)]


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

    The grant is revoked, every certificate the CA signed for it is revoked at the CA
    and the peer holding one is marked revoked; the reason is audited. 409 if it is
    already revoked and nothing is left to do; a revocation the CA did not finish
    (refused, unreachable) is driven again by the same request.
    """
    grant = await grants.get_grant(session, grant_id)
    if grant.status == "revoked" and not await revocation.grant_revocation_unfinished(
        session, grant_id
    ):
        raise Conflict("grant is already revoked")
    await session.rollback()  # no connection held while the workflow runs
    settings = gateway.settings
    outcome = await start_or_attach(
        temporal,
        RevokeGrant.run,
        RevokeGrantInput(request_id, str(grant_id), body.reason if body else None, actor),
        RunStart(
            id=revoke_workflow_id(str(grant_id)),
            task_queue=await gateway.task_queue(),
            request_id=request_id,
            summary=f"Revoke grant {grant_id}",
            details=(
                "Marks the grant revoked (final), decides the revocation of every certificate"
                " the CA signed for it, marks the peer holding one revoked, and revokes them"
                f" at the CA. Requested by {actor}; the reason is in the audit log."
            ),
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        ),
        # The grant is revoked first; past the wait the CA part goes on in the run.
        wait_seconds=settings.mosaic_enroll_wait_seconds,
        eager=gateway.eager_start,
    )
    if outcome.failure is not None:
        raise from_kind(outcome.failure.type or "Unavailable", outcome.failure.message)
    await session.refresh(grant)
    return GrantOut.of(grant)


@router.get(
    "/{grant_id}/certificates",
    response_model=list[CertificateOut],
    responses=problem_responses(401, 403, 404, 422),
)
async def grant_certificates(
    grant_id: uuid.UUID, session: SessionDep, _: AdminDep
) -> list[CertificateOut]:
    """Every certificate the CA was asked to sign for this grant (the ledger), newest first."""
    await grants.get_grant(session, grant_id)
    return [CertificateOut.of(c) for c in await ledger.certificates_of_grant(session, grant_id)]


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
        token=issued.token,
        expires_at=issued.expires_at,
        enrollment_url=issued.enrollment_url,
        withdrawn_tokens=issued.withdrawn_tokens,
    )
