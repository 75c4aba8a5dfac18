"""DER codec for the one TLV our certificate extensions carry: a UTF8String.

Hand-rolled on purpose: a single tag with a length is all we need, and it keeps
an ASN.1 library out of the dependencies.
"""

from __future__ import annotations

_UTF8STRING_TAG = 0x0C
# Four length octets already allow 4 GiB; anything longer is not ours.
_MAX_LENGTH_OCTETS = 4


def encode_utf8string(value: str) -> bytes:
    """Return the DER encoding (tag, definite length, UTF-8 body) of ``value``."""
    body = value.encode("utf-8")
    return bytes([_UTF8STRING_TAG]) + _encode_length(len(body)) + body


def decode_utf8string(der: bytes) -> str:
    """Decode exactly one DER UTF8String; raise ``ValueError`` on anything else.

    Strict: the tag must be 0x0C, the length in its minimal form, the body must
    fill the rest of ``der`` exactly, and it must be valid UTF-8.
    """
    if len(der) < 2:
        raise ValueError("DER UTF8String is truncated")
    if der[0] != _UTF8STRING_TAG:
        raise ValueError("DER value is not a UTF8String")
    length, offset = _decode_length(der)
    if len(der) - offset != length:
        raise ValueError("DER UTF8String length does not match its content")
    try:
        return der[offset:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("DER UTF8String is not valid UTF-8") from exc


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _decode_length(der: bytes) -> tuple[int, int]:
    """Return (length, offset of the body) for the TLV starting at ``der[0]``."""
    first = der[1]
    if first < 0x80:
        return first, 2
    count = first & 0x7F
    if count == 0:
        raise ValueError("DER forbids the indefinite length form")
    if count > _MAX_LENGTH_OCTETS:
        raise ValueError("DER length is too large")
    if len(der) < 2 + count:
        raise ValueError("DER length is truncated")
    octets = der[2 : 2 + count]
    if octets[0] == 0:
        raise ValueError("DER length is not minimal")
    length = int.from_bytes(octets, "big")
    if length < 0x80:
        raise ValueError("DER length is not minimal")
    return length, 2 + count
