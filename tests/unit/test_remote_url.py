"""The URL and address policy of peer add (federation.remote_url)."""

from __future__ import annotations

import ipaddress

import pytest

from federation.errors import InvalidInput
from federation.remote_url import (
    AddressNotAllowed,
    AddressPolicy,
    parse_enrollment_url,
    parse_federation_url,
    parse_networks,
    refusal,
)

TOKEN = "ab" * 32
PATH = f"/api/federation/enrollment/{TOKEN}"
DEV = AddressPolicy(allow_http_loopback=True)
STRICT = AddressPolicy()


@pytest.mark.parametrize(
    ("url", "netloc"),
    [
        (f"http://[::1]:8080{PATH}", "[::1]:8080"),
        (f"http://[::1]{PATH}", "[::1]"),
        (f"http://127.0.0.1:8080{PATH}", "127.0.0.1:8080"),
        (f"http://LOCALHOST:8080{PATH}", "localhost:8080"),
    ],
)
def test_rebuilt_url_keeps_ipv6_brackets_and_the_port(url: str, netloc: str) -> None:
    target = parse_enrollment_url(url, DEV)
    assert target.host == netloc
    assert target.url == f"http://{netloc}{PATH}"
    assert target.base_url == f"http://{netloc}"


def test_https_to_a_public_name_keeps_the_default_port() -> None:
    target = parse_enrollment_url(f"https://gw.example.com{PATH}", STRICT)
    assert (target.host, target.port, target.hostname) == ("gw.example.com", 443, "gw.example.com")


def test_plain_http_to_loopback_without_the_setting_names_the_setting() -> None:
    with pytest.raises(InvalidInput, match="MOSAIC_ENROLL_ALLOW_HTTP_LOOPBACK=true"):
        parse_enrollment_url(f"http://127.0.0.1:8080{PATH}", STRICT)


@pytest.mark.parametrize(
    "url",
    [
        f"http://gw.example.com{PATH}",
        f"http://10.0.0.1{PATH}",
        f"ftp://gw.example.com{PATH}",
        f"https://u:p@gw.example.com{PATH}",
        f"https://gw.example.com{PATH}?x=1",
        f"https://gw.example.com{PATH}#frag",
        f"https://gw.example.com/join/{TOKEN}",
        f"https://gw.example.com{PATH}\x1b[2J",
        f"https://gw .example.com{PATH}",
        f"https://gw.exämple.com{PATH}",
    ],
)
def test_malformed_or_plain_http_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_enrollment_url(url, DEV)
    assert TOKEN not in refused.value.message


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.0.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.1.1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("100.64.0.1", "non-public"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test
        ("224.0.0.1", "multicast"),
    ],
)
def test_https_to_non_public_addresses_is_refused_unless_allowed(address: str, kind: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal(ip, "https", DEV) == (
        f"a {kind} address; allow its network in MOSAIC_ENROLL_ALLOWED_NETWORKS"
    )
    network = ipaddress.ip_network(f"{address}/{ip.max_prefixlen}")
    assert refusal(ip, "https", AddressPolicy(allowed_networks=(network,))) is None


def test_an_allowed_ipv4_network_covers_its_ipv4_mapped_form() -> None:
    policy = AddressPolicy.of(allow_http_loopback=False, allowed_networks="10.0.0.0/8")
    assert refusal(ipaddress.ip_address("::ffff:10.1.2.3"), "https", policy) is None


def test_public_addresses_are_allowed_for_https_only() -> None:
    public = ipaddress.ip_address("93.184.216.34")
    assert refusal(public, "https", STRICT) is None
    assert refusal(public, "http", DEV) is not None
    assert refusal(ipaddress.ip_address("127.0.0.1"), "http", DEV) is None
    assert refusal(ipaddress.ip_address("127.0.0.1"), "http", STRICT) is not None


@pytest.mark.parametrize("host", ["10.0.0.1", "169.254.1.1", "127.0.0.1:8443", "[fe80::1]"])
def test_literal_non_public_hosts_are_refused_when_parsed(host: str) -> None:
    with pytest.raises(AddressNotAllowed, match="MOSAIC_ENROLL_ALLOWED_NETWORKS"):
        parse_enrollment_url(f"https://{host}{PATH}", DEV)


def test_networks_setting_parses_cidrs_and_bare_addresses() -> None:
    assert parse_networks(" 10.0.0.0/8, ::1 ;192.168.1.7") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("192.168.1.7/32"),
    )
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match="'intranet' is not an IP network"):
        parse_networks("10.0.0.0/8, intranet")


def test_federation_url_follows_the_same_policy() -> None:
    assert parse_federation_url("https://gw.example.com:8443", STRICT) == (
        "https://gw.example.com:8443"
    )
    assert parse_federation_url("http://[::1]:8443", DEV) == "http://[::1]:8443"
    with pytest.raises(InvalidInput, match="federationUrl must use https"):
        parse_federation_url("http://gw.example.com", DEV)
    with pytest.raises(AddressNotAllowed, match="federationUrl points to 10.0.0.5"):
        parse_federation_url("https://10.0.0.5", DEV)
    with pytest.raises(InvalidInput, match="longer than 2048"):
        parse_federation_url("https://gw.example.com/" + "a" * 2048, STRICT)
