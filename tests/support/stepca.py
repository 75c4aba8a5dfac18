"""A real step-ca for tests: built from Debian's source, one process per instance.

Not a fixture, so a test can run several (a rogue CA, a CA it stops and
restarts). Call ``start()`` from the main thread: PR_SET_PDEATHSIG fires when
the *thread* that spawned the child exits.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx

from federation.ca.stepca import StepCA
from federation.ca.stepca_init import StepCAFiles, init_step_ca

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "infra" / "step-ca" / "build.sh"
_PR_SET_PDEATHSIG = 1
_HEALTH_TIMEOUT_S = 20.0
_BUILD_TIMEOUT_S = 900.0

_binary: Path | None = None

# The federation template minus the two Mosaic extensions: what a misconfigured
# or hostile CA would issue, for the OID checks (CRIT-1) to catch.
ROGUE_TEMPLATE = """{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"]
}
"""


def step_ca_binary() -> Path:
    """``$STEP_CA_BIN`` if set, else the binary ``infra/step-ca/build.sh`` produces (cached)."""
    global _binary
    if _binary is not None:
        return _binary
    env_bin = os.environ.get("STEP_CA_BIN")
    if env_bin:
        _binary = Path(env_bin)
    else:
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"infra/step-ca/build.sh failed ({done.returncode}):\n{done.stderr[-4000:]}"
            )
        _binary = Path(done.stdout.strip().splitlines()[-1])
    if not os.access(_binary, os.X_OK):
        raise RuntimeError(f"step-ca binary is not executable: {_binary}")
    return _binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent(parent_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The parent may already be gone before prctl took effect.
    if os.getppid() != parent_pid:
        os._exit(1)


class StepCAServer:
    """One step-ca process over one CA directory; restartable on the same port."""

    def __init__(self, directory: Path, *, template_path: Path | None = None) -> None:
        self.directory = directory
        self._template_path = template_path
        self._files: StepCAFiles | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "step-ca.log"

    @property
    def files(self) -> StepCAFiles:
        if self._files is None:
            raise RuntimeError("StepCAServer.start() has not run yet")
        return self._files

    @property
    def url(self) -> str:
        return self.files.url

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Init the CA directory on first use, spawn step-ca, wait until /health answers."""
        if self.running:
            return
        binary = step_ca_binary()
        if self._files is None:
            self._files = init_step_ca(
                self.directory,
                address=f"127.0.0.1:{free_port()}",
                template_path=self._template_path,
            )
        files = self._files
        env = {**os.environ, "STEPPATH": str(self.directory)}
        parent = os.getpid()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(binary), str(files.ca_json), "--password-file", str(files.password_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.directory,
                process_group=0,
                preexec_fn=lambda: _die_with_parent(parent),
            )
        self._wait_healthy()

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it is still there after 10 s."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            process.wait(timeout=10)

    def provider(self, *, timeout: float = 5.0) -> StepCA:
        return StepCA(
            self.url,
            self.files.provisioner_key_json.read_text(encoding="utf-8"),
            self.files.root_cert,
            timeout=timeout,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait_healthy(self) -> None:
        tls = ssl.create_default_context(cafile=str(self.files.root_cert))
        deadline = time.monotonic() + _HEALTH_TIMEOUT_S
        last_error = "no attempt"
        with httpx.Client(base_url=self.url, verify=tls, timeout=1.0) as client:
            while time.monotonic() < deadline:
                process = self._process
                if process is None or process.poll() is not None:
                    code = None if process is None else process.returncode
                    self._process = None
                    raise RuntimeError(
                        f"step-ca exited with {code} during start-up:\n{self.log_tail()}"
                    )
                try:
                    response = client.get("/health")
                    if response.status_code == 200:
                        return
                    last_error = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"step-ca not healthy after {_HEALTH_TIMEOUT_S:.0f}s ({last_error}):\n{self.log_tail()}"
        )
