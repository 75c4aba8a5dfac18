"""The remote peer's side: preflight (GET) and redeem (POST) of an enrollment token.

The token arrives in the path; from here on only its SHA-256 travels (workflow
input, logs show 8 chars of it). Redeem runs as the ``RedeemEnrollment``
workflow whose id derives from the token hash, so a retried POST attaches to
the same run.

Every refusal is audited (DESIGN §5.4): a token nobody knows in a row counted per
client address, verb and minute; anything else in a row of its own per request,
written here or, for a run this request started, by the run itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributePair

from api.deps import ClientAddressDep, GatewayDep, RequestIdDep, SessionDep, TemporalDep
from api.metrics import record_redeem
from api.schemas import _Input, _Wire, problem_responses
from api.state import Gateway
from api.workflow_runs import RunOutcome, RunStart, start_or_attach
from federation import enrollment
from federation.audit import count_anonymous_denial
from federation.enrollment import TokenRef
from federation.errors import FederationError, InvalidCSR, TokenNotFound
from federation.pki.csr import check_csr
from federation.policy import http_status_for
from federation.runs import redeem_workflow_id
from federation.tokens import hash_token, is_well_formed, log_id
from workflows.common import GRANT_ID, PEER_ID
from workflows.redeem import RedeemEnrollment, RedeemInput, RedeemResult

log = logging.getLogger("mosaic.api.enrollment")
router = APIRouter(prefix="/api/federation/enrollment", tags=["enrollment"])

TokenPath = Path(min_length=1, max_length=128, description="the single-use enrollment token")

PREFLIGHT = "enrollment.preflight"
REDEEM = "enrollment.redeem"
RETRY_SAME = "enrollment could not complete; retry the same request"
CERTIFICATE_GONE = "enrollment token was already used and its certificate is no longer valid"


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


@dataclass(frozen=True)
class _Caller:
    """Who asks, as the audit rows of this request name them."""

    request_id: str
    address: str


def _federation_url(gateway: Gateway) -> str | None:
    return gateway.settings.federation_url


def _problem(status: int, detail: str, *, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _audit_refusal(
    session: AsyncSession,
    caller: _Caller,
    verb: str,
    token: TokenRef | None,
    status: int,
    reason: str,
    *,
    cert_serial: str | None = None,
) -> None:
    if token is None:
        # Names nothing known: counted, so guessing cannot grow the table per request.
        await count_anonymous_denial(
            session,
            request_id=caller.request_id,
            verb=verb,
            resource="federation_grant",
            status_code=status,
            reason=reason,
            client_address=caller.address,
        )
        return
    await enrollment.record_denial(
        session,
        request_id=caller.request_id,
        verb=verb,
        status_code=status,
        reason=reason,
        grant_id=token.grant_id,
        peer_id=token.peer_id,
        cert_serial=cert_serial,
        client_address=caller.address,
    )


async def _deny(
    session: AsyncSession,
    caller: _Caller,
    token: TokenRef,
    status: int,
    detail: str,
    reason: str,
    *,
    cert_serial: str | None = None,
) -> JSONResponse:
    """A redeem refused here (not by a run this request started): its own audit row."""
    await _audit_refusal(session, caller, REDEEM, token, status, reason, cert_serial=cert_serial)
    return _problem(status, detail, retry_after=5 if status == 503 else None)


def _unknown_reason(token_hash: str | None) -> str:
    return "TokenNotFound: " + ("malformed token" if token_hash is None else "unknown token")


@router.get(
    "/{token}",
    response_model=PreflightOut,
    responses=problem_responses(404, 409, 410, 422, 429),
)
async def preflight(
    session: SessionDep,
    gateway: GatewayDep,
    request_id: RequestIdDep,
    address: ClientAddressDep,
    token: str = TokenPath,
) -> PreflightOut:
    """What the token is for (CN to use, grant, user, expiry) without consuming it."""
    token_hash = hash_token(token) if is_well_formed(token) else None
    try:
        if token_hash is None:
            raise TokenNotFound(enrollment.TOKEN_NOT_VALID, cause="malformed token")
        view = await enrollment.describe_token(session, token_hash)
    except FederationError as refused:
        known = await enrollment.lookup_token(session, token_hash) if token_hash else None
        reason = (
            f"{refused.kind}: {refused.cause or refused.message}"
            if known
            else _unknown_reason(token_hash)
        )
        caller = _Caller(request_id, address)
        await _audit_refusal(session, caller, PREFLIGHT, known, refused.status, reason)
        raise
    return PreflightOut(
        peer_common_name=view.peer_common_name,
        grant_id=str(view.grant_id),
        subject_user_id=str(view.subject_user_id),
        expires_at=view.expires_at,
        ca_fingerprint=gateway.ca_root()[1],
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
    address: ClientAddressDep,
    token: str = TokenPath,
) -> RedeemOut | JSONResponse:
    """Redeem the token with a CSR: 200 with the certificate, or a one-line refusal."""
    started = time.perf_counter()
    caller = _Caller(request_id, address)
    answer = await _redeem(body, session, gateway, temporal, caller, token)
    status = answer.status_code if isinstance(answer, JSONResponse) else 200
    record_redeem(status, time.perf_counter() - started)
    return answer


async def _redeem(
    body: RedeemBody,
    session: AsyncSession,
    gateway: Gateway,
    temporal: Client,
    caller: _Caller,
    token: str,
) -> RedeemOut | JSONResponse:
    token_hash = hash_token(token) if is_well_formed(token) else None
    known = await enrollment.lookup_token(session, token_hash) if token_hash else None
    if token_hash is None or known is None:
        # Refused here, so a guessed token does not cost a workflow run.
        await _audit_refusal(session, caller, REDEEM, None, 404, _unknown_reason(token_hash))
        return _problem(404, enrollment.TOKEN_NOT_VALID)
    try:
        # Pure, against the token's peer CN: a bad CSR gets its own 400 and never starts,
        # nor is answered by, a run (another client's run must not answer for it).
        csr = check_csr(body.csr_pem, expected_common_name=known.peer_common_name)
    except InvalidCSR as refused:
        return await _deny(
            session, caller, known, 400, refused.message, f"{refused.kind}: {refused.message}"
        )
    # Hand the connection back before waiting on the workflow: a burst of waiting
    # requests must not hold the pool, nor fail on a connection dropped meanwhile.
    await session.rollback()
    settings = gateway.settings
    outcome = await start_or_attach(
        temporal,
        RedeemEnrollment.run,
        RedeemInput(
            caller.request_id,
            token_hash,
            body.csr_pem,
            settings.mosaic_ca_retry_seconds,
            csr_fingerprint=csr.fingerprint,
        ),
        RunStart(
            id=redeem_workflow_id(token_hash),
            task_queue=await gateway.task_queue(),
            request_id=caller.request_id,
            summary=f"Redeem enrollment token {log_id(token_hash)}",
            details=(
                "A remote peer redeems a single-use enrollment token with a CSR: validate,"
                " claim the token, have the CA sign, verify the grant and user OIDs, activate"
                " the grant. Only the token's SHA-256 is here; search GrantId / PeerId."
            ),
            # Set at the start, so the run is found by its grant or peer while it runs.
            search_attributes=(
                SearchAttributePair(GRANT_ID, str(known.grant_id)),
                SearchAttributePair(PEER_ID, str(known.peer_id)),
            ),
        ),
        wait_seconds=settings.mosaic_enroll_wait_seconds,
        eager=gateway.eager_start,
    )
    if outcome.still_running:
        log.info("redeem %s still running after the wait budget", log_id(token_hash))
        return _problem(
            503, "enrollment is still in progress; retry the same request", retry_after=5
        )
    if outcome.result is None:
        return await _refused_by_run(session, caller, known, outcome)
    if outcome.result.csr_fingerprint != csr.fingerprint:
        # Another CSR won this token: 409 for a race lost to a running redeem, 410 once done.
        status = 410 if outcome.closed_before else 409
        detail = (
            enrollment.TOKEN_GONE
            if outcome.closed_before
            else "enrollment token was already claimed by a different CSR"
        )
        return await _deny(
            session, caller, known, status, detail, "TokenUsed: claimed by a different CSR"
        )
    return await _certificate(session, gateway, caller, known, outcome.result)


async def _refused_by_run(
    session: AsyncSession, caller: _Caller, token: TokenRef, outcome: RunOutcome[RedeemResult]
) -> JSONResponse:
    failure = outcome.failure
    kind = (failure.type if failure else None) or "Unavailable"
    message = failure.message if failure else RETRY_SAME
    status = http_status_for(kind)
    if outcome.started:
        # The run wrote this request's audit row itself.
        return _problem(status, message, retry_after=5 if status == 503 else None)
    reason = f"{kind}: {message} (answered by a run another request started)"
    if kind == "InvalidCSR":
        # That run was refused for another request's CSR, and ours passed the same check:
        # not our answer. The failed run frees the id, so a retry starts a run of our own.
        return await _deny(session, caller, token, 503, RETRY_SAME, reason)
    return await _deny(session, caller, token, status, message, reason)


async def _certificate(
    session: AsyncSession,
    gateway: Gateway,
    caller: _Caller,
    token: TokenRef,
    result: RedeemResult,
) -> RedeemOut | JSONResponse:
    """A run's certificate for the CSR it was issued to, only while the ledger still counts
    it as the grant's usable one: a replay after a revocation, or a revocation landing
    between the activation and this answer, gets 410 rather than a dead certificate."""
    gone = await enrollment.why_certificate_unusable(session, token.grant_id, result.serial)
    if gone is not None:
        return await _deny(
            session,
            caller,
            token,
            410,
            f"{CERTIFICATE_GONE} ({gone})",
            f"TokenUsed: certificate {result.serial} is no longer usable ({gone})",
            cert_serial=result.serial,
        )
    return RedeemOut(
        cert_pem=result.cert_pem,
        cert_chain_pem=result.chain_pem,
        grant_id=result.grant_id,
        subject_user_id=result.subject_user_id,
        cert_serial=result.serial,
        cert_not_after=result.not_after,
        ca_cert_pem=gateway.ca_root()[0],
        federation_url=_federation_url(gateway),
    )
