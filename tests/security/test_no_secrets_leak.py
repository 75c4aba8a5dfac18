"""Suite-wide scans, run last: no token, private key or sealing secret in any
Temporal history of the session, nor in any log line."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ADMIN_TOKEN, SEALING_SECRET, SESSION_LOG
from tests.support.factories import MINTED_TOKENS

pytestmark = pytest.mark.last

FORBIDDEN_MARKERS = ("PRIVATE KEY", "/api/federation/enrollment/", ADMIN_TOKEN, SEALING_SECRET)


async def test_no_workflow_history_holds_a_token_url_key_or_secret(
    temporal_env: WorkflowEnvironment,
) -> None:
    assert MINTED_TOKENS, "the suite minted no token: this scan would prove nothing"
    scanned = 0
    async for execution in temporal_env.client.list_workflows():
        handle = temporal_env.client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = (await handle.fetch_history()).to_json()
        scanned += 1
        for token in MINTED_TOKENS:
            assert token not in history, f"a token is in the history of {execution.id}"
        for marker in FORBIDDEN_MARKERS:
            assert marker not in history, f"{marker[:12]}… is in the history of {execution.id}"
    assert scanned > 0


def test_no_log_line_holds_a_full_token() -> None:
    assert MINTED_TOKENS and SESSION_LOG.lines
    text = "\n".join(SESSION_LOG.lines)
    for token in MINTED_TOKENS:
        assert token not in text
    assert SEALING_SECRET not in text and ADMIN_TOKEN not in text
