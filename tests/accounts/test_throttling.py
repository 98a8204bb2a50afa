"""The counters behind the login throttle: atomic, shared, windowed, on Redis and the DB cache."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import connections

from accounts.throttling import CacheUnavailable, ip_bucket, login_digest, login_rate_check
from authserver.counters import counter_incr
from tests.accounts.conftest import T0

WINDOW = 300


@pytest.fixture(autouse=True)
def limits(settings):
    settings.AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS = WINDOW
    settings.AUTHSERVER_LOGIN_THROTTLE_PER_IP = 5
    settings.AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN = 3


def run_in_threads(count: int, target) -> list:
    results: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            value = target(n)
            with lock:
                results.append(value)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_default_cache_in_tests_is_redis():
    assert caches["default"].__class__.__name__ == "RedisCache"


def _concurrent_increments_are_not_lost():
    def work(_: int) -> list[int]:
        return [counter_incr("counter", 60) for _ in range(10)]

    results = run_in_threads(10, work)
    values = sorted(v for chunk in results for v in chunk)
    assert values == list(range(1, 101))  # every increment seen exactly once
    assert caches["default"].get("counter") == 100


def test_concurrent_increments_are_not_lost_on_redis():
    _concurrent_increments_are_not_lost()


@pytest.mark.django_db(transaction=True)
def test_concurrent_increments_are_not_lost_on_database_cache(database_cache):
    _concurrent_increments_are_not_lost()


def _parallel_attempts_cannot_exceed_the_limit():
    results = run_in_threads(
        20, lambda n: login_rate_check(ip="198.51.100.1", login=f"name{n}", now=T0)
    )
    assert sum(1 for hit in results if hit is None) == 5  # the IP limit, exactly
    assert sum(1 for hit in results if hit is not None and hit.first) == 1


def test_parallel_attempts_cannot_exceed_the_limit_on_redis():
    _parallel_attempts_cannot_exceed_the_limit()


@pytest.mark.django_db(transaction=True)
def test_parallel_attempts_cannot_exceed_the_limit_on_database_cache(database_cache):
    _parallel_attempts_cannot_exceed_the_limit()


def test_ip_limit_and_retry_after():
    now = T0 + timedelta(seconds=100)  # T0 is on a window boundary: 200 s remain
    for n in range(5):
        assert login_rate_check(ip="198.51.100.1", login=f"name{n}", now=now) is None
    hit = login_rate_check(ip="198.51.100.1", login="another", now=now)
    assert hit.scope == "ip"
    assert hit.retry_after == 200
    assert hit.first
    assert not login_rate_check(ip="198.51.100.1", login="more", now=now).first
    # Other addresses are unaffected; the next window starts afresh.
    assert login_rate_check(ip="198.51.100.2", login="x", now=now) is None
    assert login_rate_check(ip="198.51.100.1", login="y", now=T0 + timedelta(seconds=300)) is None


def test_login_limit_applies_to_names_whatever_their_case_or_form():
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in "alice")  # NFKC folds it to "alice"
    forms = ["alice", "ALICE", " Alice ", full_width]
    results = [
        login_rate_check(ip=f"198.51.100.{n}", login=name, now=T0) for n, name in enumerate(forms)
    ]
    assert results[:3] == [None, None, None]
    assert results[3].scope == "login"
    assert results[3].retry_after == WINDOW


def test_attempt_refused_on_ip_does_not_spend_the_login_budget():
    for n in range(6):
        login_rate_check(ip="198.51.100.1", login=f"filler{n}", now=T0)
    for _ in range(5):
        assert login_rate_check(ip="198.51.100.1", login="victim", now=T0).scope == "ip"
    assert login_rate_check(ip="198.51.100.9", login="victim", now=T0) is None


def test_ipv6_addresses_share_a_bucket_per_64():
    assert ip_bucket("2001:db8:1:2:aaaa::1") == ip_bucket("2001:db8:1:2:bbbb::2")
    assert ip_bucket("2001:db8:1:2::1") != ip_bucket("2001:db8:1:3::1")
    for n in range(5):
        assert login_rate_check(ip=f"2001:db8:1:2::{n + 1}", login=f"u{n}", now=T0) is None
    assert login_rate_check(ip="2001:db8:1:2:ffff::1", login="u9", now=T0).scope == "ip"


def test_cache_keys_do_not_contain_the_login_name(settings):
    login_rate_check(ip="198.51.100.1", login="Alice@Example.com", now=T0)
    client = caches["default"]._cache.get_client(None)
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    keys = [key.decode() for key in client.keys(f"{prefix}*")]
    assert keys
    assert not [key for key in keys if "alice" in key.lower() or "198.51" in key]
    assert any(login_digest("alice@example.com") in key for key in keys)


def test_unavailable_cache_raises(dead_cache):
    with pytest.raises(CacheUnavailable):
        login_rate_check(ip="198.51.100.1", login="alice", now=T0)
