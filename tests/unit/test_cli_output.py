"""What the CLI prints and how it finds a gateway, without a gateway: escaping,
tables that fit, server field names translated, the data-dir search, lazy loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from api.cli.client import option_names
from api.cli.discovery import DEFAULT_API_URL, find_target
from api.cli.federation import COMMANDS as FEDERATION_COMMANDS
from api.cli.federation import federation
from api.cli.main import COMMANDS, cli
from api.cli.output import WIDTH, Column, fields, fit_widths, safe, table

HEAVY = ("temporalio", "sqlalchemy", "pydantic_settings", "pydantic", "fastapi", "federation")


def test_control_and_format_characters_are_shown_escaped() -> None:
    assert safe("Gateway\x1b[2J A") == "Gateway\\x1b[2J A"
    assert safe("bell\x07 nul\x00 del\x7f csi\x9b") == "bell\\x07 nul\\x00 del\\x7f csi\\x9b"
    assert safe("evil\u202egnp.exe") == "evil\\u202egnp.exe"  # right-to-left override
    assert safe("line\nbreak\ttab") == "line\\x0abreak\\x09tab"
    assert safe("Zoë ✓ 東京") == "Zoë ✓ 東京"


def test_a_table_of_long_cells_fits_the_width_cuts_with_an_ellipsis_and_keeps_ids() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "b4f963ed-4c3a-4d3d-992d-1a6cb3b05332", "name": "n" * 80, "email": "e" * 70},
        {"id": "59d73628-eec7-4a00-8ee6-a5556ab3e352", "name": "short", "email": None},
    ]
    columns = [Column("id", "ID", keep=True), Column("name", "NAME"), Column("email", "EMAIL")]
    lines = table(rows, columns, wide=False)
    assert all(len(line) <= WIDTH and line == line.rstrip() for line in lines)
    assert "b4f963ed-4c3a-4d3d-992d-1a6cb3b05332" in lines[1]
    assert lines[1].rstrip().endswith("…") and "n…" in lines[1]
    assert lines[2].endswith("-")  # None shows as "-", and no padding after it
    wide = table(rows, columns, wide=True)
    assert "n" * 80 in wide[1] and "e" * 70 in wide[1]


def test_timestamps_are_shortened_in_tables_and_kept_whole_in_wide_and_fields() -> None:
    row = {"createdAt": "2026-11-28T12:47:22.039630Z"}
    assert table([row], [Column("createdAt", "CREATED")], wide=False)[1] == "2026-11-28T12:47:22Z"
    assert "12:47:22.039630Z" in table([row], [Column("createdAt", "CREATED")], wide=True)[1]
    assert fields(row, wide=False) == ["createdAt  2026-11-28T12:47:22.039630Z"]


def test_fit_widths_shrinks_the_widest_first_and_never_below_the_minimum() -> None:
    assert fit_widths([36, 60, 40], [36, 6, 6], 100) == [36, 30, 30]
    assert fit_widths([10, 10], [10, 10], 15) == [10, 10]  # cannot shrink: left as is
    assert fit_widths([5, 5], [1, 1], 100) == [5, 5]


def test_server_field_names_become_the_options_a_person_typed() -> None:
    assert option_names("peerId: Input should be a valid UUID, invalid character") == (
        "--peer: not a UUID"
    )
    assert option_names("peer_id: Input should be a valid UUID") == "--peer: not a UUID"
    assert option_names("scope.resources.0: Input should be 'tasks'") == (
        "--scope: resources.0: Input should be 'tasks'"
    )
    assert option_names("enrollmentUrl must use https") == "ENROLLMENT_URL must use https"
    assert option_names("peer is revoked; register a new peer") == (
        "peer is revoked; register a new peer"
    )
    assert option_names("something else: entirely") == "something else: entirely"


def _data_dir(path: Path, url: str | None, token: str | None = "tok") -> Path:
    path.mkdir(parents=True)
    if token is not None:
        (path / "admin-token").write_text(token + "\n")
    if url is not None:
        (path / "api-url").write_text(url + "\n")
    return path


def test_data_dir_flag_wins_over_the_environment_and_supplies_its_url(tmp_path: Path) -> None:
    a = _data_dir(tmp_path / ".mosaic-a", "http://127.0.0.1:9001", "token-a")
    environ = {"MOSAIC_ADMIN_TOKEN": "token-env", "MOSAIC_DATA_DIR": str(tmp_path / "none")}
    target = find_target(api_url=None, data_dir=a, environ=environ, cwd=tmp_path)
    assert (target.api_url, target.token) == ("http://127.0.0.1:9001", "token-a")
    assert target.token_source == str(a / "admin-token")


def test_a_url_given_picks_the_data_dir_that_records_it_and_passes_over_others(
    tmp_path: Path,
) -> None:
    _data_dir(tmp_path / ".mosaic", "http://127.0.0.1:9002", "token-b")
    _data_dir(tmp_path / "gateways" / "a", "http://127.0.0.1:9001/", "token-a")
    target = find_target(api_url="http://127.0.0.1:9001", data_dir=None, environ={}, cwd=tmp_path)
    assert target.token == "token-a"
    assert any("serves http://127.0.0.1:9002, not http://127.0.0.1:9001" in t for t in target.tried)
    plain = find_target(api_url=None, data_dir=None, environ={}, cwd=tmp_path)
    assert (plain.api_url, plain.token) == ("http://127.0.0.1:9002", "token-b")


def test_inside_a_data_dir_its_token_and_url_are_used(tmp_path: Path) -> None:
    inside = _data_dir(tmp_path / "dd", "http://127.0.0.1:9003")
    target = find_target(api_url=None, data_dir=None, environ={}, cwd=inside)
    assert (target.api_url, target.token) == ("http://127.0.0.1:9003", "tok")


def test_with_the_token_in_the_environment_the_url_recorded_nearby_is_used(
    tmp_path: Path,
) -> None:
    _data_dir(tmp_path / ".mosaic", "http://127.0.0.1:9004", token=None)
    environ = {"MOSAIC_ADMIN_TOKEN": "token-env"}
    target = find_target(api_url=None, data_dir=None, environ=environ, cwd=tmp_path)
    assert (target.api_url, target.token_source) == ("http://127.0.0.1:9004", "MOSAIC_ADMIN_TOKEN")


def test_shell_completion_offers_the_lazy_commands_and_their_choices() -> None:
    mosaic = str(Path(sys.executable).parent / "mosaic")
    asked = {
        "mosaic fed": ("1", ["plain,federation"]),
        "mosaic federation peer list --state ": (
            "5",
            [
                "plain,pending",
                "plain,active",
                "plain,degraded",
                "plain,expired",
                "plain,failed",
                "plain,revoked",
            ],
        ),
    }
    for words, (cword, expected) in asked.items():
        env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": cword}
        env["_MOSAIC_COMPLETE"] = "bash_complete"
        done = subprocess.run(
            [mosaic], env=env, capture_output=True, text=True, check=True, timeout=60
        )
        assert done.stdout.split() == expected, words


def test_nothing_found_lists_every_place_tried(tmp_path: Path) -> None:
    target = find_target(api_url=None, data_dir=None, environ={"MOSAIC_DATA_DIR": ""}, cwd=tmp_path)
    assert target.token is None and target.api_url == DEFAULT_API_URL
    assert target.tried == [
        "MOSAIC_ADMIN_TOKEN: not set",
        "MOSAIC_DATA_DIR: not set",
        f"current directory: {tmp_path / 'admin-token'} (missing)",
        f"./.mosaic: {tmp_path / '.mosaic' / 'admin-token'} (missing)",
    ]


def test_every_lazy_command_is_listed_with_its_own_help_and_loads() -> None:
    for group, registry in ((cli, COMMANDS), (federation, FEDERATION_COMMANDS)):
        ctx = click.Context(group)
        for name, (_, short_help) in registry.items():
            command = group.get_command(ctx, name)
            assert command is not None, name
            assert command.get_short_help_str(limit=200) == short_help, name


@pytest.mark.parametrize("module", ["api.cli.main", "api.cli.users", "api.cli.peers"])
def test_the_cli_entry_and_admin_commands_import_no_server_stack(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def _commands(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from _commands(sub, f"{path} {name}")


def test_every_command_has_help_an_example_and_every_option_a_help_text() -> None:
    gaps = []
    for path, command in _commands(cli, "mosaic"):
        if path.startswith("mosaic gateway"):  # api/cli/gateway.py is another team's
            continue
        if not command.help or "Examples:" not in (command.epilog or ""):
            gaps.append(f"{path}: help or example")
        gaps += [
            f"{path} {param.opts[0]}: help"
            for param in command.params
            if isinstance(param, click.Option) and not param.help
        ]
    assert not gaps, gaps


def test_a_nested_object_shows_one_line_per_field_so_none_is_cut_away() -> None:
    peer = {
        "state": "active",
        "lifecycle": {
            "state": "active",
            "serial": "7ac456d0bd4378c50e80810ff67eb9d3adb5c76e",
            "nextRenewalAt": "2026-12-03T20:00:00+00:00",
            "lastError": None,
        },
    }
    assert fields(peer, wide=False) == [
        "state                    active",
        "lifecycle.state          active",
        "lifecycle.serial         7ac456d0bd4378c50e80810ff67eb9d3adb5c76e",
        "lifecycle.nextRenewalAt  2026-12-03T20:00:00+00:00",
        "lifecycle.lastError      -",
    ]
