"""The failure budgets behind the login throttle: atomic, shared, windowed, on Redis and the DB
cache; a reservation is kept by a failure and given back by a success."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import connections

from accounts.throttling import (
    BudgetReservation,
    ThrottleHit,
    ip_bucket,
    login_budget_release,
    login_budget_reserve,
    login_digest,
)
from authserver.counters import CacheUnavailable, counter_incr
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


def reserve(ip: str, login: str, now=T0) -> BudgetReservation | ThrottleHit:
    return login_budget_reserve(ip=ip, login=login, now=now)


def fail(ip: str, login: str, now=T0) -> None:
    """One failed attempt: its reservation is kept."""
    assert isinstance(reserve(ip, login, now), BudgetReservation)


def _parallel_attempts_cannot_exceed_the_budget():
    results = run_in_threads(20, lambda n: reserve("198.51.100.1", f"name{n}"))
    # Every attempt that got a slot then fails: the budget of 5 lets exactly 5 through.
    assert sum(1 for r in results if isinstance(r, BudgetReservation)) == 5
    hits = [r for r in results if isinstance(r, ThrottleHit)]
    assert len(hits) == 15
    assert sum(1 for hit in hits if hit.first) == 1


def test_parallel_attempts_cannot_exceed_the_budget_on_redis():
    _parallel_attempts_cannot_exceed_the_budget()


@pytest.mark.django_db(transaction=True)
def test_parallel_attempts_cannot_exceed_the_budget_on_database_cache(database_cache):
    _parallel_attempts_cannot_exceed_the_budget()


def _successes_give_their_slots_back():
    for n in range(50):  # ten times the IP budget, three times over one name
        taken = reserve("198.51.100.1", "alice" if n % 2 else f"user{n}")
        assert isinstance(taken, BudgetReservation), n
        login_budget_release(taken)
    for n in range(5):
        fail("198.51.100.1", f"typo{n}")
    assert reserve("198.51.100.1", "one-more").scope == "ip"


def test_successes_give_their_slots_back_on_redis():
    _successes_give_their_slots_back()


@pytest.mark.django_db(transaction=True)
def test_successes_give_their_slots_back_on_database_cache(database_cache):
    _successes_give_their_slots_back()


def _release_after_the_window_expired_leaves_no_counter():
    taken = reserve("198.51.100.1", "alice")
    caches["default"].delete_many(taken.keys)  # as if the window's keys had expired
    login_budget_release(taken)
    assert caches["default"].get_many(taken.keys) == {}


def test_release_after_the_window_expired_leaves_no_counter_on_redis():
    _release_after_the_window_expired_leaves_no_counter()


@pytest.mark.django_db(transaction=True)
def test_release_after_the_window_expired_leaves_no_counter_on_database_cache(database_cache):
    _release_after_the_window_expired_leaves_no_counter()


def test_ip_budget_and_retry_after():
    now = T0 + timedelta(seconds=100)  # T0 is on a window boundary: 200 s remain
    for n in range(5):
        fail("198.51.100.1", f"name{n}", now)
    hit = reserve("198.51.100.1", "another", now)
    assert hit.scope == "ip"
    assert hit.retry_after == 200
    assert hit.first
    assert not reserve("198.51.100.1", "more", now).first
    # Other addresses are unaffected; the next window starts afresh.
    assert isinstance(reserve("198.51.100.2", "x", now), BudgetReservation)
    assert isinstance(reserve("198.51.100.1", "y", T0 + timedelta(seconds=300)), BudgetReservation)


def test_login_budget_applies_to_names_whatever_their_case_or_form():
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in "alice")  # NFKC folds it to "alice"
    forms = ["alice", "ALICE", " Alice ", full_width]
    results = [reserve(f"198.51.100.{n}", name) for n, name in enumerate(forms)]
    assert all(isinstance(r, BudgetReservation) for r in results[:3])
    assert results[3].scope == "login"
    assert results[3].retry_after == WINDOW


def test_attempt_refused_on_ip_does_not_spend_the_login_budget():
    for n in range(5):
        fail("198.51.100.1", f"filler{n}")
    for _ in range(5):
        assert reserve("198.51.100.1", "victim").scope == "ip"
    assert isinstance(reserve("198.51.100.9", "victim"), BudgetReservation)


def test_attempt_refused_on_login_does_not_spend_the_ip_budget():
    for n in range(3):
        fail(f"203.0.113.{n}", "victim")
    for _ in range(10):  # a client retrying a name whose budget is spent, from the office NAT
        assert reserve("198.51.100.1", "victim").scope == "login"
    for n in range(5):
        fail("198.51.100.1", f"colleague{n}")  # the office's own budget is intact


def test_ipv6_addresses_share_a_bucket_per_64():
    assert ip_bucket("2001:db8:1:2:aaaa::1") == ip_bucket("2001:db8:1:2:bbbb::2")
    assert ip_bucket("2001:db8:1:2::1") != ip_bucket("2001:db8:1:3::1")
    for n in range(5):
        fail(f"2001:db8:1:2::{n + 1}", f"u{n}")
    assert reserve("2001:db8:1:2:ffff::1", "u9").scope == "ip"


def test_cache_keys_do_not_contain_the_login_name(settings):
    fail("198.51.100.1", "Alice@Example.com")
    client = caches["default"]._cache.get_client(None)
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    keys = [key.decode() for key in client.keys(f"{prefix}*")]
    assert keys
    assert not [key for key in keys if "alice" in key.lower() or "198.51" in key]
    assert any(login_digest("alice@example.com") in key for key in keys)


def test_unavailable_cache_raises(dead_cache):
    with pytest.raises(CacheUnavailable):
        reserve("198.51.100.1", "alice")
