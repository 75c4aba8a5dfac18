"""Names of workflow runs and schedules: readable in the Temporal UI, derived from
ids so a retried request finds the same run. No secret goes into a name."""

from __future__ import annotations

import hashlib

RECONCILE_SCHEDULE_ID = "reconcile-enrollments"
# The default queue before gateway identities; kept by setting MOSAIC_TASK_QUEUE to it.
LEGACY_TASK_QUEUE = "mosaic-federation"


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
    """One schedule per gateway, named after its queue (``federation.identity.task_queue_for``);
    the legacy default queue keeps its schedule's old name."""
    if task_queue == LEGACY_TASK_QUEUE:
        return RECONCILE_SCHEDULE_ID
    return f"{RECONCILE_SCHEDULE_ID}-{task_queue}"


def renew_workflow_id(grant_id: str, csr_fingerprint: str) -> str:
    """One renewal run per grant and CSR: the same CSR again attaches to it (replay)."""
    return f"renew-{grant_id}-{csr_fingerprint[:16]}"


def peer_certificate_workflow_id(peer_id: str) -> str:
    """The lifecycle run of a requesting-side peer's certificate (gateway A)."""
    return f"peer-cert-{peer_id}"
