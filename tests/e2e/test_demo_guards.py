"""`mosaic demo` deletes only what it made, refuses a taken UI port in one line, says
what it does, and SIGTERM stops both gateways and the dev server like Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from api.devserver import ensure_ports_free
from tests.support.commands import MOSAIC, clean_env, stop_or_kill
from tests.support.stepca import free_port


def _demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MOSAIC, "demo", *args],
        cwd=cwd,
        env=clean_env(cwd),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_refuses_a_non_empty_dir_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    done = _demo("--dir", str(mine), "--ui-port", str(free_port()), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: --dir {mine} is not empty") and "choose another --dir" in line
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "keep me"


def test_demo_with_its_ui_port_taken_fails_in_one_line_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _demo("--dir", str(tmp_path / "demo"), "--ui-port", str(port), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"Error: port {port} is already in use; choose another with --ui-port"
    ]
    assert not (tmp_path / "demo").exists()


def test_demo_help_says_what_it_does_and_what_dir_is(tmp_path: Path) -> None:
    done = _demo("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "Starts one Temporal dev server and gateways A and B" in text
    assert "--dir" in text and "wiped by the next run" in text
    assert "a directory holding anything else is refused" in text
    assert "SIGTERM stops both gateways and the dev server" in text


def test_sigterm_stops_both_gateways_and_the_dev_server(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    (root / ".mosaic-demo").write_text("made by an earlier run\n")
    (root / "left-over.log").write_text("from the earlier run")
    ui_port = free_port()
    out = tmp_path / "demo.out"
    with out.open("w") as handle:
        process = subprocess.Popen(
            [MOSAIC, "demo", "--dir", str(root), "--ui-port", str(ui_port), "--keep-running"],
            env=clean_env(tmp_path),
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 90
        while "Everything stays up" not in out.read_text():
            assert process.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        text = out.read_text()
        gateways = [int(p) for p in re.findall(r"gateway [AB]\s+http://127\.0\.0\.1:(\d+)", text)]
        assert len(gateways) == 2, text
        assert not (root / "left-over.log").exists()  # the demo's own dir: wiped
        assert (root / ".mosaic-demo").is_file()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, out.read_text()
    finally:
        stop_or_kill(process)
    assert "Traceback" not in out.read_text()
    ensure_ports_free({"gateway A": gateways[0], "gateway B": gateways[1], "--ui-port": ui_port})
