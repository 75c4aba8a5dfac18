"""The resource interface without a database: the wire form, the kinds served, the
cursor codec it shares with the admin lists, and the CLI module's import weight."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from federation.errors import InvalidInput
from federation.paging import (
    NOT_A_CURSOR,
    decode_cursor,
    encode_cursor,
    pack_position,
    unpack_position,
)
from federation.resources import SERVED, ResourceItem, SqlResources
from federation.scope import RESOURCES

HEAVY = ("temporalio", "sqlalchemy", "pydantic_settings", "pydantic", "fastapi", "federation")


def test_wire_form_is_camel_case_with_utc_z_times() -> None:
    item_id, owner = uuid.uuid4(), uuid.uuid4()
    paris = timezone(timedelta(hours=1))
    item = ResourceItem(
        id=item_id,
        owner_user_id=owner,
        team_id=None,
        title="Renew the lease",
        body="",
        created_at=datetime(2026, 12, 2, 17, 0, 0, 5, tzinfo=paris),
        updated_at=datetime(2026, 12, 2, 16, 0, tzinfo=UTC),
    )
    assert item.wire() == {
        "id": str(item_id),
        "ownerUserId": str(owner),
        "teamId": None,
        "title": "Renew the lease",
        "body": "",
        "createdAt": "2026-12-02T16:00:00.000005Z",
        "updatedAt": "2026-12-02T16:00:00Z",
    }
    json.dumps(item.wire())  # JSON-ready as it is


def test_the_built_in_source_serves_three_scope_resources_and_not_teams_or_users() -> None:
    assert SERVED == {"tasks", "notes", "credentials"} and SERVED <= set(RESOURCES)
    source = SqlResources()
    assert [k for k in RESOURCES if source.serves(k)] == ["tasks", "notes", "credentials"]
    assert not source.serves("teams") and not source.serves("users")


def test_a_position_survives_its_cursor_and_a_cursor_is_bound_to_its_list() -> None:
    position = (datetime(2026, 12, 2, 16, 35, 50, 265689, tzinfo=UTC), uuid.uuid4())
    cursor = encode_cursor("tasks", pack_position(position))
    assert "=" not in cursor and unpack_position(decode_cursor("tasks", cursor, 24)) == position
    for kind, size in (("notes", 24), ("tasks", 40)):
        with pytest.raises(InvalidInput, match=f"^{NOT_A_CURSOR}$"):
            decode_cursor(kind, cursor, size)
    forged = (2**62).to_bytes(8, "big") + bytes(16)  # microseconds beyond year 9999
    with pytest.raises(InvalidInput, match=f"^{NOT_A_CURSOR}$"):
        unpack_position(forged)


def test_the_resource_commands_import_no_server_stack() -> None:
    code = "import sys, json, api.cli.resources; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
