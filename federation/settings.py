"""All configuration, read once from the environment (see README: Settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from federation.db.urls import checked_database_url


class Settings(BaseSettings):
    """Every variable is documented in README.md; names are the environment names."""

    # An empty variable means "the default": the compose file passes every setting through
    # as ${NAME:-}, so one left empty in .env must not override anything.
    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", env_ignore_empty=True
    )

    mosaic_data_dir: Path = Path(".mosaic")
    database_url: str = ""
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    # "" = derived from the gateway identity: mosaic-<12 hex> (federation/identity.py).
    mosaic_task_queue: str = ""
    # Required secrets: no defaults, a missing one stops start-up with a clear message.
    mosaic_admin_token: SecretStr
    better_auth_secret: SecretStr
    mosaic_public_url: str = "http://127.0.0.1:8080"
    mosaic_ca: Literal["builtin", "step-ca"] = "builtin"
    step_ca_url: str = ""
    step_ca_provisioner_key_json: SecretStr = SecretStr("")
    step_ca_root_cert_path: str = ""
    # How long one enrollment request waits for its workflow before answering 503.
    mosaic_enroll_wait_seconds: float = Field(default=15.0, gt=0, le=120)
    # How long the CA step keeps retrying before the saga compensates.
    mosaic_ca_retry_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Requesting side (peer add): plain http only to loopback, and only when allowed (dev).
    mosaic_enroll_allow_http_loopback: bool = False
    # Optional CA bundle that pins the remote gateway's TLS (default: system trust store).
    mosaic_enroll_ca_bundle: str = ""
    # How long peer add keeps retrying the submit (remote down, 503) before it fails.
    mosaic_enroll_submit_seconds: float = Field(default=300.0, gt=0, le=86400)
    # Per client address, on /api/federation/enrollment/* only (token bucket, in memory).
    mosaic_enroll_rate_per_minute: int = Field(default=60, ge=1)
    mosaic_enroll_burst: int = Field(default=20, ge=1)
    # Any request body above this is refused with 413 (Content-Length or streamed).
    mosaic_max_body_bytes: int = Field(default=65536, ge=1024)
    # Logs: "text" for people, "json" (one object per line, with request ids) for machines.
    mosaic_log_format: Literal["text", "json"] = "text"
    # Where the worker serves the Temporal SDK's Prometheus metrics ("" = off), e.g. 0.0.0.0:9464.
    mosaic_worker_metrics_address: str = ""
    # The reconcile schedule: how often it runs, and what it considers abandoned.
    mosaic_reconcile_seconds: float = Field(default=60.0, ge=1, le=86400)
    mosaic_grant_max_age_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    mosaic_reconcile_grace_seconds: float = Field(default=120.0, ge=0)

    # --- certificates (B): lifetime of every client certificate the CA signs, and how long
    # a certificate superseded by a renewal stays accepted so requests in flight finish.
    mosaic_cert_lifetime_seconds: int = Field(default=24 * 3600, ge=60, le=90 * 24 * 3600)
    mosaic_renew_overlap_seconds: int = Field(default=300, ge=0, le=24 * 3600)

    # --- federation listener (B): mTLS, client certificate required, B's CA only.
    # host:port to listen on ("" = not served by `gateway run`/`api`; `gateway dev` uses
    # 127.0.0.1:8443). Without TLS_CERT/TLS_KEY the listener gets a server certificate
    # for localhost/127.0.0.1 from the built-in CA.
    mosaic_federation_listen: str = ""
    mosaic_federation_tls_cert: str = ""
    mosaic_federation_tls_key: str = ""
    # The listener's URL as remote gateways reach it (told to A in the enrollment answers).
    mosaic_federation_public_url: str = ""
    # Addresses (IPs or CIDRs, comma-separated) whose RFC 9440 Client-Cert header is
    # believed: a TLS-terminating proxy. Empty = never.
    mosaic_federation_trusted_proxies: str = ""

    # --- requesting side (A): the remote is not trusted.
    # Largest remote answer read (streamed); above it the answer is refused at once.
    mosaic_remote_max_bytes: int = Field(default=65536, ge=4096, le=16 * 1024 * 1024)
    # Networks (CIDRs, comma-separated) an https enrollment URL may resolve to although they
    # are private, link-local or loopback. Empty = public addresses only.
    mosaic_enroll_allowed_networks: str = ""
    # After MOSAIC_ENROLL_SUBMIT_SECONDS of transient failures, peer add keeps its key and
    # retries slowly this much longer, because the remote may still be activating.
    mosaic_enroll_patience_seconds: float = Field(default=24 * 3600, ge=0, le=30 * 86400)

    # --- sockets: every listener of the gateway.
    mosaic_max_connections: int = Field(default=1000, ge=16)
    mosaic_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    mosaic_body_timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    @field_validator("mosaic_admin_token", "better_auth_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_database(cls, value: str) -> str:
        # postgresql:// and postgres:// mean asyncpg: the same rule as the engine and Alembic.
        return checked_database_url(value) if value else value

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or "/" in value or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:7233")
        return value

    @model_validator(mode="after")
    def _step_ca_complete(self) -> Settings:
        if self.mosaic_ca == "step-ca":
            missing = [
                name
                for name, value in (
                    ("STEP_CA_URL", self.step_ca_url),
                    (
                        "STEP_CA_PROVISIONER_KEY_JSON",
                        self.step_ca_provisioner_key_json.get_secret_value(),
                    ),
                    ("STEP_CA_ROOT_CERT_PATH", self.step_ca_root_cert_path),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"MOSAIC_CA=step-ca needs {', '.join(missing)}")
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.mosaic_data_dir / 'mosaic.db').resolve()}"

    @property
    def federation_url(self) -> str | None:
        """Where remote peers reach the federation listener: the public URL when set,
        else the listener's own address; None when this gateway serves no listener."""
        if self.mosaic_federation_public_url:
            return self.mosaic_federation_public_url.rstrip("/")
        if self.mosaic_federation_listen:
            return f"https://{self.mosaic_federation_listen}"
        return None

    @property
    def builtin_ca_dir(self) -> Path:
        return self.mosaic_data_dir / "ca"


