"""`mosaic gateway dev` never attaches to someone else's services, keeps its data dir
private, records its API URL, and stops everything on SIGTERM."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.devserver import PortUnavailable, ensure_ports_free, start_dev_server
from tests.support.commands import MOSAIC, clean_env, stop_or_kill
from tests.support.stepca import free_port

FLAGS = ("--port", "--temporal-port", "--ui-port", "--federation-port")


@pytest.fixture
def listener() -> Iterator[int]:
    """A port someone else listens on (another gateway, another dev server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _dev_command(data_dir: Path, ports: dict[str, int]) -> list[str]:
    command = [MOSAIC, "gateway", "dev", "--data-dir", str(data_dir)]
    for flag, port in ports.items():
        command += [flag, str(port)]
    return command


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("flag", FLAGS)
def test_taken_port_stops_gateway_dev_in_one_line_naming_the_flag(
    flag: str, listener: int, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in FLAGS} | {flag: listener}
    data_dir = tmp_path / "gw"
    done = _run(_dev_command(data_dir, ports), clean_env(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"Error: port {listener} is already in use; choose another with {flag}"
    ]
    assert not data_dir.exists()  # refused before anything started or was written
    ensure_ports_free({name: port for name, port in ports.items() if name != flag})


@pytest.mark.parametrize("taken", ["port", "ui_port"])
def test_dev_server_that_cannot_bind_is_refused_not_attached_to(
    taken: str, listener: int, tmp_path: Path
) -> None:
    # The port is taken between the check and the start: our dev server exits, and the
    # listener that answers there is someone else's.
    ports = {"port": free_port(), "ui_port": free_port()} | {taken: listener}
    labels = {"port": "--temporal-port", "ui_port": "--ui-port"}
    with pytest.raises(PortUnavailable) as raised:
        start_dev_server(
            tmp_path / "temporal", **ports, log_file=tmp_path / "temporal.log", labels=labels
        )
    assert (raised.value.port, raised.value.label) == (listener, labels[taken])
    ensure_ports_free({"other": ports["ui_port" if taken == "port" else "port"]})


def test_gateway_dev_refuses_a_shared_data_dir_rather_than_lock_others_out(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    done = _run(_dev_command(shared, {name: free_port() for name in FLAGS}), clean_env(tmp_path))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: --data-dir {shared} is shared or not yours")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777 and not any(shared.iterdir())


def _modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.lstat().st_mode)
        for path in root.rglob("*")
        if not path.is_symlink()
    }


def test_gateway_dev_records_its_url_keeps_data_private_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "gw"
    # What an earlier `mosaic db upgrade` under umask 022 left: 0755 dir, 0644 database.
    migrated = _run([MOSAIC, "db", "upgrade"], clean_env(tmp_path, MOSAIC_DATA_DIR=str(data_dir)))
    assert migrated.returncode == 0, migrated.stderr
    data_dir.chmod(0o755)
    (data_dir / "mosaic.db").chmod(0o644)

    ports = {name: free_port() for name in FLAGS}
    elsewhere = f"127.0.0.1:{free_port()}"
    log = tmp_path / "gateway.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            _dev_command(data_dir, ports),
            env=clean_env(tmp_path, TEMPORAL_ADDRESS=elsewhere),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    api_url = f"http://127.0.0.1:{ports['--port']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

        assert (data_dir / "api-url").read_text() == api_url + "\n"
        output = log.read_text()
        ours = f"127.0.0.1:{ports['--temporal-port']}"
        assert f"temporal   {ours} (dev server" in output
        assert f"TEMPORAL_ADDRESS={elsewhere} ignored" in output
        assert httpx.get(f"http://127.0.0.1:{ports['--ui-port']}", timeout=10).status_code == 200

        modes = _modes(data_dir)
        for name in ("mosaic.db", "admin-token", "sealing-secret", "api-url", "temporal.log"):
            assert modes[name] == 0o600, (name, oct(modes[name]))
        assert any(name.startswith("temporal/temporal.db") for name in modes)
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        loose = {
            name: oct(mode)
            for name, mode in modes.items()
            if mode != (0o700 if (data_dir / name).is_dir() else 0o600)
        }
        assert not loose, loose

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        stop_or_kill(process)
    output = log.read_text()
    assert output.rstrip().endswith("stopped") and "Traceback" not in output
    ensure_ports_free(ports)  # the API and our dev server (gRPC and UI) are gone
