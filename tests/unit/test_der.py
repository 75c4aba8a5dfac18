from __future__ import annotations

import pytest

from federation.pki.der import decode_utf8string, encode_utf8string


def test_short_string_uses_the_short_length_form() -> None:
    assert encode_utf8string("abc") == b"\x0c\x03abc"


def test_empty_string_encodes_to_tag_and_zero_length() -> None:
    assert encode_utf8string("") == b"\x0c\x00"
    assert decode_utf8string(b"\x0c\x00") == ""


def test_uuid_round_trips() -> None:
    value = "3f2c1e0a-7b8d-4c6e-9f10-1a2b3c4d5e6f"
    der = encode_utf8string(value)
    assert der[:2] == b"\x0c\x24"
    assert decode_utf8string(der) == value


def test_127_bytes_is_the_last_short_form() -> None:
    assert encode_utf8string("a" * 127)[:2] == b"\x0c\x7f"


def test_128_bytes_uses_one_long_length_octet() -> None:
    der = encode_utf8string("a" * 128)
    assert der[:3] == b"\x0c\x81\x80"
    assert decode_utf8string(der) == "a" * 128


def test_300_bytes_uses_two_long_length_octets() -> None:
    der = encode_utf8string("b" * 300)
    assert der[:4] == b"\x0c\x82\x01\x2c"
    assert decode_utf8string(der) == "b" * 300


def test_length_counts_utf8_bytes_not_characters() -> None:
    der = encode_utf8string("é")
    assert der == b"\x0c\x02\xc3\xa9"
    assert decode_utf8string(der) == "é"


def test_wrong_tag_is_rejected() -> None:
    # 0x13 is PrintableString.
    with pytest.raises(ValueError, match="not a UTF8String"):
        decode_utf8string(b"\x13\x03abc")


def test_empty_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        decode_utf8string(b"")


def test_tag_without_length_is_rejected() -> None:
    with pytest.raises(ValueError):
        decode_utf8string(b"\x0c")


def test_length_longer_than_content_is_rejected() -> None:
    with pytest.raises(ValueError, match="length"):
        decode_utf8string(b"\x0c\x05abc")


def test_trailing_bytes_after_the_value_are_rejected() -> None:
    with pytest.raises(ValueError, match="length"):
        decode_utf8string(b"\x0c\x03abcd")


def test_long_form_for_a_short_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="not minimal"):
        decode_utf8string(b"\x0c\x81\x03abc")


def test_long_form_with_leading_zero_octet_is_rejected() -> None:
    with pytest.raises(ValueError, match="not minimal"):
        decode_utf8string(b"\x0c\x82\x00\x80" + b"a" * 128)


def test_indefinite_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="indefinite"):
        decode_utf8string(b"\x0c\x80abc\x00\x00")


def test_truncated_long_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="truncated"):
        decode_utf8string(b"\x0c\x82\x01")


def test_absurd_length_octet_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="too large"):
        decode_utf8string(b"\x0c\x89" + b"\x01" * 9)


def test_invalid_utf8_is_rejected() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        decode_utf8string(b"\x0c\x02\xc3\x28")


def test_overlong_utf8_encoding_is_rejected() -> None:
    # 0xC0 0xAF is an overlong "/" that lax decoders accept.
    with pytest.raises(ValueError, match="UTF-8"):
        decode_utf8string(b"\x0c\x02\xc0\xaf")
