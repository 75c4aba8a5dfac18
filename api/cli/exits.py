"""Exit codes: one table, so a script can tell "fix the input" from "try again later".

docs/ADMIN-CLI.md documents the same table; tests/integration/test_cli.py holds both to it.
"""

from __future__ import annotations

import click

OK = 0
FAILED = 1  # the command ran and what it drove failed (a failed peer add, a server error 500)
USAGE = 2  # the command line is wrong; nothing was sent
NOT_FOUND = 3  # 404
CONFLICT = 4  # 409, 410: the object is not in a state that allows this
REFUSED = 5  # 400, 403, 413, 422: the server understood and said no
UNAVAILABLE = 6  # cannot reach it, 429, 502, 503, 504, or it is not a Mosaic API
UNAUTHENTICATED = 7  # 401, or no admin token found
TLS_REFUSED = 8  # the TLS handshake failed (certificate not trusted, wrong name)

_BY_STATUS = {
    400: REFUSED,
    401: UNAUTHENTICATED,
    403: REFUSED,
    404: NOT_FOUND,
    409: CONFLICT,
    410: CONFLICT,
    413: REFUSED,
    422: REFUSED,
    429: UNAVAILABLE,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}


# The admin API names why a peer's remote refused a call (``remote.reason``).
_BY_REMOTE_REASON = {
    "tls": TLS_REFUSED,
    "unauthenticated": UNAUTHENTICATED,
    "forbidden": REFUSED,
    "revoked": REFUSED,
    "refused": REFUSED,
    "not_found": NOT_FOUND,
    "conflict": CONFLICT,
    "unavailable": UNAVAILABLE,
    "unreachable": UNAVAILABLE,
}


def exit_code_for_remote(reason: str) -> int:
    """The exit code of a call the remote refused, by the class the gateway named."""
    return _BY_REMOTE_REASON.get(reason, FAILED)


def exit_code_for_status(status: int) -> int:
    """The exit code of an HTTP error answer; other 4xx refuse, other 5xx fail."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return REFUSED if status < 500 else FAILED


class CliError(click.ClickException):
    """``Error: <message>`` on stderr, then exit with ``code``."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        # click types exit_code per class; ours varies per error.
        self.exit_code = code  # type: ignore[misc]
