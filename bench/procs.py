"""Child processes of a bench run, and what /proc says about them (RSS, CPU time).

Every child runs in its own process group with PR_SET_PDEATHSIG, so it dies
with the bench even when the bench is SIGKILLed; ``Children.stop_all`` ends
the groups it started (SIGTERM, then SIGKILL), and only those.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent(parent_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Children:
    """The processes this bench started; stopped together, newest first."""

    started: list[Child] = field(default_factory=list)

    def spawn(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: Path
    ) -> Child:
        parent = os.getpid()
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                process_group=0,
                preexec_fn=lambda: _die_with_parent(parent),
            )
        child = Child(name, process, log_path)
        self.started.append(child)
        return child

    def adopt(self, name: str, process: subprocess.Popen[bytes], log_path: Path) -> Child:
        """Track a child started elsewhere (it must lead its own process group)."""
        child = Child(name, process, log_path)
        self.started.append(child)
        return child

    def stop(self, child: Child, timeout: float = 10.0) -> None:
        stop_groups([child.process], timeout)
        if child in self.started:
            self.started.remove(child)

    def stop_all(self, timeout: float = 10.0) -> None:
        stop_groups([c.process for c in reversed(self.started)], timeout)
        self.started.clear()


def stop_groups(processes: Iterable[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM each child's process group at once, SIGKILL the groups that linger."""
    alive = [p for p in processes if p.poll() is None]
    for process in alive:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for process in alive:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(5)


# --- /proc readings ----------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(kids.get(current, []))
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` and its descendants, MiB."""
    return sum(_status_kib(p, "VmRSS") for p in process_tree(pid)) / 1024


def pss_mib(pid: int) -> float:
    """Proportional set size of ``pid`` and its descendants, MiB: shared pages split among
    their users (what RSS counts again in every PostgreSQL backend)."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return total / 1024


def hwm_mib(pid: int) -> float:
    """Peak RSS (VmHWM) of ``pid`` and its descendants, MiB."""
    return sum(_status_kib(p, "VmHWM") for p in process_tree(pid)) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, its live descendants and the children it reaped."""
    total = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is not None:
            # utime, stime, cutime, cstime are fields 14..17 of stat (index 11..14 here)
            total += sum(int(v) for v in fields[11:15])
    return total / _CLK_TCK


def self_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def postmaster_pid() -> int | None:
    """The PostgreSQL postmaster on this machine (a ``postgres`` whose parent is not one)."""
    comms: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        comms[int(entry)] = (comm, int(fields[1]))
    for pid, (comm, ppid) in comms.items():
        if comm == "postgres" and comms.get(ppid, ("", 0))[0] != "postgres":
            return pid
    return None


def machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine since boot, from /proc/stat."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


def all_process_cpu() -> dict[int, tuple[str, float]]:
    """pid → (command name, user + system CPU seconds) of every process now alive."""
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry)] = (comm, (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    return out


def foreign_cpu(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], ours: set[int]
) -> dict[str, float]:
    """CPU seconds by command name of the processes that are not ours, between two readings."""
    by_comm: dict[str, float] = {}
    for pid, (comm, seconds) in after.items():
        if pid in ours:
            continue
        delta = seconds - before.get(pid, (comm, 0.0))[1]
        if delta > 0:
            by_comm[comm] = by_comm.get(comm, 0.0) + delta
    return by_comm


def pct(values: Sequence[float], q: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_csr(common_name: str) -> str:
    """A fresh P-256 key's CSR for ``common_name`` (CN = SAN DNS), PEM; the key is dropped."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()
