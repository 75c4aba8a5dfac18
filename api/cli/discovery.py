"""Which gateway the admin commands talk to, and with which token.

A gateway's data dir holds ``admin-token`` and, when ``mosaic gateway dev``
wrote it, ``api-url`` (one line: the URL). The CLI looks, in this order:

1. ``--data-dir DIR``: DIR's token (and DIR's URL unless one is given);
2. ``MOSAIC_ADMIN_TOKEN`` (or the file ``MOSAIC_ADMIN_TOKEN_FILE`` names);
3. ``MOSAIC_DATA_DIR``: like 1;
4. the current directory, when it is a data dir; then ``./.mosaic``;
5. with a URL given (``--api-url`` or ``MOSAIC_API_URL``), any data dir under
   the current directory whose ``api-url`` names that URL.

Without a URL given, the one recorded in the data dir is used (with 2: the one in
``MOSAIC_DATA_DIR``, the current directory or ``./.mosaic``). In 4, a data dir
whose ``api-url`` names another URL than the one given is another gateway's and
is passed over: a token found on disk only goes to the URL recorded beside it.
Every step tried is kept for the error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:8080"
TOKEN_FILE = "admin-token"  # noqa: S105 - a file name
URL_FILE = "api-url"
# How deep and how wide the search for a data dir under the current directory goes.
_SEARCH_DEPTH = 3
_SEARCH_DIRS = 2000
_SKIP = frozenset(
    {".git", ".venv", "venv", "node_modules", "__pycache__", "temporal", "proc", "sys", "dev"}
)


@dataclass
class Target:
    """The gateway to call: its URL, the token (if one was found) and how both were found."""

    api_url: str
    token: str | None
    token_source: str | None = None
    tried: list[str] = field(default_factory=list)


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _from_dir(directory: Path, label: str, api_url: str | None, tried: list[str]) -> Target:
    token_path = directory / TOKEN_FILE
    token = _read(token_path)
    tried.append(f"{label}: {token_path} ({'found' if token else 'missing'})")
    url = api_url or _read(directory / URL_FILE) or DEFAULT_API_URL
    return Target(url, token, str(token_path) if token else None, tried)


def _data_dirs_under(root: Path) -> Iterator[Path]:
    """Directories under ``root`` (breadth first, bounded) that hold an ``api-url``."""
    level, seen = [root], 0
    for _ in range(_SEARCH_DEPTH):
        below: list[Path] = []
        for directory in level:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if seen >= _SEARCH_DIRS:
                    return
                if entry.name in _SKIP or not entry.is_dir(follow_symlinks=False):
                    continue
                seen += 1
                path = Path(entry.path)
                if os.path.isfile(path / URL_FILE):  # False, not an error, when unreadable
                    yield path
                below.append(path)
        level = below


def find_target(
    *,
    api_url: str | None,
    data_dir: Path | None,
    environ: Mapping[str, str],
    cwd: Path,
) -> Target:
    """Resolve URL and token as the module docstring says; ``api_url``/``data_dir`` are flags."""
    api_url = api_url or environ.get("MOSAIC_API_URL") or None
    tried: list[str] = []
    if data_dir is not None:
        return _from_dir(data_dir, "--data-dir", api_url, tried)
    env_token = environ.get("MOSAIC_ADMIN_TOKEN") or _token_file(environ)
    env_dir = environ.get("MOSAIC_DATA_DIR")
    if env_token:
        homes = [Path(env_dir)] if env_dir else [cwd, cwd / ".mosaic"]
        recorded = next(filter(None, (_read(home / URL_FILE) for home in homes)), None)
        return Target(api_url or recorded or DEFAULT_API_URL, env_token, "MOSAIC_ADMIN_TOKEN")
    tried.append("MOSAIC_ADMIN_TOKEN: not set")
    if env_dir:
        return _from_dir(Path(env_dir), "MOSAIC_DATA_DIR", api_url, tried)
    tried.append("MOSAIC_DATA_DIR: not set")
    for directory, label in ((cwd, "current directory"), (cwd / ".mosaic", "./.mosaic")):
        recorded = _read(directory / URL_FILE)
        if api_url and recorded and not _same_url(recorded, api_url):
            tried.append(f"{label}: {directory} serves {recorded}, not {api_url}")
            continue
        found = _from_dir(directory, label, api_url, tried)
        if found.token:
            return found
    if api_url:
        for directory in _data_dirs_under(cwd):
            if _same_url(_read(directory / URL_FILE) or "", api_url):
                found = _from_dir(directory, f"data dir for {api_url}", api_url, tried)
                if found.token:
                    return found
        tried.append(f"data dirs under {cwd} whose {URL_FILE} names {api_url}: none with a token")
    return Target(api_url or DEFAULT_API_URL, None, None, tried)


def _token_file(environ: Mapping[str, str]) -> str | None:
    """MOSAIC_ADMIN_TOKEN_FILE, read the way the gateway reads it."""
    if not environ.get("MOSAIC_ADMIN_TOKEN_FILE"):
        return None
    from federation.settings import secrets_from_files

    return secrets_from_files(environ, ("MOSAIC_ADMIN_TOKEN",)).get("mosaic_admin_token")
