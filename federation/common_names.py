"""The one rule for a peer's common name, wherever it comes from: the admin API, a
CSR's subject, or a remote gateway's preflight answer."""

from __future__ import annotations

import re

COMMON_NAME_MAX_LENGTH = 64
# A DNS-like name: letters, digits, dots and hyphens, no wildcard, no space, no
# control character; starts and ends with a letter or digit.
COMMON_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.\-]{0,62}[A-Za-z0-9])?$"
_COMMON_NAME = re.compile(COMMON_NAME_PATTERN)


def is_common_name(value: object) -> bool:
    """Whether ``value`` is an acceptable peer common name (a string under the rule)."""
    return (
        isinstance(value, str)
        and len(value) <= COMMON_NAME_MAX_LENGTH
        and _COMMON_NAME.fullmatch(value) is not None
    )
