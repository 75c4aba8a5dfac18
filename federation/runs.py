"""Names of workflow runs and schedules: readable in the Temporal UI, derived from
ids so a retried request finds the same run. No secret goes into a name."""

from __future__ import annotations

RECONCILE_SCHEDULE_ID = "reconcile-enrollments"
DEFAULT_TASK_QUEUE = "mosaic-federation"


def redeem_workflow_id(token_hash: str) -> str:
    """16 hex chars of the token's SHA-256: stable for retries, useless to an attacker."""
    return f"enroll-{token_hash[:16]}"


def peer_add_workflow_id(peer_id: str) -> str:
    return f"peer-add-{peer_id}"


def revoke_workflow_id(grant_id: str) -> str:
    return f"revoke-grant-{grant_id}"


def reconcile_schedule_id(task_queue: str) -> str:
    """One schedule per gateway; gateways sharing a Temporal namespace use their queue."""
    if task_queue == DEFAULT_TASK_QUEUE:
        return RECONCILE_SCHEDULE_ID
    return f"{RECONCILE_SCHEDULE_ID}-{task_queue}"
