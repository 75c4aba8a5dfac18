"""Admin lists on the wire: keyset pages with ``X-Next-Cursor``, cursors refused
cleanly, runs without the reconcile noise, and user emails on internal domains."""

from __future__ import annotations

import asyncio
import base64
import struct
import uuid
from typing import Any

import httpx
import pytest
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from tests.support.factories import make_peer, unique
from workflows.common import PEER_ID

pytestmark = pytest.mark.usefixtures("worker")


async def _all_pages(
    client: httpx.AsyncClient, path: str, limit: int, **params: str
) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        query = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page, list) and len(page) <= limit
        rows += page
        pages += 1
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            return rows, pages


async def test_user_emails_on_internal_domains_are_accepted_and_garbage_is_not(
    client: httpx.AsyncClient,
) -> None:
    tag = uuid.uuid4().hex[:8]
    for email in (f"ann-{tag}@mosaic.local", f"ops-{tag}@localhost", f"Bo-{tag}@Corp.Internal"):
        response = await client.post("/api/admin/users", json={"name": "Ann", "email": email})
        assert response.status_code == 201, response.text
        assert response.json()["email"] == email.lower()
    for garbage in ("nope", "a b@c.d", "@mosaic.local", "ann@", "ann@-x.local", "ann@1.2.3.4"):
        response = await client.post("/api/admin/users", json={"name": "X", "email": garbage})
        assert response.status_code == 422, (garbage, response.text)
        assert response.json()["detail"].startswith("email: "), response.text


async def test_peers_page_by_cursor_with_every_row_once_even_while_rows_are_added(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(5):
        await make_peer(client)
    unpaged = (await client.get("/api/admin/federation/peers")).json()
    first = await client.get("/api/admin/federation/peers", params={"limit": 2})
    added = await make_peer(client)  # after the first page: must come at the end, once
    rest, _ = await _all_pages(
        client, "/api/admin/federation/peers", 2, cursor=first.headers["X-Next-Cursor"]
    )
    ids = [p["id"] for p in first.json() + rest]
    assert ids == [p["id"] for p in unpaged] + [added["id"]]
    assert len(set(ids)) == len(ids)


async def test_grant_and_audit_pages_cover_the_filtered_list_exactly(
    client: httpx.AsyncClient,
) -> None:
    peer = await make_peer(client)
    user = (
        await client.post(
            "/api/admin/users", json={"name": "P", "email": f"{unique('p')}@example.com"}
        )
    ).json()
    scope = {"resources": ["tasks"], "max_rows_per_query": 5}
    for _ in range(7):
        body = {"subjectUserId": user["id"], "peerId": peer["id"], "scope": scope}
        assert (await client.post("/api/admin/federation/grants", json=body)).status_code == 201
    grants, pages = await _all_pages(
        client, "/api/admin/federation/grants", 3, peer=peer["id"], status="pending"
    )
    assert len(grants) == 7 and len({g["id"] for g in grants}) == 7 and pages == 3
    audit, pages = await _all_pages(client, "/api/admin/federation/audit", 3, peer=peer["id"])
    ids = [a["id"] for a in audit]
    assert len(ids) == 8 and ids == sorted(ids, reverse=True) and pages == 3


async def test_the_last_page_has_no_next_cursor_and_no_limit_means_the_whole_list(
    client: httpx.AsyncClient,
) -> None:
    whole = await client.get("/api/admin/users")
    assert "X-Next-Cursor" not in whole.headers
    paged = await client.get("/api/admin/users", params={"limit": len(whole.json())})
    assert paged.json() == whole.json() and "X-Next-Cursor" not in paged.headers


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64-%%%",
        base64.urlsafe_b64encode(b"peers:" + bytes(24)).decode(),  # another list's
        # A forged position beyond the range of a date: a 422, not a 500.
        base64.urlsafe_b64encode(b"users:" + struct.pack(">q", 2**62) + bytes(16)).decode(),
        base64.urlsafe_b64encode(b"users:short").decode(),
    ],
)
async def test_a_cursor_this_list_did_not_make_is_a_422_naming_cursor(
    client: httpx.AsyncClient, cursor: str
) -> None:
    response = await client.get("/api/admin/users", params={"limit": 5, "cursor": cursor})
    assert response.status_code == 422
    assert response.json() == {"detail": "cursor: not a cursor of this list"}


async def test_runs_leave_out_reconcile_runs_when_asked_and_page_by_cursor(
    client: httpx.AsyncClient, temporal_env: WorkflowEnvironment
) -> None:
    # Runs nobody works on: they stay running, visible, until terminated. One peer id
    # tags them all, so the lists below hold these runs and no others.
    peer = str(uuid.uuid4())
    tag = TypedSearchAttributes([SearchAttributePair(PEER_ID, peer)])
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    handles = [
        await temporal_env.client.start_workflow(
            kind, id=f"{kind}-{uuid.uuid4().hex[:8]}", task_queue=queue, search_attributes=tag
        )
        for kind in ("RevokeGrant", "ReconcileEnrollments", "RevokeGrant")
    ]
    try:
        for _ in range(100):  # visibility is eventually consistent
            listed = (await client.get("/api/admin/federation/runs", params={"peer": peer})).json()
            if len(listed) == len(handles):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"the runs never became visible: {listed}")
        quiet = await client.get(
            "/api/admin/federation/runs", params={"peer": peer, "reconcile": "false"}
        )
        assert sorted(r["workflowType"] for r in quiet.json()) == ["RevokeGrant", "RevokeGrant"]

        paged, pages = await _all_pages(client, "/api/admin/federation/runs", 1, peer=peer)
        assert [r["runId"] for r in paged] == [r["runId"] for r in listed]
        assert pages == 3  # and no empty page after the last
    finally:
        for handle in handles:
            await handle.terminate(reason="test done")
