"""Migrations, not create_all: they reach head, match the models, and go back down."""

from __future__ import annotations

from pathlib import Path

from alembic import command

from federation.db.migrate import alembic_config, upgrade


def test_migrations_match_the_models_and_downgrade_cleanly(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    command.check(alembic_config(url))  # raises if the models drifted from the migrations
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
