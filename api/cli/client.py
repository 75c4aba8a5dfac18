"""The CLI's view of the admin API: one httpx client, one-line errors, tables or JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

DEFAULT_API_URL = "http://127.0.0.1:8080"


def find_admin_token(data_dir: Path) -> str | None:
    """``MOSAIC_ADMIN_TOKEN`` wins; in dev the token lives in ``<data dir>/admin-token``."""
    token = os.environ.get("MOSAIC_ADMIN_TOKEN")
    if token:
        return token
    path = data_dir / "admin-token"
    if path.is_file():
        return path.read_text().strip()
    return None


@dataclass
class ApiClient:
    base_url: str
    token: str | None
    as_json: bool

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API; on failure exit non-zero with the server's one-line reason."""
        if not self.token:
            raise click.ClickException(
                "no admin token: set MOSAIC_ADMIN_TOKEN or run inside the gateway's data dir"
            )
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = httpx.request(
                method, self.base_url.rstrip("/") + path, headers=headers, timeout=60, **kwargs
            )
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise click.ClickException(f"{response.status_code}: {detail}")
        return response.json() if response.content else None

    def show(self, data: Any, columns: list[str]) -> None:
        """Print JSON for scripts (``--json``) or a table for people."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        rows = data if isinstance(data, list) else [data]
        if isinstance(data, dict) and not isinstance(data, list):
            width = max(len(k) for k in data) if data else 0
            for key, value in data.items():
                click.echo(f"{key:<{width}}  {_cell(value)}")
            return
        table = [[_cell(row.get(c)) for c in columns] for row in rows]
        widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
        click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
        for r in table:
            click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
        if not rows:
            click.echo("(none)")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


pass_api = click.make_pass_decorator(ApiClient)
