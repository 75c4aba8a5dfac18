"""The CLI's view of the admin API: one httpx client, one-line errors with exit codes.

Imports click, httpx and the standard library only, so that every admin command
starts about as fast as ``import httpx, click`` (issue 13; ``python -m bench.cli``).
"""

from __future__ import annotations

import os
import re
import shlex
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from api.cli import exits
from api.cli.discovery import Target, find_target
from api.cli.http import httpx
from api.cli.output import Column, as_json, echo_lines, fields, safe, table

# Names the server uses for fields (body aliases, query names, snake_case) and the
# option or argument a person typed for them.
OPTION_OF_FIELD = {
    "subjectUserId": "--user",
    "subject_user_id": "--user",
    "peerId": "--peer",
    "peer_id": "--peer",
    "peer": "--peer",
    "grant": "--grant",
    "grant_id": "--grant",
    "commonName": "--cn",
    "common_name": "--cn",
    "displayName": "--display-name",
    "display_name": "--display-name",
    "endpointUrl": "--endpoint",
    "endpoint_url": "--endpoint",
    "enrollmentUrl": "ENROLLMENT_URL",
    "enrollment_url": "ENROLLMENT_URL",
    "ttlSeconds": "--ttl",
    "ttl_seconds": "--ttl",
    "scope": "--scope",
    "reason": "--reason",
    "name": "--name",
    "email": "--email",
    "state": "--state",
    "status": "--status",
    "outcome": "--outcome",
    "limit": "--limit",
    "cursor": "--cursor",
    "ownerUserId": "--owner",
    "owner_user_id": "--owner",
    "owner": "--owner",
    "teamId": "--team",
    "team_id": "--team",
    "title": "--title",
    "body": "--body",
}
_FIELD_PREFIX = re.compile(r"([A-Za-z_]+)([.: ])")
_PLAIN_MESSAGES = (("Input should be a valid UUID", "not a UUID"),)


def option_names(detail: str) -> str:
    """A 422 reason with its leading field named as the CLI option (``--peer: not a UUID``)."""
    match = _FIELD_PREFIX.match(detail)
    if match and match.group(1) in OPTION_OF_FIELD:
        name, sep = match.groups()
        rest = detail[match.end() :]
        # "peer is revoked" is English; "enrollmentUrl must be …" names a field.
        if sep == ".":
            detail = f"{OPTION_OF_FIELD[name]}: {rest}"
        elif sep == ":" or name != name.lower() or "_" in name:
            detail = f"{OPTION_OF_FIELD[name]}{sep}{rest}"
    for prefix, plain in _PLAIN_MESSAGES:
        head, found, _ = detail.partition(prefix)
        if found:
            detail = head + plain
    return detail


