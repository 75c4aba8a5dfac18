"""``mosaic federation keys reseal``: re-seal every sealed blob after rotating the secret."""

from __future__ import annotations

from pathlib import Path

import click

from api.cli.aio import run_async
from api.cli.main import example


@click.group(epilog=example("mosaic federation keys reseal --old-secret-file old-secret"))
def keys() -> None:
    """Sealed peer keys (AES-256-GCM under BETTER_AUTH_SECRET)."""


@keys.command(
    "reseal", epilog=example("mosaic federation keys reseal --old-secret-file old-secret")
)
@click.option(
    "--old-secret-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="file holding the previous BETTER_AUTH_SECRET",
)
def reseal(old_secret_file: Path) -> None:
    """Open every sealed key and URL with the old secret, seal it with the current one.

    Works on DATABASE_URL directly (stop the worker first). Safe to rerun:
    blobs already under the current secret are left alone.
    """
    from federation.db.session import make_engine, make_sessionmaker
    from federation.sealing import SealedBlobError, Sealer
    from federation.secret_rotation import reseal_all
    from federation.settings import load_settings

    settings = load_settings()
    old = Sealer(old_secret_file.read_text().strip())
    new = Sealer(settings.better_auth_secret.get_secret_value())

    async def run() -> int:
        engine = make_engine(settings.effective_database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                return await reseal_all(session, old=old, new=new)
        finally:
            await engine.dispose()

    try:
        count = run_async(run())
    except SealedBlobError as exc:
        raise click.ClickException(f"nothing changed: {exc}") from None
    click.echo(f"re-sealed {count} blob(s) from key {old.key_id} to key {new.key_id}")
