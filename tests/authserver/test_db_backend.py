"""authserver.db: Django's PostgreSQL backend with the health check spaced out to once a second.

Each test drives its own connection wrapper through request boundaries the way Django's
request_started/request_finished handlers do (`close_if_unusable_or_obsolete`), against the real
PostgreSQL. `is_usable` (the check's `SELECT 1`) is counted by wrapping it; it still runs.
"""

from __future__ import annotations

import pytest
from django.db import (
    OperationalError,
    ProgrammingError,
    connection,
    connections,
)
from django.db.transaction import TransactionManagementError

from authserver.db.base import HEALTH_CHECK_INTERVAL, DatabaseWrapper, fetchone

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["cursor", "kept"])
def wrapper(request):
    """A connection wrapper whose requests query through Django's cursor, or through the
    cursor `fetchone` keeps (the token endpoints' statements): both behave the same."""
    conn = connections.create_connection("default")
    conn.via = request.param
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
        if getattr(conn, "via", "cursor") == "kept":
            return fetchone(conn, "SELECT pg_backend_pid()", [])[0]
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


@pytest.fixture
def kept():
    conn = connections.create_connection("default")
    yield conn
    conn.close()


def test_the_kept_cursor_is_made_once_per_connection(kept):
    assert fetchone(kept, "SELECT %s::int + 1", [1]) == (2,)
    cursor = kept._authserver_kept_cursor
    assert fetchone(kept, "SELECT 1 WHERE false", []) is None
    assert kept._authserver_kept_cursor is cursor
    kept.close()  # a new connection gets a new cursor, never the closed one's
    assert fetchone(kept, "SELECT 3", []) == (3,)
    assert kept._authserver_kept_cursor is not cursor
    assert kept._authserver_kept_cursor.connection is kept.connection


def test_errors_are_djangos_and_mark_the_connection(kept):
    with pytest.raises(ProgrammingError):
        fetchone(kept, "SELECT * FROM no_such_table", [])
    assert kept.errors_occurred  # closed at the end of the request, as Django's cursor would
    kept.close_if_unusable_or_obsolete()
    assert kept.connection is None
    assert fetchone(kept, "SELECT 4", []) == (4,)


def test_a_broken_transaction_is_refused_before_anything_is_sent(kept):
    kept.set_autocommit(False)  # a transaction of this wrapper's own, in which a query failed
    try:
        kept.needs_rollback = True
        with pytest.raises(TransactionManagementError):
            fetchone(kept, "SELECT 5", [])
    finally:
        kept.needs_rollback = False
        kept.rollback()
        kept.set_autocommit(True)


def test_query_logging_and_execute_wrappers_still_see_the_statement(kept):
    seen = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with kept.execute_wrapper(spy):
        assert fetchone(kept, "SELECT 6", []) == (6,)
    assert seen == ["SELECT 6"]
    kept.force_debug_cursor = True
    try:
        fetchone(kept, "SELECT 7", [])
    finally:
        kept.force_debug_cursor = False
    assert kept.queries[-1]["sql"] == "SELECT 7"
