"""authserver.db: Django's PostgreSQL backend with the health check spaced out to once a second.

Each test drives its own connection wrapper through request boundaries the way Django's
request_started/request_finished handlers do (`close_if_unusable_or_obsolete`), against the real
PostgreSQL. `is_usable` (the check's `SELECT 1`) is counted by wrapping it; it still runs.
"""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection, connections

from authserver.db.base import HEALTH_CHECK_INTERVAL, DatabaseWrapper

pytestmark = pytest.mark.django_db


@pytest.fixture
def wrapper():
    conn = connections.create_connection("default")
    assert isinstance(conn, DatabaseWrapper)
    checks = []
    real_is_usable = conn.is_usable

    def counted_is_usable():
        usable = real_is_usable()
        checks.append(usable)
        return usable

    conn.is_usable = counted_is_usable
    conn.checks = checks
    yield conn
    conn.close()


def request(conn) -> int:
    """One request's worth of database use: the backend pid that answered it."""
    conn.close_if_unusable_or_obsolete()  # request_started
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]
    finally:
        conn.close_if_unusable_or_obsolete()  # request_finished


def age_last_check(conn) -> None:
    conn.health_checked_at -= HEALTH_CHECK_INTERVAL


def terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cursor.fetchone()[0] is True


def test_health_checks_are_on_for_the_wrapper(wrapper):
    wrapper.ensure_connection()
    assert wrapper.health_check_enabled is True


def test_requests_inside_the_interval_skip_the_check(wrapper):
    first = request(wrapper)  # connects: a fresh connection needs no check
    for _ in range(5):
        assert request(wrapper) == first
    assert wrapper.checks == []


def test_the_first_request_after_the_interval_checks_once(wrapper):
    pid = request(wrapper)
    age_last_check(wrapper)
    assert request(wrapper) == pid
    assert wrapper.checks == [True]
    assert request(wrapper) == pid  # checked just now
    assert wrapper.checks == [True]


def test_a_connection_broken_before_the_check_is_replaced_before_use(wrapper):
    pid = request(wrapper)
    terminate(pid)
    age_last_check(wrapper)
    replaced = request(wrapper)  # no error reaches the request
    assert replaced != pid
    assert wrapper.checks == [False]


def test_a_connection_psycopg_knows_is_closed_is_checked_inside_the_interval(wrapper):
    pid = request(wrapper)
    wrapper.connection.close()  # closed under Django: psycopg knows without a round trip
    assert request(wrapper) != pid
    assert wrapper.checks == [False]


def test_a_break_inside_the_interval_fails_one_request_and_the_next_reconnects(wrapper):
    pid = request(wrapper)
    terminate(pid)
    with pytest.raises(OperationalError):
        request(wrapper)  # the error a view maps to 503 temporarily_unavailable
    assert wrapper.connection is None  # closed at request_finished, not kept broken
    assert request(wrapper) != pid
