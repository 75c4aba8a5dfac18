from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException

from api.deps import AdminDep, GatewayDep, TemporalDep
from api.schemas import RunOut, problem_responses

router = APIRouter(prefix="/api/admin/federation/runs", tags=["runs"])


@router.get("", response_model=list[RunOut], responses=problem_responses(401, 403, 422, 503))
async def list_runs(
    gateway: GatewayDep,
    temporal: TemporalDep,
    _: AdminDep,
    grant: uuid.UUID | None = None,
    peer: uuid.UUID | None = None,
    limit: int = 50,
) -> list[RunOut]:
    """Workflow runs of a grant or a peer (newest first), with links into the Temporal UI."""
    if not 1 <= limit <= 500:
        raise HTTPException(422, "limit: must be between 1 and 500")
    # UUIDs only (validated above): nothing of the caller's text reaches the query.
    clauses = [f"GrantId = '{grant}'"] if grant else []
    clauses += [f"PeerId = '{peer}'"] if peer else []
    query = " AND ".join(clauses) or None
    settings = gateway.settings
    base = f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}"
    runs: list[RunOut] = []
    async for execution in temporal.list_workflows(query, limit=limit):
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