# Settings that may instead be read from a file named by <NAME>_FILE (the Docker and
# Kubernetes secrets convention): the secrets, and the database URL with its password.
SECRET_FILE_SETTINGS = (
    "MOSAIC_ADMIN_TOKEN",
    "BETTER_AUTH_SECRET",
    "STEP_CA_PROVISIONER_KEY_JSON",
    "DATABASE_URL",
)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning a validation error into one readable line."""
    from pydantic import ValidationError

    values = {**secrets_from_files(os.environ), **overrides}
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            if err["type"] == "missing" and field in SECRET_FILE_SETTINGS:
                problems.append(f"{field}: required (or {field}_FILE, a file holding it)")
            else:
                problems.append(f"{field}: {err['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None


def secrets_from_files(
    environ: Mapping[str, str], names: tuple[str, ...] = SECRET_FILE_SETTINGS
) -> dict[str, str]:
    """The values of ``names`` given as <NAME>_FILE: read once, trailing line breaks
    dropped. Naming both a value and a file, or a file that cannot be read, is a
    ConfigurationError naming the variable (never the content)."""
    named = {key.upper(): value for key, value in environ.items() if value}
    found: dict[str, str] = {}
    for name in names:
        path = named.get(f"{name}_FILE")
        if path is None:
            continue
        if name in named:
            raise ConfigurationError(f"{name} and {name}_FILE are both set: keep one")
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigurationError(
                f"{name}_FILE: cannot read {path}: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"{name}_FILE: {path} is not UTF-8 text") from None
        if not value:
            raise ConfigurationError(f"{name}_FILE: {path} is empty")
        found[name.lower()] = value
    return found


class ConfigurationError(RuntimeError):
    pass
