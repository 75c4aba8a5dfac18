"""``mosaic``: the gateway's command line. Admin commands drive the REST API."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from api.cli.admin import federation, user
from api.cli.ca import ca
from api.cli.client import DEFAULT_API_URL, ApiClient, find_admin_token
from api.cli.demo import demo
from api.cli.gateway import gateway
from api.cli.keys import keys
from api.cli.temporal import temporal
from federation.settings import ConfigurationError


@click.group()
@click.option("--api-url", envvar="MOSAIC_API_URL", default=DEFAULT_API_URL, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def cli(ctx: click.Context, api_url: str, as_json: bool) -> None:
    """Mosaic federation gateway."""
    data_dir = Path(os.environ.get("MOSAIC_DATA_DIR", ".mosaic"))
    ctx.obj = ApiClient(base_url=api_url, token=find_admin_token(data_dir), as_json=as_json)


@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to DATABASE_URL (default: SQLite in the data dir)."""
    from federation.db.migrate import upgrade

    url = os.environ.get("DATABASE_URL") or _default_sqlite_url()
    upgrade(url, revision)
    click.echo(f"database at {url.split('@')[-1]} is at revision {revision}")


def _default_sqlite_url() -> str:
    data_dir = Path(os.environ.get("MOSAIC_DATA_DIR", ".mosaic"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{(data_dir / 'mosaic.db').resolve()}"


cli.add_command(user)
federation.add_command(keys)
cli.add_command(federation)
cli.add_command(gateway)
cli.add_command(ca)
cli.add_command(demo)
cli.add_command(temporal)


def main() -> None:
    try:
        cli(prog_name="mosaic")
    except ConfigurationError as exc:  # one line naming the setting, not a traceback
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
