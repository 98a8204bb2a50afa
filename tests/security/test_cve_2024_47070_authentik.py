"""CVE-2024-47070 (authentik, GHSA-7jxf-mmg9-9hg7): a request with an unparsable
`X-Forwarded-For` skipped the password stage, and spoofed values moved a client into another
rate-limit bucket. authserver's rule (accounts/network.py, README "Client IP"): the header is
believed only from AUTHSERVER_TRUSTED_PROXIES, read right to left, a malformed entry stops the
walk. Over HTTP against gunicorn: spoofed or garbage values never change the throttle key, never
skip a password check, and never cause a 500.
"""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import PASSWORD
from tests.live import window_with_room
from tests.security.battery import serve

pytestmark = pytest.mark.slow

# The login throttle's window (the default): each test's counted attempts fit in one.
WINDOW = 300
# A handful of attempts per IP and a generous per-name limit: only the IP bucket can trip.
LIMITS = {
    "AUTHSERVER_LOGIN_THROTTLE_PER_IP": "4",
    "AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN": "1000",
    "AUTHSERVER_LOCKOUT_THRESHOLD": "1000",
}

GARBAGE = [
    "garbage",
    "1.2.3.4:abc",
    "[::1",
    "999.1.1.1",
    "1.2.3.4, ,, ,",
    ",,,,",
    "fe80::1%25eth0",
    "'; DROP TABLE accounts_user; --",
    "1.2.3.4 5.6.7.8",
    "1.2.3.4,\t5.6.7.8",
    "x" * 4000,
    ", ".join(f"10.0.{i // 256}.{i % 256}" for i in range(600)),
    "127.0.0.1",
]


def _spoofed() -> str:
    return f"198.51.100.{secrets.randbelow(250) + 1}"


def _attempt(server, xff: str, username: str | None = None, password: str = "wrong password"):  # noqa: S107 - a wrong one
    return server.login(
        username or f"nobody-{secrets.token_hex(4)}",
        password,
        headers={"X-Forwarded-For": xff},
    )


def test_spoofed_forwarded_for_does_not_escape_the_ip_throttle(child_env, settings):
    """CVE-2024-47070 / README "Client IP": with no trusted proxy, X-Forwarded-For is ignored:
    rotating fake addresses (and garbage) still counts every attempt against the real peer, so
    the per-IP limit answers 429 with Retry-After."""
    with serve(child_env, settings, **LIMITS) as server:
        window_with_room(WINDOW, 60)
        statuses = [_attempt(server, _spoofed()).status_code for _ in range(4)]
        assert statuses == [401] * 4, statuses
        for xff in (_spoofed(), "garbage", "", "127.0.0.1", "::1"):
            response = _attempt(server, xff)
            assert response.status_code == 429, (xff, response.status_code)
            assert int(response.headers["Retry-After"]) > 0


def test_behind_a_trusted_proxy_only_the_proxys_entry_counts(child_env, settings):
    """CVE-2024-47070 / README "Client IP": behind a trusted proxy (here the test itself, on
    127.0.0.1) the client is the rightmost untrusted entry; entries the client wrote to its left
    are ignored, so rotating them stays in one bucket, while another real client address (the
    proxy's entry) has its own."""
    with serve(child_env, settings, AUTHSERVER_TRUSTED_PROXIES="127.0.0.1", **LIMITS) as server:
        window_with_room(WINDOW, 60)
        real = "203.0.113.7"
        for _ in range(4):
            response = _attempt(server, f"{_spoofed()}, {real}")
            assert response.status_code == 401, response.text
        for left in (_spoofed(), "garbage", "127.0.0.1", "::1"):
            response = _attempt(server, f"{left}, {real}")
            assert response.status_code == 429, (left, response.status_code)
        # Another client behind the same proxy is not throttled by the first one's attempts.
        assert _attempt(server, "203.0.113.8").status_code == 401


def test_unparsable_forwarded_for_never_skips_the_password_or_crashes(child_env, settings):
    """CVE-2024-47070 (the bypass itself): with malformed X-Forwarded-For values, from a trusted
    proxy and from an untrusted peer, a wrong password is still refused (401) and the right one
    still works (200): no 500, no login without the password."""
    for trusted in ("", "127.0.0.1,::1"):
        env = {
            "AUTHSERVER_TRUSTED_PROXIES": trusted,
            "AUTHSERVER_LOGIN_THROTTLE_PER_IP": "1000",
            "AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN": "1000",
            "AUTHSERVER_LOCKOUT_THRESHOLD": "1000",
        }
        with serve(child_env, settings, **env) as server:
            for n, xff in enumerate(GARBAGE):
                wrong = _attempt(server, xff, username="alice")
                assert wrong.status_code == 401, (trusted, xff[:40], wrong.status_code)
                assert "access_token" not in wrong.text
                if n % 4 == 0:  # every password hash costs ~100 MiB and real time: a sample
                    right = _attempt(server, xff, username="alice", password=PASSWORD)
                    assert right.status_code == 200, (trusted, xff[:40], right.status_code)
            # The hosted login page and the token endpoint parse the same header.
            page = server.api("GET", "/login", headers={"X-Forwarded-For": GARBAGE[0]})
            assert page.status_code == 200
            token = server.form(
                "/oauth/token", {"grant_type": "client_credentials"}, **{"X-Forwarded-For": "[::1"}
            )
            assert token.status_code == 401
        # the second round registers alice again: start from an empty table
        from accounts.models import User

        User.objects.all().delete()