@dataclass
class ApiClient:
    """Settings from the root options; the target and connection are made on first call."""

    api_url: str | None = None
    data_dir: Path | None = None
    ca_file: Path | None = None
    output: str = "table"
    _target: Target | None = None
    _http: httpx.Client | None = field(default=None, repr=False)

    @property
    def as_json(self) -> bool:
        return self.output == "json"

    @property
    def wide(self) -> bool:
        return self.output == "wide"

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = find_target(
                api_url=self.api_url, data_dir=self.data_dir, environ=os.environ, cwd=Path.cwd()
            )
        return self._target

    def _client(self) -> httpx.Client:
        if self._http is None:
            base = self.target.api_url.rstrip("/")
            # Plain http needs no TLS context; building one (certifi) costs 60 ms.
            verify: ssl.SSLContext | bool = False
            if base.startswith("https:"):
                verify = ssl.create_default_context(
                    cafile=str(self.ca_file) if self.ca_file else None
                )
            self._http = httpx.Client(base_url=base, verify=verify, timeout=60)
        return self._http

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the API; on failure exit with the table's code and one line."""
        target = self.target
        if not target.token:
            raise exits.CliError(
                f"no admin token for {target.api_url}; tried:\n  "
                + "\n  ".join(target.tried)
                + "\nPass --data-dir (the gateway's data dir) or set MOSAIC_ADMIN_TOKEN.",
                exits.UNAUTHENTICATED,
            )
        headers = {"Authorization": f"Bearer {target.token}"}
        try:
            response = self._client().request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(target.api_url, exc) from None
        if not _is_json(response):
            kind = response.headers.get("content-type") or "without a content type"
            raise _not_the_api(target.api_url, f"{path} answered {response.status_code} {kind}")
        if response.status_code >= 400:
            raise self._refusal(response)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def _refusal(self, response: httpx.Response) -> exits.CliError:
        try:
            body = response.json()
            detail = body.get("detail")
        except (ValueError, AttributeError):
            body, detail = {}, None
        remote = body.get("remote") if isinstance(body, dict) else None
        if isinstance(remote, dict) and isinstance(detail, str):
            # A peer's remote refused the call this gateway made for us: its class decides.
            code = exits.exit_code_for_remote(str(remote.get("reason")))
            return exits.CliError(f"{response.status_code}: {safe(detail)}", code)
        if not isinstance(detail, str):
            return _not_the_api(
                self.target.api_url, f"an error without a detail, status {response.status_code}"
            )
        status = response.status_code
        message = f"{status}: {safe(option_names(detail) if status == 422 else detail)}"
        if status in (401, 403):
            message += f" (token from {self.target.token_source})"
        return exits.CliError(message, exits.exit_code_for_status(status))

    def list_page(
        self, path: str, params: dict[str, Any], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a list route and the cursor of the next, if any."""
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = self.request("GET", path, params=query)
        rows = response.json()
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise _not_the_api(self.target.api_url, f"{path} answered JSON, not a list of objects")
        return rows, response.headers.get("x-next-cursor")

    def show(self, data: Any, columns: list[Column] | None = None) -> None:
        """JSON for scripts, a table (list) or key/value lines (object) for people."""
        if self.as_json:
            click.echo(as_json(data))
        elif isinstance(data, list):
            echo_lines(table(data, columns or [], wide=self.wide))
            if not data:
                click.echo("(none)")
        elif isinstance(data, dict):
            echo_lines(fields(data, wide=self.wide))

    def show_page(
        self, rows: list[dict[str, Any]], columns: list[Column], next_cursor: str | None
    ) -> None:
        """A page, then how to get the next one (on stderr: stdout stays data)."""
        self.show(rows, columns)
        if next_cursor:
            click.echo(f"next: {safe(_command_with_cursor(next_cursor))}", err=True)


def _command_with_cursor(cursor: str) -> str:
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--cursor":
            skip = True
        elif not arg.startswith("--cursor="):
            args.append(arg)
    return shlex.join(["mosaic", *args, "--cursor", cursor])


def _not_the_api(url: str, why: str) -> exits.CliError:
    return exits.CliError(
        f"{url} does not look like a Mosaic gateway API ({safe(why)})", exits.UNAVAILABLE
    )


def _is_json(response: httpx.Response) -> bool:
    if not response.content:
        return response.status_code < 400
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        return False
    try:
        response.json()
    except ValueError:
        return False
    return True


def _unreachable(url: str, exc: httpx.HTTPError) -> exits.CliError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return exits.CliError(
                f"TLS refused by {url}: certificate not trusted: {cause.verify_message}"
                " (trust its CA with --api-ca-file)",
                exits.TLS_REFUSED,
            )
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or str(cause)
            return exits.CliError(f"TLS refused by {url}: {reason}", exits.TLS_REFUSED)
        cause = cause.__cause__ or cause.__context__
    reason = str(exc) or type(exc).__name__
    return exits.CliError(f"cannot reach {url}: {safe(reason)}", exits.UNAVAILABLE)


pass_api = click.make_pass_decorator(ApiClient)
