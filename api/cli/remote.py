"""``mosaic federation peer call|list|get``: this gateway calls a peer's remote over mTLS.

The admin API makes the call (``POST /api/admin/federation/peers/{id}/requests``), as
that peer; the key never leaves the gateway. A refusal is one line naming its class,
with an exit code per class: TLS refused 8, 401 → 7, 403 (or revoked) → 5, 404 → 3,
unreachable or busy → 6.
"""

from __future__ import annotations

import re
from typing import Any

import click

from api.cli import exits
from api.cli.client import ApiClient, pass_api
from api.cli.main import example
from api.cli.options import UUID, output_options
from api.cli.output import Column

PEER = "59d73628-eec7-4a00-8ee6-a5556ab3e352"
ITEM = "0b8e4d5c-1f7a-4c55-9a53-2f0e6f1d7c11"
_RESOURCE = re.compile(r"[a-z_]{1,40}")
ITEM_COLUMNS = [
    Column("id", "ID", keep=True),
    Column("title", "TITLE"),
    Column("createdAt", "CREATED", keep=True),
]
ITEM_WIDE_COLUMNS = [*ITEM_COLUMNS, Column("teamId", "TEAM"), Column("body", "BODY")]


def _resource(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not _RESOURCE.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a resource name (tasks, notes, …)")
    return value


resource_argument = click.argument("resource", callback=_resource)


def call_remote(api: ApiClient, peer_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """The remote's JSON answer, or exit with the code of the refusal's class."""
    answer = api.call("POST", f"/api/admin/federation/peers/{peer_id}/requests", json=request)
    if not isinstance(answer, dict):
        raise exits.CliError("the gateway answered something other than an object")
    return answer


@click.command(
    "call",
    epilog=example(f"mosaic federation peer call {PEER} capabilities"),
)
@click.argument("peer_id", metavar="PEER_ID", type=UUID)
@click.argument("verb", type=click.Choice(["capabilities"]))
@output_options
@pass_api
def peer_call(api: ApiClient, peer_id: str, verb: str) -> None:
    """Ask the peer's remote what this peer may do (its grant, user, scope and verbs)."""
    api.show(call_remote(api, peer_id, {"verb": verb}))


@click.command(
    "list",
    epilog=example(
        f"mosaic federation list {PEER} tasks",
        f"mosaic federation list {PEER} notes --limit 20",
        f"mosaic federation list {PEER} tasks --all --json",
    ),
)
@click.argument("peer_id", metavar="PEER_ID", type=UUID)
@resource_argument
@click.option("--limit", type=click.IntRange(1, 10000), help="rows per page (the grant caps it)")
@click.option("--cursor", default=None, help="go on from where a previous page ended")
@click.option("--all", "every", is_flag=True, help="follow the cursor to the last page")
@output_options
@pass_api
def federation_list(
    api: ApiClient, peer_id: str, resource: str, limit: int | None, cursor: str | None, every: bool
) -> None:
    """List the remote's rows of RESOURCE that this peer's grant lets it see."""
    rows: list[dict[str, Any]] = []
    while True:
        page = call_remote(
            api,
            peer_id,
            {"verb": "list", "resource": resource, "limit": limit, "cursor": cursor},
        )
        items = page.get("items")
        if not isinstance(items, list):
            raise exits.CliError("the remote's answer has no list of items")
        rows += [item for item in items if isinstance(item, dict)]
        cursor = page.get("nextCursor") if isinstance(page.get("nextCursor"), str) else None
        if not (every and cursor):
            break
    api.show_page(rows, ITEM_WIDE_COLUMNS if api.wide else ITEM_COLUMNS, cursor)


@click.command(
    "get",
    epilog=example(f"mosaic federation get {PEER} tasks {ITEM}"),
)
@click.argument("peer_id", metavar="PEER_ID", type=UUID)
@resource_argument
@click.argument("item_id", metavar="ID", type=UUID)
@output_options
@pass_api
def federation_get(api: ApiClient, peer_id: str, resource: str, item_id: str) -> None:
    """Show one row of RESOURCE from the peer's remote."""
    api.show(call_remote(api, peer_id, {"verb": "get", "resource": resource, "id": item_id}))


@click.command(
    "renew",
    epilog=example(
        f"mosaic federation peer renew {PEER}",
        f"mosaic federation peer show {PEER}    # lifecycle: state, serial, nextRenewalAt",
    ),
)
@click.argument("peer_id", metavar="PEER_ID", type=UUID)
@output_options
@pass_api
def peer_renew(api: ApiClient, peer_id: str) -> None:
    """Renew this peer's certificate now (a fresh key, over mTLS), rather than at its
    renewal point; its lifecycle run does it and `peer show` follows it."""
    api.show(api.call("POST", f"/api/admin/federation/peers/{peer_id}/renew"))
