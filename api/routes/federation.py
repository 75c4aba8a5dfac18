"""The verbs of the federation listener (gateway B), for an authenticated peer.

The gate (api/federation_gate.py) has already authenticated the certificate,
authorized the grant and checked the scope when a handler runs; the handlers apply the
rest of the pipeline: only the subject user's rows, at most ``max_rows_per_query`` per
answer (the rest through an opaque cursor), and a row of someone else is a 404 exactly
like a missing one.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from api.federation_gate import audit_info
from api.federation_state import FederationState
from api.schemas import _Input
from api.workflow_runs import RunStart, start_or_attach
from federation import ledger
from federation.db.models import utcnow, wire_time
from federation.errors import NotFound, from_kind
from federation.inbound import Caller, Presented
from federation.pki.csr import check_csr
from federation.runs import renew_workflow_id
from workflows.renew import RenewCertificate, RenewInput

router = APIRouter(prefix="/api/federation/v1", tags=["federation"])

VERBS = ("capabilities", "list", "get", "renew")
NOT_FOUND = "not found"


async def _caller(request: Request) -> Caller:
    caller: Caller = request.scope["state"]["caller"]
    return caller


async def _state(request: Request) -> FederationState:
    state: FederationState = request.app.state.federation
    return state


CallerDep = Annotated[Caller, Depends(_caller)]
StateDep = Annotated[FederationState, Depends(_state)]


class ListBody(_Input):
    limit: int | None = Field(default=None, ge=1, le=10000, strict=True)
    cursor: str | None = Field(default=None, min_length=1, max_length=512)


@router.get("/capabilities")
async def capabilities(caller: CallerDep) -> dict[str, Any]:
    """What this certificate may do: its grant, user, scope and the verbs."""
    scope = caller.scope
    return {
        "grantId": str(caller.grant_id),
        "subjectUserId": str(caller.subject_user_id),
        "resources": list(scope.resources),
        "excludedResources": list(scope.excluded_resources),
        "maxRowsPerQuery": scope.max_rows_per_query,
        "verbs": list(VERBS),
    }


@router.post("/list/{resource}")
async def list_resource(
    resource: str,
    request: Request,
    caller: CallerDep,
    state: StateDep,
    body: Annotated[ListBody | None, Body()] = None,
) -> dict[str, Any]:
    """The subject user's rows of ``resource``, a page at a time (``nextCursor``)."""
    asked = body or ListBody()
    info = audit_info(request.scope)
    info.query = {"limit": asked.limit, "cursor": asked.cursor}
    if not state.resources.serves(resource):
        raise NotFound(f"{resource} is not served by this gateway")
    cap = caller.scope.max_rows_per_query
    async with state.sessions() as session:
        page = await state.resources.page(
            session,
            resource,
            owner=caller.subject_user_id,
            limit=min(asked.limit or cap, cap),
            cursor=asked.cursor,
        )
    info.rows_out = len(page.items)
    return {"items": [item.wire() for item in page.items], "nextCursor": page.next_cursor}


@router.get("/get/{resource}/{item_id}")
async def get_resource(
    resource: str, item_id: str, request: Request, caller: CallerDep, state: StateDep
) -> dict[str, Any]:
    """One row of the subject user's; anything else is a 404, missing or not theirs alike."""
    info = audit_info(request.scope)
    info.query = {"id": item_id}
    if not state.resources.serves(resource):
        raise NotFound(f"{resource} is not served by this gateway")
    try:
        wanted = uuid.UUID(item_id)
    except ValueError:
        raise NotFound(NOT_FOUND) from None
    async with state.sessions() as session:
        item = await state.resources.get(
            session, resource, owner=caller.subject_user_id, item_id=wanted
        )
    if item is None:
        raise NotFound(NOT_FOUND)
    info.rows_out = 1
    return item.wire()


