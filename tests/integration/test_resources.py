"""The data B serves over federation: the built-in SQL source (owner isolation, keyset
pages, cursors bound to kind and owner, plans on the owner index), its admin routes
and the real `mosaic resource` commands, on both database lanes."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from federation.db.models import AuditEntry, Credential, Note, Task
from federation.db.session import make_sessionmaker
from federation.errors import InvalidInput, NotFound
from federation.paging import encode_cursor
from federation.resources import ResourceItem, SqlResources
from federation.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.commands import MOSAIC, clean_env
from tests.support.factories import make_user
from tests.support.gateways import UvicornServer
from tests.support.stepca import free_port

SOURCE = SqlResources()
NOT_A_CURSOR = "cursor: not a cursor of this list"
Model = type[Task] | type[Note] | type[Credential]


@pytest.fixture(scope="module")
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(db_engine)


async def _user(client: httpx.AsyncClient) -> uuid.UUID:
    return uuid.UUID((await make_user(client))["id"])


async def _insert(
    sessions: async_sessionmaker[AsyncSession],
    model: Model,
    owner: uuid.UUID,
    count: int,
    *,
    per_instant: int = 1,
) -> list[uuid.UUID]:
    """``count`` rows for ``owner``, ``per_instant`` of them sharing each created_at;
    their ids in (created_at, id) order."""
    start = datetime.now(UTC) - timedelta(days=1)
    rows = []
    for i in range(count):
        at = start + timedelta(milliseconds=i // per_instant)
        rows.append(
            {
                "id": uuid.uuid4(),
                "owner_user_id": owner,
                "title": f"row {i}",
                "body": "",
                "created_at": at,
                "updated_at": at,
            }
        )
    async with sessions() as session:
        await session.execute(insert(model), rows)
        await session.commit()
    return [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]))]


async def _walk_core(
    sessions: async_sessionmaker[AsyncSession],
    kind: str,
    *,
    owner: uuid.UUID | None,
    limit: int,
) -> tuple[list[ResourceItem], int]:
    items: list[ResourceItem] = []
    cursor, pages = None, 0
    while True:
        async with sessions() as session:
            page = await SOURCE.admin_page(session, kind, owner=owner, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        items += page.items
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return items, pages


async def _walk_api(
    client: httpx.AsyncClient, kind: str, limit: int, **params: str
) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        query = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/api/admin/resources/{kind}", params=query)
        assert response.status_code == 200, response.text
        rows += response.json()
        pages += 1
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            return rows, pages


# --- the admin API ----------------------------------------------------------------


async def test_create_answers_201_with_the_wire_form_and_writes_an_audit_row(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner = await _user(client)
    team = uuid.uuid4()
    body = {"ownerUserId": str(owner), "title": "Renew the lease", "body": "ü\nbefore March"}
    response = await client.post("/api/admin/resources/tasks", json={**body, "teamId": str(team)})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["title"] == "Renew the lease" and created["teamId"] == str(team)
    assert created["createdAt"].endswith("Z") and created["createdAt"] == created["updatedAt"]

    async with sessions() as session:
        stored = await SOURCE.get(session, "tasks", owner=owner, item_id=uuid.UUID(created["id"]))
        audit = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.request_id == response.headers["X-Request-ID"])
            )
        ).all()
    assert stored is not None and stored.wire() == created
    assert [(a.verb, a.resource, a.outcome, a.actor) for a in audit] == [
        ("resource.create", "tasks", "allowed", "admin")
    ]

    without_body = await client.post(
        "/api/admin/resources/notes", json={"ownerUserId": str(owner), "title": "n"}
    )
    assert without_body.status_code == 201
    assert without_body.json()["body"] == "" and without_body.json()["teamId"] is None


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"title": None}, "title: Field required"),
        ({"title": "x" * 201}, "title: String should have at most 200 characters"),
        ({"title": "   "}, "title: must be 1..200 characters, not all blank"),
        ({"body": "a\x00b"}, "body: must not contain NUL characters"),
        ({"ownerUserId": "nobody"}, "ownerUserId: "),
        ({"teamId": "a team"}, "teamId: "),
        ({"owner": "x"}, "owner: Extra inputs are not permitted"),
    ],
)
async def test_a_bad_body_is_a_422_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], detail: str
) -> None:
    body = {"ownerUserId": str(await _user(client)), "title": "t", **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post("/api/admin/resources/tasks", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail), response.text


async def test_an_unknown_owner_is_404_and_nothing_is_written(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    nobody = uuid.uuid4()
    response = await client.post(
        "/api/admin/resources/tasks", json={"ownerUserId": str(nobody), "title": "t"}
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "owner user not found"}
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Task).where(Task.owner_user_id == nobody)
        )
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.request_id == response.headers["X-Request-ID"])
        )
    assert count == 0 and audited == 0


@pytest.mark.parametrize("kind", ["widgets", "teams", "users", "TASKS"])
async def test_an_unknown_or_unserved_kind_is_404_before_the_body_is_read(
    client: httpx.AsyncClient, kind: str
) -> None:
    served = "unknown resource kind; served: credentials, notes, tasks"
    created = await client.post(f"/api/admin/resources/{kind}", json={"not": "a valid body"})
    listed = await client.get(f"/api/admin/resources/{kind}")
    assert (created.status_code, created.json()) == (404, {"detail": served})
    assert (listed.status_code, listed.json()) == (404, {"detail": served})
    anonymous = await client.get(f"/api/admin/resources/{kind}", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_api_pages_cover_an_owner_exactly_even_with_equal_timestamps_and_late_rows(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner, other = await _user(client), await _user(client)
    expected = await _insert(sessions, Note, owner, 23, per_instant=4)
    await _insert(sessions, Note, other, 5)

    first = await client.get("/api/admin/resources/notes", params={"owner": str(owner), "limit": 5})
    late = await client.post(
        "/api/admin/resources/notes", json={"ownerUserId": str(owner), "title": "late"}
    )
    rest, pages = await _walk_api(
        client, "notes", 5, owner=str(owner), cursor=first.headers["X-Next-Cursor"]
    )
    ids = [r["id"] for r in first.json() + rest]
    assert ids == [str(i) for i in expected] + [late.json()["id"]]
    assert pages == 4  # 19 after the first page: 5 + 5 + 5 + 4, no empty page at the end
    assert {r["ownerUserId"] for r in first.json() + rest} == {str(owner)}

    unlimited = await client.get("/api/admin/resources/notes", params={"owner": str(owner)})
    assert len(unlimited.json()) == 24 and "X-Next-Cursor" not in unlimited.headers


@pytest.mark.parametrize(
    "make_cursor",
    [
        lambda tasks_cursor, users_cursor: "not-base64-%%%",
        lambda tasks_cursor, users_cursor: tasks_cursor,  # of tasks, given to notes
        lambda tasks_cursor, users_cursor: users_cursor,  # of the user list
        lambda tasks_cursor, users_cursor: encode_cursor("notes", b"short"),
    ],
)
async def test_a_cursor_the_notes_list_did_not_make_is_a_422(
    client: httpx.AsyncClient, make_cursor: Any
) -> None:
    owner = await _user(client)
    for _ in range(2):
        await client.post(
            "/api/admin/resources/tasks", json={"ownerUserId": str(owner), "title": "t"}
        )
    tasks = await client.get("/api/admin/resources/tasks", params={"owner": str(owner), "limit": 1})
    users = await client.get("/api/admin/users", params={"limit": 1})
    cursor = make_cursor(tasks.headers["X-Next-Cursor"], users.headers["X-Next-Cursor"])
    response = await client.get(
        "/api/admin/resources/notes", params={"owner": str(owner), "cursor": cursor}
    )
    assert (response.status_code, response.json()) == (422, {"detail": NOT_A_CURSOR})


# --- the core source --------------------------------------------------------------


async def test_page_and_get_never_answer_another_users_rows(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ann, bob = await _user(client), await _user(client)
    ann_ids = await _insert(sessions, Credential, ann, 3)
    bob_ids = await _insert(sessions, Credential, bob, 3)
    async with sessions() as session:
        page = await SOURCE.page(session, "credentials", owner=ann, limit=10, cursor=None)
        assert [i.id for i in page.items] == ann_ids and page.next_cursor is None
        assert await SOURCE.get(session, "credentials", owner=ann, item_id=bob_ids[0]) is None
        assert await SOURCE.get(session, "credentials", owner=ann, item_id=uuid.uuid4()) is None
        mine = await SOURCE.get(session, "credentials", owner=bob, item_id=bob_ids[0])
        assert mine is not None and mine.owner_user_id == bob
        # Right id, wrong kind: a credential is not a note.
        assert await SOURCE.get(session, "notes", owner=bob, item_id=bob_ids[0]) is None

        # Ann's cursor, presented for Bob: refused, not reinterpreted.
        first = await SOURCE.page(session, "credentials", owner=ann, limit=1, cursor=None)
        assert first.next_cursor is not None
        with pytest.raises(InvalidInput, match=f"^{NOT_A_CURSOR}$"):
            await SOURCE.page(session, "credentials", owner=bob, limit=1, cursor=first.next_cursor)


async def test_a_cursor_of_another_kind_is_refused_and_unserved_kinds_are_not_found(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner = await _user(client)
    await _insert(sessions, Task, owner, 2)
    async with sessions() as session:
        tasks = await SOURCE.page(session, "tasks", owner=owner, limit=1, cursor=None)
        assert tasks.next_cursor is not None
        with pytest.raises(InvalidInput, match=f"^{NOT_A_CURSOR}$"):
            await SOURCE.page(session, "notes", owner=owner, limit=1, cursor=tasks.next_cursor)
        for bad_limit in (0, 10_001):
            with pytest.raises(InvalidInput, match="^limit: "):
                await SOURCE.page(session, "tasks", owner=owner, limit=bad_limit, cursor=None)
        for kind in ("teams", "users", "widgets"):
            assert not SOURCE.serves(kind)
            with pytest.raises(NotFound):
                await SOURCE.page(session, kind, owner=owner, limit=1, cursor=None)
            with pytest.raises(NotFound):
                await SOURCE.get(session, kind, owner=owner, item_id=uuid.uuid4())
        assert all(SOURCE.serves(k) for k in ("tasks", "notes", "credentials"))


async def test_create_refuses_text_too_long_or_unstorable_in_the_core(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner = await _user(client)
    args: dict[str, Any] = {"owner": owner, "team_id": None, "actor": "admin", "request_id": "r"}
    async with sessions() as session:
        # 64 KiB of UTF-8 exactly is fine; one byte more is not (2-byte characters).
        full = await SOURCE.create(session, "notes", title="t", body="é" * 32768, **args)
        assert len(full.body.encode()) == 65536
        with pytest.raises(InvalidInput, match="^body: "):
            await SOURCE.create(session, "notes", title="t", body="é" * 32768 + "x", **args)
        with pytest.raises(InvalidInput, match="^title: "):
            await SOURCE.create(session, "notes", title="x" * 201, body="", **args)
        with pytest.raises(InvalidInput, match="^title: .*NUL"):
            await SOURCE.create(session, "notes", title="a\x00", body="", **args)
        with pytest.raises(InvalidInput, match="^body: must be valid Unicode"):
            await SOURCE.create(session, "notes", title="t", body="a\ud800", **args)
    raw = f'{{"ownerUserId": "{owner}", "title": "Ann\\ud800"}}'.encode()
    response = await client.post(
        "/api/admin/resources/notes", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["detail"].startswith("title: ")


async def test_admin_list_without_owner_covers_the_table_once_grouped_by_owner(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for _ in range(3):
        await _insert(sessions, Credential, await _user(client), 7, per_instant=3)
    async with sessions() as session:
        everything = (
            (
                await session.execute(
                    select(Credential.id).order_by(
                        Credential.owner_user_id, Credential.created_at, Credential.id
                    )
                )
            )
            .scalars()
            .all()
        )
    items, pages = await _walk_core(sessions, "credentials", owner=None, limit=4)
    assert [i.id for i in items] == list(everything) and len(everything) >= 21
    assert pages == -(-len(everything) // 4)
    rows, _ = await _walk_api(client, "credentials", 5)
    assert [r["id"] for r in rows] == [str(i) for i in everything]


# --- query plans ------------------------------------------------------------------


@contextmanager
def _statements(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement run on ``engine`` meanwhile, with its driver parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def _pg_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _pg_nodes(child)


@dataclass
class Plan:
    # PostgreSQL: "<node> <index> <index condition>" per node; SQLite: its plan lines.
    lines: list[str]
    # PostgreSQL (EXPLAIN ANALYZE): rows the scans read, kept or filtered out.
    rows_read: int | None = None

    def uses(self, index: str) -> bool:
        return any(index in line for line in self.lines)

    @property
    def scans_the_table(self) -> bool:
        return any(re.match(r"(Seq Scan|SCAN tasks$)", line) for line in self.lines)


async def _plan(session: AsyncSession, statement: str, parameters: Any) -> Plan:
    """How the database runs ``statement``, with the parameters it was run with."""
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        result = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return Plan([str(row[-1]) for row in result.all()])
    result = await connection.exec_driver_sql(
        f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
    )
    plan = result.scalar_one()
    nodes = list(_pg_nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]))
    lines = [
        f"{n['Node Type']} {n.get('Index Name', '')} {n.get('Index Cond', '')}".strip()
        for n in nodes
    ]
    # A bitmap heap scan re-reads what its bitmap index scan found: counted once.
    read = sum(
        n["Actual Rows"] * n["Actual Loops"] + n.get("Rows Removed by Filter", 0)
        for n in nodes
        if n["Node Type"].endswith("Scan") and n["Node Type"] != "Bitmap Heap Scan"
    )
    return Plan(lines, read)


async def test_ten_thousand_rows_of_one_owner_page_by_100_along_the_owner_index(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    db_engine: AsyncEngine,
) -> None:
    owner, neighbour = await _user(client), await _user(client)
    expected = await _insert(sessions, Task, owner, 10_000, per_instant=7)
    await _insert(sessions, Task, neighbour, 500)
    async with sessions() as session:
        await session.execute(text("ANALYZE tasks"))
        await session.commit()

    items: list[ResourceItem] = []
    cursors: list[str | None] = [None]
    with _statements(db_engine) as seen:
        while True:
            async with sessions() as session:
                page = await SOURCE.page(
                    session, "tasks", owner=owner, limit=100, cursor=cursors[-1]
                )
            items += page.items
            if page.next_cursor is None:
                break
            cursors.append(page.next_cursor)
    assert [i.id for i in items] == expected and len(cursors) == 100
    pages = [(s, p) for s, p in seen if "FROM tasks" in s]
    assert len(pages) == 100

    with _statements(db_engine) as seen:
        async with sessions() as session:
            found = await SOURCE.get(session, "tasks", owner=owner, item_id=expected[-1])
            await SOURCE.admin_page(session, "tasks", owner=None, limit=100, cursor=None)
            # From inside the big owner: the rest of it, then the owners after it.
            spanning = await SOURCE.admin_page(
                session, "tasks", owner=None, limit=200, cursor=cursors[99]
            )
    assert found is not None and spanning.items[:100] == items[9900:]
    get, *admin_pages = [(s, p) for s, p in seen if "FROM tasks" in s]
    assert len(admin_pages) == 3

    async with sessions() as session:
        postgres = session.bind.dialect.name == "postgresql"
        for statement, parameters in [pages[0], pages[50], pages[-1], *admin_pages]:
            plan = await _plan(session, statement, parameters)
            assert plan.uses("ix_tasks_owner_keyset") and not plan.scans_the_table, plan
            assert not any("TEMP B-TREE" in line for line in plan.lines), plan
            if postgres:
                # However deep the page: about one page of index entries, none skipped over.
                assert plan.rows_read is not None and plan.rows_read <= 2 * 201, plan
        deep = await _plan(session, *pages[50])
        bound = "created_at >=" if postgres else "created_at>?"
        assert any(bound in line for line in deep.lines), deep  # starts at the cursor
        by_key = await _plan(session, *get)
        assert by_key.uses("tasks_pkey" if postgres else "sqlite_autoindex_tasks_1"), by_key


# --- the real CLI -----------------------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
async def api_url(settings: Settings) -> AsyncIterator[str]:
    """The admin API of this lane on a real port, for the `mosaic` executable."""
    app = create_app(settings)
    server = UvicornServer(app, free_port())
    await server.start()
    yield f"http://127.0.0.1:{server.port}"
    await server.stop()
    await app.state.gateway.close()


async def _mosaic(api_url: str, home: Path, *args: str, stdin: bytes | None = None) -> Run:
    env = clean_env(home, MOSAIC_API_URL=api_url, MOSAIC_ADMIN_TOKEN=ADMIN_TOKEN)
    process = await asyncio.create_subprocess_exec(
        MOSAIC,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def test_cli_creates_and_lists_resources_with_tables_json_and_exit_codes(
    client: httpx.AsyncClient, api_url: str, tmp_path: Path
) -> None:
    owner = str(await _user(client))
    team = str(uuid.uuid4())
    created = await _mosaic(
        api_url, tmp_path, "resource", "create", "tasks", "--owner", owner,
        "--title", "Renew the lease", "--body", "before March", "--team", team, "--json",
    )  # fmt: skip
    assert created.code == 0, created.err
    task = json.loads(created.out)
    assert (task["ownerUserId"], task["title"], task["teamId"]) == (owner, "Renew the lease", team)

    secret = await _mosaic(
        api_url, tmp_path, "resource", "create", "credentials", "--owner", owner,
        "--title", "Staging database", "--body", "-", stdin=b"user: ann\npassword: hunter2\n",
    )  # fmt: skip
    assert secret.code == 0, secret.err
    assert re.search(r"^body\s+user: ann\\x0apassword: hunter2\\x0a$", secret.out, re.M), secret.out
    stored = (await client.get("/api/admin/resources/credentials", params={"owner": owner})).json()
    assert [c["body"] for c in stored] == ["user: ann\npassword: hunter2\n"]

    listed = await _mosaic(api_url, tmp_path, "resource", "list", "tasks", "--owner", owner)
    assert listed.code == 0, listed.err
    header, row = listed.out.splitlines()
    assert header.split() == ["ID", "TITLE", "OWNER", "CREATED"]
    assert row.startswith(task["id"]) and "Renew the lease" in row and "next:" not in listed.err
    assert all(len(line) <= 100 for line in listed.out.splitlines())

    wide = await _mosaic(api_url, tmp_path, "resource", "list", "tasks", "--owner", owner, "--wide")
    assert "TEAM" in wide.out and team in wide.out and "before March" in wide.out

    missing_owner = await _mosaic(
        api_url, tmp_path, "resource", "create", "notes", "--owner", str(uuid.uuid4()),
        "--title", "t",
    )  # fmt: skip
    assert missing_owner.code == 3 and "404: owner user not found" in missing_owner.err
    unknown = await _mosaic(api_url, tmp_path, "resource", "list", "teams")
    assert unknown.code == 3 and "404: unknown resource kind; served: " in unknown.err
    too_long = await _mosaic(
        api_url, tmp_path, "resource", "create", "notes", "--owner", owner, "--title", "x" * 201
    )
    assert too_long.code == 5 and "422: --title: " in too_long.err
    not_a_kind = await _mosaic(api_url, tmp_path, "resource", "list", "../users")
    assert not_a_kind.code == 2 and "is not a resource kind" in not_a_kind.err
    not_a_uuid = await _mosaic(api_url, tmp_path, "resource", "list", "notes", "--owner", "ann")
    assert not_a_uuid.code == 2 and "'ann' is not a UUID" in not_a_uuid.err


async def test_cli_pages_an_owners_rows_with_nothing_repeated_or_lost(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    api_url: str,
    tmp_path: Path,
) -> None:
    owner = await _user(client)
    expected = await _insert(sessions, Note, owner, 11, per_instant=2)
    args = ["resource", "list", "notes", "--owner", str(owner), "--limit", "4", "--json"]
    rows: list[dict[str, Any]] = []
    pages = 0
    while True:
        done = await _mosaic(api_url, tmp_path, *args)
        assert done.code == 0, (args, done.err)
        rows += json.loads(done.out)
        pages += 1
        hint = re.search(r"^next: (.+)$", done.err, re.MULTILINE)
        if hint is None:
            break
        command = shlex.split(hint.group(1))
        assert command[0] == "mosaic" and command[-2] == "--cursor"
        args = command[1:]
    assert [r["id"] for r in rows] == [str(i) for i in expected] and pages == 3

    crossed = await _mosaic(
        api_url, tmp_path, "resource", "list", "tasks", "--owner", str(owner), "--cursor",
        args[-1],
    )  # fmt: skip
    assert crossed.code == 5 and "422: --cursor: not a cursor of this list" in crossed.err
