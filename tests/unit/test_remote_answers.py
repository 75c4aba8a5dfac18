"""What a remote's enrollment answers may hold (federation.remote_answers), the one
common-name rule, and the fingerprint forms (federation.remote_trust)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from api.schemas import PeerCreate
from federation.common_names import is_common_name
from federation.remote_answers import (
    RemoteAnswerRejected,
    json_object,
    one_line,
    read_preflight,
    read_redeem,
)
from federation.remote_trust import CAFingerprintMismatch, check_pin, normalize_fingerprint
from federation.remote_url import AddressPolicy

FINGERPRINT = "0123456789abcdef" * 4
POLICY = AddressPolicy()


def _preflight(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "peerCommonName": "gw-a.example.com",
        "grantId": str(uuid.uuid4()),
        "subjectUserId": str(uuid.uuid4()),
        "expiresAt": "2099-01-01T12:00:00+02:00",
        "caFingerprint": FINGERPRINT,
        "federationUrl": "https://gw-b.example.com:8443",
    }
    body.update(changes)
    return body


def test_a_good_preflight_is_read_with_a_utc_expiry() -> None:
    answer = read_preflight(_preflight(), POLICY)
    assert answer.common_name == "gw-a.example.com"
    assert answer.expires_at == "2099-01-01T10:00:00+00:00"
    assert answer.ca_fingerprint == FINGERPRINT
    assert answer.federation_url == "https://gw-b.example.com:8443"
    assert read_preflight(_preflight(federationUrl=None), POLICY).federation_url is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"peerCommonName": "a" * 65}, "peerCommonName is not a valid common name"),
        ({"peerCommonName": "gw.example.com\n"}, "peerCommonName is not a valid common name"),
        ({"peerCommonName": ["gw"]}, "peerCommonName is not a string"),
        ({"grantId": uuid.uuid4().hex}, "grantId is not a canonical UUID"),
        ({"expiresAt": "9" * 5000}, "expiresAt is not an ISO 8601 timestamp"),
        ({"caFingerprint": FINGERPRINT[:63]}, "caFingerprint is not a SHA-256 fingerprint"),
        ({"federationUrl": 42}, "federationUrl is not a string"),
        ({"federationUrl": "https://gw.example.com/\x1b[2J"}, "federationUrl is not a valid URL"),
    ],
)
def test_a_bad_preflight_field_is_named_and_never_echoed(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(RemoteAnswerRejected) as refused:
        read_preflight(_preflight(**changes), POLICY)
    assert message in refused.value.message
    assert refused.value.message.isprintable() and len(refused.value.message) < 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe not utf", "is not JSON"),
        (b"[" * 100_000, "is not JSON"),  # nesting deep enough to recurse
        (b"[1, 2]", "is not a JSON object"),
        (b"null", "is not a JSON object"),
    ],
)
def test_answers_that_are_not_json_objects_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(RemoteAnswerRejected, match=message):
        json_object(body, "redeem")


def test_redeem_pems_are_bounded_and_checked() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    answer = read_redeem({"certPem": pem, "caCertPem": pem}, POLICY)
    assert (answer.chain_pem, answer.federation_url) == ("", None)
    with pytest.raises(RemoteAnswerRejected, match="certPem holds characters"):
        read_redeem({"certPem": pem + "\x00", "caCertPem": pem}, POLICY)
    with pytest.raises(RemoteAnswerRejected, match="caCertPem is not a PEM certificate"):
        read_redeem({"certPem": pem, "caCertPem": "hello"}, POLICY)
    with pytest.raises(RemoteAnswerRejected, match="certSerial is not a lowercase hex"):
        read_redeem({"certPem": pem, "caCertPem": pem, "certSerial": "0xAB"}, POLICY)


def test_remote_text_loses_escapes_controls_and_tokens() -> None:
    token = "cd" * 32
    text = f"\x1b[1;31mtoken\x1b[0m {token}\r\nrefused\x00\u202e\x9b2J\x1b]0;title\x07 now"
    cleaned = one_line(text)
    assert cleaned.isprintable()
    assert token not in cleaned and "tok:" in cleaned
    assert cleaned.startswith("token tok:") and cleaned.endswith("refused 2J now")
    assert one_line("x" * 1000, 200) == "x" * 200
    assert one_line(None) == ""


@pytest.mark.parametrize(
    "name",
    [
        "gw.example.com",
        "a",
        "A-1",
        "*.example.com",
        "gw example",
        "gw.example.com\n",
        "-gw",
        "a" * 65,
    ],
)
def test_the_api_and_the_remote_check_share_one_common_name_rule(name: str) -> None:
    try:
        PeerCreate(common_name=name, display_name="x")
        api_accepts = True
    except ValidationError:
        api_accepts = False
    assert api_accepts == is_common_name(name)


def test_fingerprints_from_admins_tolerate_colons_and_case() -> None:
    colons = ":".join(FINGERPRINT[i : i + 2] for i in range(0, 64, 2)).upper()
    assert normalize_fingerprint(f" {colons} ") == FINGERPRINT
    for bad in ("ab", "g" * 64, FINGERPRINT + "0"):
        with pytest.raises(ValueError, match="64 hex digits"):
            normalize_fingerprint(bad)


def test_the_pin_is_checked_only_when_given() -> None:
    check_pin(None, FINGERPRINT)
    check_pin(FINGERPRINT, FINGERPRINT)
    with pytest.raises(CAFingerprintMismatch, match="does not match the pinned caFingerprint"):
        check_pin("f" * 64, FINGERPRINT)
