"""client_ip: X-Forwarded-For is believed only from configured proxies, read right to left."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from accounts.network import client_ip, ip_parse


def request(remote: str, *forwarded: str):
    meta = {"REMOTE_ADDR": remote}
    if forwarded:
        # What Django does with repeated headers: joined with ",".
        meta["HTTP_X_FORWARDED_FOR"] = ",".join(forwarded)
    return RequestFactory().get("/", **meta)


@pytest.fixture
def proxies(settings):
    def configure(*entries: str) -> None:
        settings.AUTHSERVER_TRUSTED_PROXIES = list(entries)

    return configure


def test_without_trusted_proxies_forwarded_header_is_ignored(proxies):
    proxies()
    assert client_ip(request("198.51.100.7", "203.0.113.1")) == "198.51.100.7"


def test_forwarded_header_from_untrusted_peer_is_ignored(proxies):
    proxies("10.0.0.1")
    assert client_ip(request("198.51.100.7", "203.0.113.1")) == "198.51.100.7"


def test_trusted_proxy_supplies_client_address(proxies):
    proxies("10.0.0.1")
    assert client_ip(request("10.0.0.1", "203.0.113.1")) == "203.0.113.1"


def test_client_supplied_entries_left_of_the_real_client_are_ignored(proxies):
    # The client sent "X-Forwarded-For: 1.2.3.4"; our proxy appended the address it saw.
    proxies("10.0.0.1")
    assert client_ip(request("10.0.0.1", "1.2.3.4, 203.0.113.1")) == "203.0.113.1"


def test_chain_of_trusted_proxies_is_walked_right_to_left(proxies):
    proxies("10.0.0.0/8", "192.0.2.10")
    req = request("10.0.0.1", "1.2.3.4, 203.0.113.1, 192.0.2.10, 10.9.9.9")
    assert client_ip(req) == "203.0.113.1"


def test_repeated_forwarded_headers_are_read_as_one_list(proxies):
    proxies("10.0.0.1")
    assert client_ip(request("10.0.0.1", "1.2.3.4", "203.0.113.1")) == "203.0.113.1"


def test_all_hops_trusted_gives_the_leftmost(proxies):
    proxies("10.0.0.0/8")
    assert client_ip(request("10.0.0.1", "10.0.0.3, 10.0.0.2")) == "10.0.0.3"


def test_trusted_proxy_without_header_is_the_client(proxies):
    proxies("10.0.0.1")
    assert client_ip(request("10.0.0.1")) == "10.0.0.1"


@pytest.mark.parametrize("garbage", ["not-an-ip", "unknown", "1.2.3.4.5", "x" * 200, "[::1"])
def test_garbage_hop_stops_the_walk_at_the_last_verified_address(proxies, garbage):
    proxies("10.0.0.0/8")
    assert client_ip(request("10.0.0.1", f"203.0.113.1, {garbage}, 10.0.0.2")) == "10.0.0.2"


@pytest.mark.parametrize(
    ("written", "parsed"),
    [
        ("203.0.113.1:5123", "203.0.113.1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:203.0.113.1", "203.0.113.1"),
        (" 203.0.113.1 ", "203.0.113.1"),
    ],
)
def test_forwarded_address_forms(proxies, written, parsed):
    proxies("10.0.0.1")
    assert client_ip(request("10.0.0.1", written)) == parsed


@pytest.mark.parametrize("text", ["", "1.2.3.4:http", "[::1]x", "1.2.3", "::g", "1.2.3.4:"])
def test_ip_parse_rejects_non_addresses(text):
    assert ip_parse(text) is None


def test_ipv6_proxy_network(proxies):
    proxies("2001:db8:1::/48")
    assert client_ip(request("2001:db8:1::5", "2001:db8:ffff::9")) == "2001:db8:ffff::9"


def test_remote_addr_that_is_not_an_ip_gives_empty_string(proxies):
    proxies("10.0.0.1")
    assert client_ip(request("", "203.0.113.1")) == ""
    assert client_ip(request("unix:/run/gunicorn.sock", "203.0.113.1")) == ""


def test_malformed_trusted_proxy_setting_is_a_configuration_error(proxies):
    proxies("10.0.0.1", "loadbalancer")
    with pytest.raises(ImproperlyConfigured, match="loadbalancer"):
        client_ip(request("10.0.0.1", "203.0.113.1"))
