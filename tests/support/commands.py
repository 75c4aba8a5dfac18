"""Running the real ``mosaic`` executable the way a new user's shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MOSAIC = str(Path(sys.executable).parent / "mosaic")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """Nothing from the test run's environment but PATH (no MOSAIC_*, no DATABASE_URL)."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", **extra}


def stop_or_kill(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """Clean-up after a test: a process still running is killed and reaped."""
    if process.poll() is None:
        process.kill()
        process.wait()
