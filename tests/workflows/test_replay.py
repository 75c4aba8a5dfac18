"""Determinism: recorded histories of real runs replay on the current workflow code.

``histories/`` holds one JSON history per workflow type and outcome (redeem allowed and
each denial kind, peer add, revoke, reconcile, renewal, the certificate lifecycle,
certificate revocation), recorded from real runs on the real parts. A workflow change
that would break runs already in flight fails here, in CI.

When a workflow changes on purpose (a new step, a new activity input), record them
again and commit the new files with the change, saying why in the commit message. A change
behind ``workflow.patched`` keeps the histories of the old shape in a subfolder, so the
old branch stays replayed too (recording rewrites only the top level):

    MOSAIC_RECORD_HISTORIES=1 make test

The whole suite runs, and ``test_runs_of_this_session_replay`` (which runs last) writes
one history per type and outcome of the session's own runs into ``histories/``. Keep a
workflow change that must not break running workflows behind ``workflow.patched``.
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from tests.support.histories import local_activity_timed_out, replayer, sdk_timeouts

HISTORIES = Path(__file__).parent / "histories"
# Histories the SDK cannot replay (see test_sdk_replay_limit_…), kept out of HISTORIES.
SDK_LIMITS = Path(__file__).parent / "sdk_limits"
# Runs looked at per type and outcome, to find one the SDK can replay.
CANDIDATES = 20
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


async def _each(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    """The replayer takes an async iterator."""
    for history in histories:
        yield history


def _fixtures() -> list[WorkflowHistory]:
    found = []
    # Subfolders keep the histories of earlier shapes that runs in flight may still have
    # (``sign-as-activity/``: the redeem before its CA step became a local activity).
    for path in sorted(HISTORIES.rglob("*.json")):
        recorded = json.loads(path.read_text())
        found.append(WorkflowHistory.from_json(recorded["workflowId"], recorded["history"]))
    return found


async def test_committed_histories_replay_on_the_current_workflows() -> None:
    histories = _fixtures()
    kinds = {path.stem.split("--")[0] for path in HISTORIES.glob("*.json")}
    assert TYPES <= kinds, f"fixtures missing for {sorted(TYPES - kinds)}; record them"
    results = await replayer().replay_workflows(_each(histories), raise_on_replay_failure=False)
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
    picked: dict[str, list[str]] = defaultdict(list)
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
        if len(picked[key]) < CANDIDATES:
            picked[key].append(ref)
    # A type that never closed in the session (PeerCertificate sleeps until its renewal
    # point) is covered by a run still open: its history so far replays just the same.
    closed_types = {key.split("--")[0] for key in picked}
    for workflow_type, ref in running.items():
        if workflow_type not in closed_types:
            picked[f"{workflow_type}--running"] = [ref]
    histories: dict[str, WorkflowHistory] = {}
    sdk_limited: list[str] = []
    for key, refs in sorted(picked.items()):
        for ref in refs:
            workflow_id, run_id = ref.split("/", 1)
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
            if local_activity_timed_out(history):
                # see test_sdk_replay_limit below
                sdk_limited.append(f"{key} {ref} {sdk_timeouts(history)}")
                continue
            histories[key] = history
            break
    assert histories, "the session ran no workflow to replay"
    results = await replayer().replay_workflows(
        _each(list(histories.values())), raise_on_replay_failure=False
    )
    # The worker ends a hung local activity itself (workflows.deadlines), so the SDK times
    # one out only when a worker's event loop was held up past the margin: here, the test
    # process's, which the tests share with the lanes' workers. Such runs are left out
    # (and named); never is a whole workflow type left out.
    if sdk_limited:
        warnings.warn(f"runs the SDK timed out a local activity of: {sdk_limited}", stacklevel=1)
    assert {key.split("--")[0] for key in picked} <= {k.split("--")[0] for k in histories}, (
        sdk_limited
    )
    which = {h.run_id: key for key, h in histories.items()}
    assert not results.replay_failures, {
        f"{which.get(run_id)} {run_id}": repr(error)[:2000]
        for run_id, error in results.replay_failures.items()
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


async def test_sdk_replay_limit_a_local_activity_timeout_still_does_not_replay() -> None:
    """temporalio 1.35 cannot replay a history in which a local activity failed by its
    start-to-close timeout and the workflow went on with another local activity: the
    replay waits forever (a real run of ``test_verify_that_times_out_…`` recorded the
    fixture, before the worker ended hung local activities itself). Since
    ``workflows.deadlines`` no run of ours records such a timeout (the session test above
    checks it); histories of runs from before may still have one. This test says the limit
    is still there for as long as it is true: once an SDK upgrade replays it, it fails."""
    path = SDK_LIMITS / "RedeemEnrollment--local-activity-timed-out.json"
    recorded = json.loads(path.read_text())
    history = WorkflowHistory.from_json(recorded["workflowId"], recorded["history"])
    assert local_activity_timed_out(history)
    replay = asyncio.ensure_future(replayer().replay_workflow(history))
    done, _ = await asyncio.wait([replay], timeout=5)
    if done:
        replay.result()  # raises on a plain replay failure
        pytest.fail("the SDK replays a local-activity timeout now: drop the exception above")
    replay.cancel()


def _outcome(status: WorkflowExecutionStatus | None, attributes: object) -> str:
    """A redeem or peer add is named by its EnrollmentOutcome; others by how they closed."""
    outcome = getattr(attributes, "get", lambda _: None)("EnrollmentOutcome")
    if isinstance(outcome, list) and outcome:
        return str(outcome[0]).replace(":", "-")
    return status.name.lower() if status else "unknown"
