"""Options shared by the admin commands: output format, paging, UUID checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from api.cli.client import ApiClient

F = TypeVar("F", bound=Callable[..., Any])
OUTPUTS = ("table", "wide", "json")


class UuidType(click.ParamType[str, Any]):
    """A UUID, checked before anything is sent: ``--peer: 'x' is not a UUID``."""

    name = "uuid"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import uuid  # 10 ms at start-up, and most commands take no UUID

        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            self.fail(f"{value!r} is not a UUID", param, ctx)


UUID = UuidType()


def set_output(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if not value:
        return
    output = {"as_json": "json", "wide": "wide"}.get(param.name or "", value)
    ctx.ensure_object(ApiClient).output = output


def output_options(command: F) -> F:
    """``-o json|table|wide``, ``--json`` and ``--wide``: before or after the subcommand."""
    for decorator in reversed(
        (
            click.option(
                "-o",
                "--output",
                type=click.Choice(OUTPUTS),
                callback=set_output,
                expose_value=False,
                help="output format: table (fits 100 columns), wide (every column, uncut), json",
            ),
            click.option(
                "--json",
                "as_json",
                is_flag=True,
                callback=set_output,
                expose_value=False,
                help="same as -o json (machine-readable)",
            ),
            click.option(
                "--wide",
                is_flag=True,
                callback=set_output,
                expose_value=False,
                help="same as -o wide",
            ),
        )
    ):
        command = decorator(command)
    return command


def paging_options(default: int, maximum: int = 1000) -> Callable[[F], F]:
    """``--limit`` and ``--cursor`` of a list command."""

    def decorate(command: F) -> F:
        command = click.option(
            "--cursor",
            default=None,
            metavar="CURSOR",
            help="continue where the previous page stopped (printed after it as `next:`)",
        )(command)
        return click.option(
            "--limit",
            type=click.IntRange(1, maximum),
            default=default,
            show_default=True,
            help="rows per page",
        )(command)

    return decorate


def drop_none(**params: Any) -> dict[str, Any]:
    """Query parameters that were given."""
    return {k: v for k, v in params.items() if v is not None}
