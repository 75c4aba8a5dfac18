from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AdminDep, GatewayDep, TemporalDep
from api.paging import NEXT_CURSOR, CursorQuery, decode_cursor, encode_cursor, paged_responses
from api.schemas import RunOut
from federation.errors import InvalidInput
from workflows.reconcile import ReconcileEnrollments

router = APIRouter(prefix="/api/admin/federation/runs", tags=["runs"])


@router.get("", response_model=list[RunOut], responses=paged_responses(401, 403, 422, 503))
async def list_runs(
    gateway: GatewayDep,
    temporal: TemporalDep,
    _: AdminDep,
    response: Response,
    grant: uuid.UUID | None = None,
    peer: uuid.UUID | None = None,
    limit: int = 50,
    cursor: CursorQuery = None,
    reconcile: Annotated[bool, Query(description="include the reconcile runs")] = True,
) -> list[RunOut]:
    """Workflow runs of a grant or a peer (newest first), with links into the Temporal UI.

    One page of Temporal's visibility list; its page token is the next cursor.
    """
    if not 1 <= limit <= 500:
        raise HTTPException(422, "limit: must be between 1 and 500")
    # UUIDs and a class name only (validated above): none of the caller's text reaches it.
    clauses = [f"GrantId = '{grant}'"] if grant else []
    clauses += [f"PeerId = '{peer}'"] if peer else []
    clauses += [] if reconcile else [f"WorkflowType != '{ReconcileEnrollments.__name__}'"]
    query = " AND ".join(clauses) or None
    settings = gateway.settings
    base = f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}"
    listing = temporal.list_workflows(query, page_size=limit, next_page_token=_page_token(cursor))
    try:
        await listing.fetch_next_page()
    except RPCError as exc:
        if cursor is not None and exc.status == RPCStatusCode.INVALID_ARGUMENT:
            raise InvalidInput("cursor: not a cursor of this list") from None
        raise
    token = listing.next_page_token
    if token and len(listing.current_page or []) == limit:
        # Visibility hands out a token after a full page even when nothing follows:
        # peek one row, so the last page says there is no next one.
        peek = temporal.list_workflows(query, page_size=1, next_page_token=token)
        await peek.fetch_next_page()
        if peek.current_page:
            response.headers[NEXT_CURSOR] = encode_cursor("runs", token)
    runs: list[RunOut] = []
    for execution in listing.current_page or []:
        runs.append(
            RunOut(
                workflow_id=execution.id,
                run_id=execution.run_id,
                workflow_type=execution.workflow_type,
                status=execution.status.name if execution.status else "UNKNOWN",
                start_time=execution.start_time,
                close_time=execution.close_time,
                url=f"{base}/workflows/{execution.id}/{execution.run_id}/history",
            )
        )
    return runs


def _page_token(cursor: str | None) -> bytes | None:
    return None if cursor is None else decode_cursor("runs", cursor)
