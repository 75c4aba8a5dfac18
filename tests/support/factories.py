"""Create users, peers, grants and tokens through the real admin API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

DEFAULT_SCOPE: dict[str, Any] = {
    "resources": ["tasks", "notes"],
    "excluded_resources": ["credentials"],
    "max_rows_per_query": 100,
}


# Every token minted in this session, for the history and log scans.
MINTED_TOKENS: list[str] = []


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def make_user(client: httpx.AsyncClient) -> dict[str, Any]:
    name = unique("user")
    response = await client.post(
        "/api/admin/users", json={"name": name, "email": f"{name}@example.com"}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def make_peer(client: httpx.AsyncClient, common_name: str | None = None) -> dict[str, Any]:
    cn = common_name or f"{unique('peer')}.example.com"
    response = await client.post(
        "/api/admin/federation/peers",
        json={"commonName": cn, "displayName": f"Peer {cn}", "endpointUrl": f"https://{cn}"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def make_grant(
    client: httpx.AsyncClient,
    scope: dict[str, Any] | None = None,
    peer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    user = await make_user(client)
    peer = peer or await make_peer(client)
    response = await client.post(
        "/api/admin/federation/grants",
        json={"subjectUserId": user["id"], "peerId": peer["id"], "scope": scope or DEFAULT_SCOPE},
    )
    assert response.status_code == 201, response.text
    grant = dict(response.json())
    grant["_peer"] = peer
    return grant


async def make_token(client: httpx.AsyncClient, grant_id: str, ttl: int = 900) -> dict[str, Any]:
    response = await client.post(
        f"/api/admin/federation/grants/{grant_id}/tokens", json={"ttlSeconds": ttl}
    )
    assert response.status_code == 201, response.text
    MINTED_TOKENS.append(response.json()["token"])
    return dict(response.json())
