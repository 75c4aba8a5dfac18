"""`mosaic demo` exits 0 only when A's peer and B's grant are active with one serial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.stepca import free_port

MOSAIC = str(Path(sys.executable).parent / "mosaic")


def test_demo_walks_the_whole_story_and_exits_zero(tmp_path: Path) -> None:
    done = subprocess.run(
        [MOSAIC, "demo", "--dir", str(tmp_path / "demo"), "--ui-port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in (
        "On B: the admin registers",
        "mints a single-use enrollment token",
        "On A: the admin runs `peer add`",
        "serials match",
    ):
        assert step in out
    assert "/workflows/enroll-" in out and "/workflows/peer-add-" in out
    token_line = next(line for line in out.splitlines() if "peer add http" in line)
    assert "tok:" in token_line  # the echoed command does not show the token
