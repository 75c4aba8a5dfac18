"""``mosaic db upgrade``: apply the schema migrations."""

from __future__ import annotations

import os
from pathlib import Path

import click

from api.cli.main import example


@click.group(epilog=example("mosaic db upgrade"))
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade", epilog=example("mosaic db upgrade", "mosaic db upgrade --revision 0003"))
@click.option("--revision", default="head", show_default=True, help="the revision to reach")
def db_upgrade(revision: str) -> None:
    """Apply migrations to DATABASE_URL (default: SQLite in the data dir).

    Reads DATABASE_URL and MOSAIC_DATA_DIR like the gateway does; running it
    again changes nothing.
    """
    from federation.db.migrate import upgrade
    from federation.settings import secrets_from_files

    from_file = secrets_from_files(os.environ, ("DATABASE_URL",)).get("database_url")
    url = from_file or os.environ.get("DATABASE_URL") or _default_sqlite_url()
    upgrade(url, revision)
    click.echo(f"database at {url.split('@')[-1]} is at revision {revision}")


def _default_sqlite_url() -> str:
    data_dir = Path(os.environ.get("MOSAIC_DATA_DIR", ".mosaic"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{(data_dir / 'mosaic.db').resolve()}"
