"""``mosaic user create|list``."""

from __future__ import annotations

import click

from api.cli.client import ApiClient, pass_api
from api.cli.main import example
from api.cli.options import output_options, paging_options
from api.cli.output import Column

USER_COLUMNS = [
    Column("id", "ID", keep=True),
    Column("name", "NAME"),
    Column("email", "EMAIL"),
    Column("createdAt", "CREATED", keep=True),
]


@click.group(
    epilog=example("mosaic user list", "mosaic user create --name Ann --email ann@mosaic.local")
)
def user() -> None:
    """Users of this gateway; a grant acts for one of them."""


@user.command(
    "create", epilog=example('mosaic user create --name "Ann Example" --email ann@mosaic.local')
)
@click.option("--name", required=True, help="the person's name, as shown in lists")
@click.option(
    "--email", required=True, help="unique; internal domains (.local, localhost) are fine"
)
@output_options
@pass_api
def user_create(api: ApiClient, name: str, email: str) -> None:
    """Register a user (409 if the email is taken)."""
    api.show(api.call("POST", "/api/admin/users", json={"name": name, "email": email}))


@user.command("list", epilog=example("mosaic user list", "mosaic user list --limit 20 --json"))
@paging_options(default=100)
@output_options
@pass_api
def user_list(api: ApiClient, limit: int, cursor: str | None) -> None:
    """List users, oldest first."""
    rows, next_cursor = api.list_page("/api/admin/users", {}, limit, cursor)
    api.show_page(rows, USER_COLUMNS, next_cursor)
