"""The admin REST API through the real app, on PostgreSQL and SQLite."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.dbsnap import fetch_all, snapshot
from tests.support.factories import DEFAULT_SCOPE, make_grant, make_peer, make_token, make_user

# Grant revocation runs as the RevokeGrant workflow: these tests need the real worker.
pytestmark = pytest.mark.usefixtures("worker")


async def test_grant_create_writes_pending_row_with_scope_bundle(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:  # M2-1
    grant = await make_grant(client)
    assert grant["status"] == "pending"
    rows = await fetch_all(
        db_engine,
        "SELECT status, scope FROM federation_grants WHERE id = :id",
        id=_db_id(db_engine, grant["id"]),
    )
    assert len(rows) == 1 and rows[0]["status"] == "pending"
    stored = rows[0]["scope"]
    stored = stored if isinstance(stored, dict) else __import__("json").loads(stored)
    assert stored == DEFAULT_SCOPE


@pytest.mark.parametrize(
    ("scope", "field"),
    [
        ({"resources": ["tasks", "secrets"], "max_rows_per_query": 10}, "scope.resources"),  # M2-7
        ({"resources": [], "max_rows_per_query": 10}, "scope.resources"),
        (
            {"resources": ["tasks"], "excluded_resources": ["tasks"], "max_rows_per_query": 10},
            "scope",
        ),
        ({"resources": ["tasks"], "max_rows_per_query": 0}, "scope.max_rows_per_query"),
        ({"resources": ["tasks"], "max_rows_per_query": 10001}, "scope.max_rows_per_query"),
        ({"resources": ["tasks"], "max_rows_per_query": 10, "admin": True}, "scope.admin"),
        ({"resources": ["tasks"], "max_rows_per_query": "10"}, "scope.max_rows_per_query"),
    ],
)
async def test_grant_with_invalid_scope_is_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, db_engine: AsyncEngine, scope: dict[str, object], field: str
) -> None:
    user = await make_user(client)
    peer = await make_peer(client)
    before = await snapshot(db_engine)
    response = await client.post(
        "/api/admin/federation/grants",
        json={"subjectUserId": user["id"], "peerId": peer["id"], "scope": scope},
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith(field) and "\n" not in detail
    assert await snapshot(db_engine) == before


async def test_grant_and_peer_lists_show_states_with_filters(
    client: httpx.AsyncClient,
) -> None:  # M2-8
    peer = await make_peer(client)
    pending = await make_grant(client, peer=peer)
    revoked = await make_grant(client, peer=peer)
    response = await client.patch(
        f"/api/admin/federation/grants/{revoked['id']}/revoke", json={"reason": "test over"}
    )
    assert response.status_code == 200 and response.json()["status"] == "revoked"

    listed = (await client.get("/api/admin/federation/grants", params={"peer": peer["id"]})).json()
    assert {g["id"]: g["status"] for g in listed} == {
        pending["id"]: "pending",
        revoked["id"]: "revoked",
    }
    only_revoked = (
        await client.get(
            "/api/admin/federation/grants", params={"peer": peer["id"], "status": "revoked"}
        )
    ).json()
    assert [g["id"] for g in only_revoked] == [revoked["id"]]

    peers = (await client.get("/api/admin/federation/peers", params={"state": "pending"})).json()
    assert peer["id"] in {p["id"] for p in peers}
    shown = (await client.get(f"/api/admin/federation/peers/{peer['id']}")).json()
    assert shown["state"] == "pending" and shown["certSerial"] is None


async def test_revoked_grant_stays_revoked_and_reason_is_audited(client: httpx.AsyncClient) -> None:
    grant = await make_grant(client)
    first = await client.patch(
        f"/api/admin/federation/grants/{grant['id']}/revoke", json={"reason": "offboarded"}
    )
    assert first.status_code == 200
    again = await client.patch(f"/api/admin/federation/grants/{grant['id']}/revoke", json={})
    assert again.status_code == 409
    token = await client.post(f"/api/admin/federation/grants/{grant['id']}/tokens", json={})
    assert token.status_code == 409
    audit = (await client.get("/api/admin/federation/audit", params={"grant": grant["id"]})).json()
    revokes = [a for a in audit if a["verb"] == "grant.revoke"]
    assert len(revokes) == 1 and revokes[0]["reason"] == "offboarded"


async def test_token_is_stored_only_as_its_sha256(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    grant = await make_grant(client)
    issued = await make_token(client, grant["id"], ttl=300)
    token = issued["token"]
    assert len(token) == 64 and int(token, 16) >= 0
    assert issued["enrollmentUrl"] == f"https://gateway-b.example/api/federation/enrollment/{token}"
    rows = await fetch_all(
        db_engine,
        "SELECT * FROM federation_enrollment_tokens WHERE grant_id = :g",
        g=_db_id(db_engine, grant["id"]),
    )
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(rows)
    assert token not in repr(await fetch_all(db_engine, "SELECT * FROM federation_audit_log"))


@pytest.mark.parametrize("ttl", [901, 0, -5, 3600])
async def test_token_ttl_outside_1_to_900_is_422(client: httpx.AsyncClient, ttl: int) -> None:
    grant = await make_grant(client)
    response = await client.post(
        f"/api/admin/federation/grants/{grant['id']}/tokens", json={"ttlSeconds": ttl}
    )
    assert response.status_code == 422
    assert "ttlSeconds" in response.json()["detail"]


async def test_token_default_ttl_is_900_seconds(client: httpx.AsyncClient) -> None:
    from datetime import UTC, datetime

    grant = await make_grant(client)
    response = await client.post(f"/api/admin/federation/grants/{grant['id']}/tokens")
    assert response.status_code == 201
    expires = datetime.fromisoformat(response.json()["expiresAt"])
    assert 880 < (expires - datetime.now(UTC)).total_seconds() <= 900


ADMIN_ROUTES = [
    ("GET", "/api/admin/users"),
    ("POST", "/api/admin/users"),
    ("GET", "/api/admin/federation/peers"),
    ("POST", "/api/admin/federation/peers"),
    ("GET", f"/api/admin/federation/peers/{uuid.uuid4()}"),
    ("GET", "/api/admin/federation/grants"),
    ("POST", "/api/admin/federation/grants"),
    ("GET", f"/api/admin/federation/grants/{uuid.uuid4()}"),
    ("PATCH", f"/api/admin/federation/grants/{uuid.uuid4()}/revoke"),
    ("POST", f"/api/admin/federation/grants/{uuid.uuid4()}/tokens"),
    ("GET", "/api/admin/federation/audit"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_admin_route_without_bearer_is_401_and_wrong_bearer_is_403(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    missing = await client.request(method, path, headers={"Authorization": ""}, json={})
    assert missing.status_code == 401
    wrong = await client.request(
        method, path, headers={"Authorization": "Bearer not-the-token"}, json={}
    )
    assert wrong.status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/admin/users", "{not json", 422),
        ("POST", "/api/admin/users", {"name": 5, "email": "a@example.com"}, 422),
        ("POST", "/api/admin/users", {"name": "x", "email": "not-an-email"}, 422),
        ("POST", "/api/admin/federation/peers", {"commonName": "bad cn!", "displayName": "x"}, 422),
        (
            "POST",
            "/api/admin/federation/peers",
            {"commonName": "ok.example", "displayName": "x", "extra": 1},
            422,
        ),
        (
            "POST",
            "/api/admin/federation/grants",
            {"subjectUserId": "nope", "peerId": str(uuid.uuid4()), "scope": DEFAULT_SCOPE},
            422,
        ),
        (
            "POST",
            "/api/admin/federation/grants",
            {
                "subjectUserId": str(uuid.uuid4()),
                "peerId": str(uuid.uuid4()),
                "scope": DEFAULT_SCOPE,
            },
            404,
        ),
        ("GET", f"/api/admin/federation/grants/{uuid.uuid4()}", None, 404),
        ("GET", "/api/admin/federation/grants/not-a-uuid", None, 422),
        ("GET", "/api/admin/federation/grants?status=bogus", None, 422),
        ("PATCH", f"/api/admin/federation/grants/{uuid.uuid4()}/revoke", {}, 404),
        ("POST", f"/api/admin/federation/grants/{uuid.uuid4()}/tokens", {}, 404),
        ("POST", f"/api/admin/federation/grants/{uuid.uuid4()}/tokens", {"ttlSeconds": "90"}, 422),
        ("GET", f"/api/admin/federation/peers/{uuid.uuid4()}", None, 404),
    ],
)
async def test_bad_admin_input_is_4xx_with_one_line_reason_and_changes_nothing(
    client: httpx.AsyncClient,
    db_engine: AsyncEngine,
    method: str,
    path: str,
    body: object,
    status: int,
) -> None:
    before = await snapshot(db_engine)
    if isinstance(body, str):
        response = await client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = await client.request(method, path, json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    assert await snapshot(db_engine) == before


async def test_duplicate_peer_common_name_is_409(client: httpx.AsyncClient) -> None:
    peer = await make_peer(client)
    again = await client.post(
        "/api/admin/federation/peers",
        json={"commonName": peer["commonName"], "displayName": "dup"},
    )
    assert again.status_code == 409


async def test_healthz_answers_without_auth(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Authorization": ""})
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_openapi_schema_is_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/api/admin/federation/grants/{grant_id}/tokens" in schema["paths"]


def _db_id(engine: AsyncEngine, value: str) -> str:
    # SQLAlchemy's Uuid is native on PostgreSQL and 32-char hex on SQLite.
    return value if engine.dialect.name == "postgresql" else uuid.UUID(value).hex
