"""Names of workflow runs and schedules: readable in the Temporal UI, derived from
ids so a retried request finds the same run. No secret goes into a name."""

from __future__ import annotations

import hashlib

RECONCILE_SCHEDULE_ID = "reconcile-enrollments"
DEFAULT_TASK_QUEUE = "mosaic-federation"


def redeem_workflow_id(token_hash: str) -> str:
    """Stable for retries of one token, and not a prefix of its stored hash.

    Workflow ids reach worker logs, which may show at most 8 characters of a
    token hash; a separate, domain-separated hash keeps 64 bits (no collisions
    between live tokens) without revealing any of the stored one.
    """
    run_key = hashlib.sha256(b"mosaic-redeem-run:" + token_hash.encode("ascii")).hexdigest()
    return f"enroll-{run_key[:16]}"


def peer_add_workflow_id(peer_id: str) -> str:
    return f"peer-add-{peer_id}"


def revoke_workflow_id(grant_id: str) -> str:
    return f"revoke-grant-{grant_id}"


def reconcile_schedule_id(task_queue: str) -> str:
    """One schedule per gateway; gateways sharing a Temporal namespace use their queue."""
    if task_queue == DEFAULT_TASK_QUEUE:
        return RECONCILE_SCHEDULE_ID
    return f"{RECONCILE_SCHEDULE_ID}-{task_queue}"
