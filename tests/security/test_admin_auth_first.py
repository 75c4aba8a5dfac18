"""Issue 15, item 4, on both lanes: on every admin route (as the OpenAPI schema lists
them) authentication comes before parsing. A broken body without a token is 401, with
a wrong token 403, answered as ``AdminDep`` answers; only the admin gets the 422."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from federation.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.dbsnap import snapshot

BROKEN = b'{"name": "unterminated'
_PARAM = re.compile(r"\{[^}]+\}")


@pytest.fixture
async def anonymous(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, list[tuple[str, str, bool]]]]:
    """A client with no Authorization header at all, and every admin (method, path,
    has a request body) of the app's OpenAPI schema, path parameters filled in."""
    app = create_app(settings)
    routes = [
        (method.upper(), _PARAM.sub(str(uuid.uuid4()), path), "requestBody" in operation)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/admin/")
        for method, operation in operations.items()
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http, routes
    await app.state.gateway.close()


async def _send(
    http: httpx.AsyncClient, method: str, path: str, authorization: str | None
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return await http.request(method, path, content=BROKEN, headers=headers)


async def test_every_admin_route_answers_401_to_a_broken_body_without_a_token(
    anonymous: tuple[httpx.AsyncClient, list[tuple[str, str, bool]]], db_engine: AsyncEngine
) -> None:
    http, routes = anonymous
    assert len(routes) >= 15, routes  # the schema really lists the admin surface
    before = await snapshot(db_engine)
    wrong: list[tuple[str, str, int, str]] = []
    for method, path, _ in routes:
        for authorization in (None, "", "Basic YWRtaW46YWRtaW4=", "Bearer"):
            response = await _send(http, method, path, authorization)
            if (
                response.status_code != 401
                or response.json() != {"detail": "admin bearer token required"}
                or response.headers.get("www-authenticate") != "Bearer"
                or not response.headers.get("x-request-id")
            ):
                wrong.append((method, path, response.status_code, repr(authorization)))
    assert wrong == []
    assert await snapshot(db_engine) == before


async def test_every_admin_route_answers_403_to_a_broken_body_with_a_wrong_token(
    anonymous: tuple[httpx.AsyncClient, list[tuple[str, str, bool]]],
) -> None:
    http, routes = anonymous
    wrong = []
    for method, path, _ in routes:
        response = await _send(http, method, path, "Bearer not-the-admin-token")
        if response.status_code != 403 or response.json() != {
            "detail": "admin bearer token is not valid"
        }:
            wrong.append((method, path, response.status_code))
    assert wrong == []


async def test_the_admin_still_gets_the_422_of_a_broken_body(
    anonymous: tuple[httpx.AsyncClient, list[tuple[str, str, bool]]],
) -> None:
    http, routes = anonymous
    with_body = [(method, path) for method, path, has_body in routes if has_body]
    assert with_body
    wrong = []
    for method, path in with_body:
        response = await _send(http, method, path, f"Bearer {ADMIN_TOKEN}")
        if response.status_code != 422 or response.json() != {
            "detail": "request body is not valid JSON"
        }:
            wrong.append((method, path, response.status_code, response.text))
    assert wrong == []