@router.get("/certificate")
async def certificate_status(request: Request, state: StateDep) -> dict[str, Any]:
    """The ledger's word on the presented certificate itself, for its holder: whether it
    is still good, superseded by a renewal, or revoked (and why). Open to any certificate
    of B's CA, so a peer whose grant is revoked learns it."""
    presented: Presented = request.scope["state"]["presented"]
    async with state.sessions() as session:
        status = await ledger.status_of(
            session, presented.serial, presented.fingerprint, at=utcnow()
        )
    return {
        "serial": status.serial,
        "state": status.state,
        "reason": status.reason,
        "revokedAt": wire_time(status.revoked_at) if status.revoked_at else None,
        "withdrawnForCause": status.withdrawn_for_cause,
    }


class RenewBody(_Input):
    csr_pem: str = Field(min_length=1, max_length=16384)


@router.post("/renew", response_model=None)
async def renew(
    body: RenewBody, request: Request, caller: CallerDep, state: StateDep
) -> dict[str, Any] | JSONResponse:
    """A new certificate for a fresh key, for the holder of the grant's current one.

    Runs the ``RenewCertificate`` workflow: the new serial is pinned in place of the old
    one, which stays accepted for ``MOSAIC_RENEW_OVERLAP_SECONDS`` and is then revoked.
    The same CSR again returns the same certificate.
    """
    csr = check_csr(body.csr_pem)  # a garbled CSR is a 400 before any run starts
    info = audit_info(request.scope)
    info.query = {"csrSha256": csr.fingerprint}
    gateway = state.gateway
    settings = gateway.settings
    outcome = await start_or_attach(
        await gateway.temporal(),
        RenewCertificate.run,
        RenewInput(
            info.request_id,
            str(caller.grant_id),
            caller.serial,
            body.csr_pem,
            settings.mosaic_renew_overlap_seconds,
            settings.mosaic_ca_retry_seconds,
        ),
        RunStart(
            id=renew_workflow_id(str(caller.grant_id), csr.fingerprint),
            task_queue=await gateway.task_queue(),
            request_id=info.request_id,
            summary=f"Renew the certificate of grant {caller.grant_id}",
            details=(
                f"The peer holding certificate {caller.serial} asks for a new one for a fresh"
                " key: sign, verify, pin in place of the old one, and revoke the old one at"
                f" the CA after {settings.mosaic_renew_overlap_seconds} s of overlap."
            ),
        ),
        wait_seconds=settings.mosaic_enroll_wait_seconds,
    )
    if outcome.failure is not None:
        raise from_kind(outcome.failure.type or "Unavailable", outcome.failure.message)
    if outcome.result is None:
        return JSONResponse(
            {"detail": "renewal is still in progress; retry the same request"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    result = outcome.result
    return {
        "certPem": result.cert_pem,
        "certChainPem": result.chain_pem,
        "certSerial": result.serial,
        "certNotAfter": result.not_after,
        "replayed": result.replayed,
    }


@router.get("/revocations")
async def revocations(state: StateDep) -> dict[str, Any]:
    """Every unexpired certificate the ledger holds revoked, with when and why (JSON).

    Authenticated by the listener's TLS (the server certificate chains to the CA peers
    pinned), not signed on its own: with step-ca 0.19, which signs no CRL, this list and
    ``/certificate`` are what B offers; with the built-in CA ``/crl`` is the signed form.
    """
    async with state.sessions() as session:
        found = await ledger.revocations(session, at=utcnow())
    return {
        "revoked": [
            {"serial": r.serial, "revokedAt": wire_time(r.revoked_at), "reason": r.reason}
            for r in found
        ]
    }


@router.get("/crl")
async def crl(state: StateDep) -> Response:
    """The CRL (DER, ``application/pkix-crl``) of every revoked ledger serial, signed by
    the intermediate that issued them. Only the built-in CA can sign it here."""
    der = await state.crl()
    if der is None:
        return JSONResponse(
            {
                "detail": "this gateway's CA (step-ca 0.19) signs no CRL; see"
                " /api/federation/v1/revocations and /api/federation/v1/certificate"
            },
            status_code=501,
        )
    return Response(der, media_type="application/pkix-crl")
