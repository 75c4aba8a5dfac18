"""``mosaic resource create|list``: the rows this gateway serves over federation."""

from __future__ import annotations

import re
import sys

import click

from api.cli.client import ApiClient, pass_api
from api.cli.main import example
from api.cli.options import UUID, drop_none, output_options, paging_options
from api.cli.output import Column

RESOURCES = "/api/admin/resources"
# The server says which kinds it serves (404 otherwise); this only keeps the URL a URL.
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,49}")
RESOURCE_COLUMNS = [
    Column("id", "ID", keep=True),
    Column("title", "TITLE"),
    Column("ownerUserId", "OWNER"),
    Column("createdAt", "CREATED", keep=True),
]
RESOURCE_WIDE_COLUMNS = [
    *RESOURCE_COLUMNS,
    Column("teamId", "TEAM"),
    Column("updatedAt", "UPDATED", keep=True),
    Column("body", "BODY"),
]
OWNER = "59d73628-eec7-4a00-8ee6-a5556ab3e352"


def _kind(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not _KIND.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a resource kind (tasks, notes, credentials)")
    return value


kind_argument = click.argument("kind", metavar="KIND", callback=_kind)


@click.group(
    epilog=example(
        f"mosaic resource create tasks --owner {OWNER} --title 'Renew the lease'",
        f"mosaic resource list tasks --owner {OWNER}",
    )
)
def resource() -> None:
    """Rows this gateway serves over federation: tasks, notes, credentials."""


@resource.command(
    "create",
    epilog=example(
        f"mosaic resource create tasks --owner {OWNER} --title 'Renew the lease' \\",
        "    --body 'before March' --team 0b8e4d5c-1f7a-4c55-9a53-2f0e6f1d7c11",
        f"mosaic resource create credentials --owner {OWNER} \\",
        "    --title 'Staging database' --body - < staging-db.txt",
    ),
)
@kind_argument
@click.option(
    "--owner", "owner_id", type=UUID, required=True, help="the user who owns it (`user list`)"
)
@click.option("--title", required=True, help="1..200 characters")
@click.option(
    "--body",
    default=None,
    help="free text, at most 64 KiB; `-` reads it from stdin (default: empty)",
)
@click.option("--team", "team_id", type=UUID, default=None, help="a team to tag it with (a UUID)")
@output_options
@pass_api
def resource_create(
    api: ApiClient, kind: str, owner_id: str, title: str, body: str | None, team_id: str | None
) -> None:
    """Add a row of KIND (tasks, notes, credentials) owned by a user."""
    if body == "-":
        # Keeps a credential out of the shell's history.
        body = sys.stdin.read()
    payload = drop_none(ownerUserId=owner_id, title=title, body=body, teamId=team_id)
    api.show(api.call("POST", f"{RESOURCES}/{kind}", json=payload))


@resource.command(
    "list",
    epilog=example(
        f"mosaic resource list tasks --owner {OWNER}",
        "mosaic resource list notes --limit 20 --json",
    ),
)
@kind_argument
@click.option(
    "--owner",
    "owner_id",
    type=UUID,
    default=None,
    help="only this user's rows, oldest first (default: everyone's, grouped by owner)",
)
@paging_options(default=100)
@output_options
@pass_api
def resource_list(
    api: ApiClient, kind: str, owner_id: str | None, limit: int, cursor: str | None
) -> None:
    """List rows of KIND (tasks, notes, credentials)."""
    rows, next_cursor = api.list_page(
        f"{RESOURCES}/{kind}", drop_none(owner=owner_id), limit, cursor
    )
    api.show_page(rows, RESOURCE_WIDE_COLUMNS if api.wide else RESOURCE_COLUMNS, next_cursor)
