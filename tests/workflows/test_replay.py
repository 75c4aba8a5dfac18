"""Determinism: recorded histories of real runs replay on the current workflow code.

``histories/`` holds one JSON history per workflow type and outcome (redeem allowed and
each denial kind, peer add, revoke, reconcile, renewal, the certificate lifecycle,
certificate revocation), recorded from real runs on the real parts. A workflow change
that would break runs already in flight fails here, in CI.

When a workflow changes on purpose (a new step, a new activity input), record them
again and commit the new files with the change, saying why in the commit message:

    MOSAIC_RECORD_HISTORIES=1 make test

The whole suite runs, and ``test_runs_of_this_session_replay`` (which runs last) writes
one history per type and outcome of the session's own runs into ``histories/``. Keep a
workflow change that must not break running workflows behind ``workflow.patched``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from workflows.identity import GatewayGuard
from workflows.worker import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"
RECORD = os.environ.get("MOSAIC_RECORD_HISTORIES") == "1"
# What every fixture set must cover (outcomes of the redeem are checked separately).
TYPES = {
    "RedeemEnrollment",
    "PeerAdd",
    "RevokeGrant",
    "ReconcileEnrollments",
    "RenewCertificate",
    "PeerCertificate",
    "RevokeCertificates",
}


def _replayer() -> Replayer:
    # The worker's own interceptors: the header carrying is part of what replays.
    return Replayer(
        workflows=list(WORKFLOWS),
        interceptors=[GatewayGuard(uuid.UUID(int=0))],
        workflow_failure_exception_types=[Exception],
    )


async def _each(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    """The replayer takes an async iterator."""
    for history in histories:
        yield history


def _fixtures() -> list[WorkflowHistory]:
    found = []
    for path in sorted(HISTORIES.glob("*.json")):
        recorded = json.loads(path.read_text())
        found.append(WorkflowHistory.from_json(recorded["workflowId"], recorded["history"]))
    return found


async def test_committed_histories_replay_on_the_current_workflows() -> None:
    histories = _fixtures()
    kinds = {path.stem.split("--")[0] for path in HISTORIES.glob("*.json")}
    assert TYPES <= kinds, f"fixtures missing for {sorted(TYPES - kinds)}; record them"
    results = await _replayer().replay_workflows(_each(histories), raise_on_replay_failure=False)
    failures = {
        h.workflow_id: repr(results.replay_failures[h.run_id])
        for h in histories
        if h.run_id in results.replay_failures
    }
    assert not failures, failures


@pytest.mark.last
async def test_runs_of_this_session_replay(temporal_env: WorkflowEnvironment) -> None:
    """Every closed run of the session, one per type and outcome, replays on this code;
    with MOSAIC_RECORD_HISTORIES=1 they become the committed fixtures."""
    client = temporal_env.client
    picked: dict[str, str] = {}
    seen: dict[str, int] = defaultdict(int)
    running: dict[str, str] = {}
    async for execution in client.list_workflows():
        ref = execution.id + "/" + execution.run_id
        if execution.status == WorkflowExecutionStatus.RUNNING:
            running.setdefault(execution.workflow_type or "", ref)
            continue
        outcome = _outcome(execution.status, execution.search_attributes)
        key = f"{execution.workflow_type}--{outcome}"
        seen[key] += 1
        picked.setdefault(key, ref)
    # A type that never closed in the session (PeerCertificate sleeps until its renewal
    # point) is covered by a run still open: its history so far replays just the same.
    closed_types = {key.split("--")[0] for key in picked}
    for workflow_type, ref in running.items():
        if workflow_type not in closed_types:
            picked[f"{workflow_type}--running"] = ref
    histories = {}
    for key, ref in sorted(picked.items()):
        workflow_id, run_id = ref.split("/", 1)
        histories[key] = await client.get_workflow_handle(
            workflow_id, run_id=run_id
        ).fetch_history()
    assert histories, "the session ran no workflow to replay"
    results = await _replayer().replay_workflows(
        _each(list(histories.values())), raise_on_replay_failure=False
    )
    assert not results.replay_failures, {
        run_id: repr(error) for run_id, error in results.replay_failures.items()
    }
    if RECORD:
        for stale in HISTORIES.glob("*.json"):
            stale.unlink()
        HISTORIES.mkdir(exist_ok=True)
        for key, history in histories.items():
            (HISTORIES / f"{key}.json").write_text(
                json.dumps(
                    {"workflowId": history.workflow_id, "history": json.loads(history.to_json())},
                    indent=1,
                )
                + "\n"
            )


def _outcome(status: WorkflowExecutionStatus | None, attributes: object) -> str:
    """A redeem or peer add is named by its EnrollmentOutcome; others by how they closed."""
    outcome = getattr(attributes, "get", lambda _: None)("EnrollmentOutcome")
    if isinstance(outcome, list) and outcome:
        return str(outcome[0]).replace(":", "-")
    return status.name.lower() if status else "unknown"
