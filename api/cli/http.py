"""httpx for the CLI, without httpx's own command line.

``import httpx`` also imports its CLI (rich, pygments: 60 ms, a fifth of an admin
command's run) whenever that can be imported. No admin command uses it; a None
entry in ``sys.modules`` makes that optional import fail at once, and httpx then
defines a stub in its place. Measured by ``python -m bench.cli``.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

__all__ = ["httpx"]
