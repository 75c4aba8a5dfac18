"""Secrets from files: <NAME>_FILE, the Docker and Kubernetes secrets convention."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.settings import ConfigurationError, load_settings

TOKEN = "token-from-a-docker-secret-0123"
SEALING = "sealing-from-a-docker-secret-0123"


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MOSAIC_ADMIN_TOKEN", "BETTER_AUTH_SECRET", "DATABASE_URL", "MOSAIC_CA"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    return monkeypatch


def test_secrets_are_read_from_the_files_named_by_their_file_variables(
    clean: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "sealing").write_text(SEALING)
    (tmp_path / "db").write_text("postgresql://mosaic:pw@db:5432/mosaic\r\n")
    clean.setenv("MOSAIC_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    clean.setenv("BETTER_AUTH_SECRET_FILE", str(tmp_path / "sealing"))
    clean.setenv("DATABASE_URL_FILE", str(tmp_path / "db"))

    settings = load_settings()

    assert settings.mosaic_admin_token.get_secret_value() == TOKEN
    assert settings.better_auth_secret.get_secret_value() == SEALING
    assert settings.database_url == "postgresql+asyncpg://mosaic:pw@db:5432/mosaic"


def test_a_secret_given_both_ways_is_refused_without_showing_it(
    clean: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(TOKEN)
    clean.setenv("MOSAIC_ADMIN_TOKEN", TOKEN)
    clean.setenv("MOSAIC_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    clean.setenv("BETTER_AUTH_SECRET", SEALING)

    with pytest.raises(ConfigurationError) as refused:
        load_settings()

    assert str(refused.value) == (
        "MOSAIC_ADMIN_TOKEN and MOSAIC_ADMIN_TOKEN_FILE are both set: keep one"
    )


def test_a_missing_secret_names_its_file_variable_too(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("BETTER_AUTH_SECRET", SEALING)

    with pytest.raises(ConfigurationError) as refused:
        load_settings()

    assert "MOSAIC_ADMIN_TOKEN: required (or MOSAIC_ADMIN_TOKEN_FILE" in str(refused.value)


def test_an_empty_variable_means_the_default(clean: pytest.MonkeyPatch) -> None:
    """The compose file passes every setting as ${NAME:-}: empty must not override."""
    clean.setenv("MOSAIC_ADMIN_TOKEN", TOKEN)
    clean.setenv("BETTER_AUTH_SECRET", SEALING)
    clean.setenv("MOSAIC_ENROLL_RATE_PER_MINUTE", "")
    clean.setenv("MOSAIC_LOG_FORMAT", "")

    settings = load_settings()

    assert settings.mosaic_enroll_rate_per_minute == 60
    assert settings.mosaic_log_format == "text"
