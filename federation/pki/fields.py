"""Reading and comparing the fields every certificate check needs, defined once."""

from __future__ import annotations

import hmac
import uuid

from cryptography import x509
from cryptography.x509.oid import NameOID


def is_canonical_uuid(value: object) -> bool:
    """Whether ``value`` is a UUID in its canonical lowercase hyphenated form.

    The OIDs carry the ids verbatim and are compared as text, so only one spelling of
    an id is accepted anywhere.
    """
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def common_names(name: x509.Name) -> list[str]:
    """Every CN attribute of ``name`` (a parse error surfaces as ``ValueError``)."""
    return [str(attribute.value) for attribute in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def equal_text(a: str, b: str) -> bool:
    """Compare two strings in constant time."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
