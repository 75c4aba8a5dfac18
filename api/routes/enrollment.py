"""The remote peer's side: preflight (GET) and redeem (POST) of an enrollment token.

The token arrives in the path; from here on only its SHA-256 travels (workflow
input, logs show 8 chars of it). Redeem runs as the ``RedeemEnrollment``
workflow whose id derives from the token hash, so a retried POST attaches to
the same run.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from api.deps import GatewayDep, RequestIdDep, SessionDep, TemporalDep
from api.metrics import record_redeem
from api.schemas import _Input, _Wire, problem_responses
from api.state import Gateway
from federation import enrollment
from federation.errors import FederationError, TokenNotFound
from federation.pki.fingerprints import fingerprint_sha256
from federation.policy import http_status_for
from federation.remote_trust import ca_fingerprint
from federation.runs import redeem_workflow_id
from federation.tokens import hash_token, is_well_formed, log_id
from workflows.redeem import RedeemEnrollment, RedeemInput, RedeemResult

log = logging.getLogger("mosaic.api.enrollment")
router = APIRouter(prefix="/api/federation/enrollment", tags=["enrollment"])

TokenPath = Path(min_length=1, max_length=128, description="the single-use enrollment token")


class RedeemBody(_Input):
    csr_pem: str = Field(min_length=1, max_length=65536)


class RedeemOut(_Wire):
    cert_pem: str
    cert_chain_pem: str
    grant_id: str
    subject_user_id: str
    cert_serial: str
    cert_not_after: str
    # Our CA root (the requester pins it: it must hash to the preflight's caFingerprint)
    # and where our federation listener is, if it is published.
    ca_cert_pem: str
    federation_url: str | None


class PreflightOut(_Wire):
    peer_common_name: str
    grant_id: str
    subject_user_id: str
    expires_at: datetime
    # SHA-256 of our CA root's DER, announced before the requester sends a CSR.
    ca_fingerprint: str
    federation_url: str | None


def _our_ca(gateway: Gateway) -> tuple[str, str]:
    """(PEM, SHA-256 fingerprint) of the root our CA issues peer certificates under."""
    root = gateway.ca().root_certificates()[0]
    return root.public_bytes(serialization.Encoding.PEM).decode("ascii"), ca_fingerprint(root)


def _federation_url(gateway: Gateway) -> str | None:
    return gateway.settings.mosaic_federation_public_url or None


def _problem(status: int, detail: str, *, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _csr_fingerprint(pem: str) -> str | None:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        return None
    return fingerprint_sha256(csr.public_bytes(serialization.Encoding.DER))


@router.get(
    "/{token}",
    response_model=PreflightOut,
    responses=problem_responses(404, 409, 410, 422, 429),
)
async def preflight(
    session: SessionDep, gateway: GatewayDep, request_id: RequestIdDep, token: str = TokenPath
) -> PreflightOut:
    """What the token is for (CN to use, grant, user, expiry) without consuming it."""
    token_hash = hash_token(token) if is_well_formed(token) else None
    try:
        if token_hash is None:
            raise TokenNotFound(enrollment.TOKEN_NOT_VALID, cause="malformed token")
        view = await enrollment.describe_token(session, token_hash)
    except FederationError as refused:
        grant_id, peer_id = (
            await enrollment.lookup_token_ids(session, token_hash) if token_hash else (None, None)
        )
        await enrollment.record_denial(
            session,
            request_id=request_id,
            verb="enrollment.preflight",
            status_code=refused.status,
            reason=f"{refused.kind}: {refused.cause or refused.message}",
            grant_id=grant_id,
            peer_id=peer_id,
        )
        raise
    return PreflightOut(
        peer_common_name=view.peer_common_name,
        grant_id=str(view.grant_id),
        subject_user_id=str(view.subject_user_id),
        expires_at=view.expires_at,
        ca_fingerprint=_our_ca(gateway)[1],
        federation_url=_federation_url(gateway),
    )


@router.post(
    "/{token}",
    response_model=RedeemOut,
    responses=problem_responses(400, 404, 409, 410, 413, 422, 429, 502, 503),
)
async def redeem(
    body: RedeemBody,
    session: SessionDep,
    gateway: GatewayDep,
    temporal: TemporalDep,
    request_id: RequestIdDep,
    token: str = TokenPath,
) -> RedeemOut | JSONResponse:
    """Redeem the token with a CSR: 200 with the certificate, or a one-line refusal."""
    started = time.perf_counter()
    answer = await _redeem(body, session, gateway, temporal, request_id, token)
    status = answer.status_code if isinstance(answer, JSONResponse) else 200
    record_redeem(status, time.perf_counter() - started)
    return answer


async def _redeem(
    body: RedeemBody,
    session: AsyncSession,
    gateway: Gateway,
    temporal: Client,
    request_id: str,
    token: str,
) -> RedeemOut | JSONResponse:
    if not is_well_formed(token):
        await enrollment.record_denial(
            session,
            request_id=request_id,
            verb="enrollment.redeem",
            status_code=404,
            reason="TokenNotFound: malformed token",
        )
        return _problem(404, enrollment.TOKEN_NOT_VALID)
    token_hash = hash_token(token)
    known = await enrollment.lookup_token_ids(session, token_hash) != (None, None)
    # Hand the connection back before waiting on the workflow: a burst of waiting
    # requests must not hold the pool, nor fail on a connection dropped meanwhile.
    await session.rollback()
    if not known:
        # Unknown: refused here, so a guessed token does not cost a workflow run.
        await enrollment.record_denial(
            session,
            request_id=request_id,
            verb="enrollment.redeem",
            status_code=404,
            reason="TokenNotFound: unknown token",
        )
        return _problem(404, enrollment.TOKEN_NOT_VALID)
    settings = gateway.settings
    workflow_id = redeem_workflow_id(token_hash)
    handle: WorkflowHandle[RedeemEnrollment, RedeemResult]
    already_redeemed = False
    try:
        handle = await temporal.start_workflow(
            RedeemEnrollment.run,
            RedeemInput(request_id, token_hash, body.csr_pem, settings.mosaic_ca_retry_seconds),
            id=workflow_id,
            task_queue=settings.mosaic_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            memo={"requestId": request_id},
            static_summary=f"Redeem enrollment token {log_id(token_hash)}",
            static_details=(
                "A remote peer redeems a single-use enrollment token with a CSR: validate,"
                " claim the token, have the CA sign, verify the grant and user OIDs, activate"
                " the grant. Only the token's SHA-256 is here; search GrantId / PeerId."
            ),
        )
    except WorkflowAlreadyStartedError:
        # A completed run exists: the token was redeemed. Same CSR → same answer.
        handle = temporal.get_workflow_handle_for(RedeemEnrollment.run, workflow_id)
        already_redeemed = True

    try:
        result = await asyncio.wait_for(
            handle.result(), timeout=settings.mosaic_enroll_wait_seconds
        )
    except TimeoutError:
        log.info("redeem %s still running after the wait budget", log_id(token_hash))
        return _problem(
            503, "enrollment is still in progress; retry the same request", retry_after=5
        )
    except WorkflowFailureError as failure:
        cause = failure.cause
        if isinstance(cause, ApplicationError) and cause.type:
            status = http_status_for(cause.type)
            retry_after = 5 if status == 503 else None
            return _problem(status, cause.message, retry_after=retry_after)
        return _problem(503, "enrollment could not complete; try again later", retry_after=5)

    if result.csr_fingerprint != _csr_fingerprint(body.csr_pem):
        # Another CSR won this token: 409 for a race lost to a running redeem, 410 once done.
        status = 410 if already_redeemed else 409
        await enrollment.record_denial(
            session,
            request_id=request_id,
            verb="enrollment.redeem",
            status_code=status,
            reason="TokenUsed: claimed by a different CSR",
            grant_id=uuid.UUID(result.grant_id),
            peer_id=uuid.UUID(result.peer_id),
        )
        if already_redeemed:
            return _problem(410, enrollment.TOKEN_GONE)
        return _problem(409, "enrollment token was already claimed by a different CSR")
    return RedeemOut(
        cert_pem=result.cert_pem,
        cert_chain_pem=result.chain_pem,
        grant_id=result.grant_id,
        subject_user_id=result.subject_user_id,
        cert_serial=result.serial,
        cert_not_after=result.not_after,
        ca_cert_pem=_our_ca(gateway)[0],
        federation_url=_federation_url(gateway),
    )
