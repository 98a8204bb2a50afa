"""Django's PostgreSQL backend with the persistent-connection health check run at most once a
second per connection instead of before every request.

Django's `CONN_HEALTH_CHECKS` sends `SELECT 1` before the first query of every request, so that a
connection broken since the last request (database restart, fail-over, an idle timeout in between)
is replaced instead of failing the request. On the token endpoints that check is a whole extra
round trip: 9-11 % of an introspection's CPU (bench/README.md). Here a connection that answered a
check within the last `HEALTH_CHECK_INTERVAL` seconds skips it, unless psycopg already knows the
connection is closed or broken (no round trip needed to tell).

The cost: a connection the server dropped inside that second is found broken by the request's own
first query, which then fails as a database outage does (503 `temporarily_unavailable`, nothing
written: the transaction never began), and Django closes the connection at the end of that
request, so the next request on that thread reconnects. At most one request per connection, and
only for a break less than a second after a successful check.

Client-side deadline (issue 19.3): every wait for the server (a query, a commit, the health
check) lasts at most settings_dict["CLIENT_TIMEOUT_MS"] (the statement timeout plus a margin,
authserver/settings.py). statement_timeout is enforced by the server, so it does nothing when
the server stops answering altogether (paused, a dead host, a partition): psycopg would wait
on the socket for as long as TCP keeps it open. Past the deadline the connection is closed (its
state is unknown) and the query raises OperationalError: the request answers 503
`temporarily_unavailable` (authserver.middleware, authserver.errors) and the next one on that
thread reconnects (within DATABASE_CONNECT_TIMEOUT).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import psycopg
from django.db.backends.postgresql import base
from psycopg import errors
from psycopg.connection import _WAIT_INTERVAL

HEALTH_CHECK_INTERVAL = 1.0  # seconds


class StallBreaker:
    """Fail fast while the database is known not to answer (a circuit breaker, per process).

    Once a wait for the server ran out (the client-side deadline, or a connect timeout), every
    query and connection attempt of this process fails at once for OPEN_SECONDS instead of
    holding a thread for the whole deadline: otherwise the requests that need the database would
    soon hold every thread, and JWKS and the probes, which do not, would queue behind them. Then
    one attempt goes through (the others still fail fast while it runs); if it is answered, the
    breaker closes, otherwise it stays open another OPEN_SECONDS.
    """

    OPEN_SECONDS = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_until = 0.0  # monotonic; 0: closed
        self._trial_until = 0.0  # an attempt is under way until then

    def admit(self, limit: float) -> bool:
        """May a wait of at most `limit` seconds go ahead now?"""
        if not self._open_until:
            return True
        now = time.monotonic()
        with self._lock:
            if not self._open_until:
                return True
            if now < self._open_until or now < self._trial_until:
                return False
            self._trial_until = now + limit  # this one tries; the rest keep failing fast
            return True

    def answered(self) -> None:
        if self._open_until:
            with self._lock:
                self._open_until = 0.0
                self._trial_until = 0.0

    def stalled(self) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.OPEN_SECONDS
            self._trial_until = 0.0


stall_breaker = StallBreaker()


def _unavailable(reason: str) -> errors.OperationalError:
    return errors.OperationalError(reason)


class DeadlineConnection(psycopg.Connection):
    """psycopg's connection, with a bound on every wait for the server."""

    authserver_wait_seconds: float | None = None

    def wait(self, gen, interval: float = _WAIT_INTERVAL, timeout: float | None = None):
        limit = self.authserver_wait_seconds
        if timeout is not None or not limit:
            return super().wait(gen, interval=interval, timeout=timeout)
        if not stall_breaker.admit(limit):
            gen.close()  # never started: nothing was sent on this connection
            raise _unavailable("the database did not answer recently; failing fast")
        try:
            result = super().wait(gen, interval=interval, timeout=limit)
        except errors._WaitTimeout:
            stall_breaker.stalled()
            # Mid-protocol: nothing more can be sent or read on this connection.
            self.pgconn.finish()
            raise _unavailable(
                f"the database did not answer within {limit:g} s; connection closed"
            ) from None
        stall_breaker.answered()
        return result


class DatabaseWrapper(base.DatabaseWrapper):
    # monotonic time of the last successful health check or connect; reset with the connection
    health_checked_at: float | None = None

    def get_new_connection(self, conn_params):
        limit_ms = self.settings_dict.get("CLIENT_TIMEOUT_MS") or 0
        if limit_ms and not stall_breaker.admit(float(conn_params.get("connect_timeout") or 2)):
            raise _unavailable("the database did not answer recently; failing fast")
        try:
            connection = super().get_new_connection(conn_params)
        except errors.ConnectionTimeout:
            if limit_ms:
                stall_breaker.stalled()
            raise
        except errors.OperationalError:
            if limit_ms:
                stall_breaker.answered()  # refused at once: down, not stalled; no need to wait
            raise
        if limit_ms:
            stall_breaker.answered()  # the server completed the handshake: it answers again
        if limit_ms and type(connection) is psycopg.Connection:
            connection.__class__ = DeadlineConnection
            connection.authserver_wait_seconds = limit_ms / 1000
        return connection

    def connect(self):
        super().connect()
        self.health_checked_at = time.monotonic()

    def close_if_health_check_failed(self):
        if self.connection is None or not self.health_check_enabled or self.health_check_done:
            return
        checked_at = self.health_checked_at
        now = time.monotonic()
        if (
            checked_at is not None
            and now - checked_at < HEALTH_CHECK_INTERVAL
            and not self.connection.closed
            and not self.connection.broken
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
        self.health_checked_at = now if self.connection is not None else None

    def close_if_unusable_or_obsolete(self):
        """Django's, except after an error: the connection is closed rather than tested with a
        round trip at the start of the next request (which would make even /healthz wait on a
        stalled database). The next query reconnects."""
        if self.connection is not None and self.errors_occurred:
            self.close()
            return
        super().close_if_unusable_or_obsolete()

    @contextlib.contextmanager
    def wait_at_most(self, seconds: float) -> Iterator[None]:
        """Within the block, a wait for the server lasts at most `seconds` (the readiness
        probe's own short deadline)."""
        connection = self.connection
        if not isinstance(connection, DeadlineConnection):
            yield
            return
        before = connection.authserver_wait_seconds
        connection.authserver_wait_seconds = seconds
        try:
            yield
        finally:
            connection.authserver_wait_seconds = before


def fetchone(connection, sql: str, params) -> tuple | None:
    """`sql` run on `connection` (a Django DatabaseWrapper), its first row: for the statements
    every token request runs (the refresh rotation, the introspection liveness read).

    Django opens a cursor per `connection.cursor()`: the health check, the thread and
    transaction checks, a new psycopg cursor with its adaptation context, the timezone-loader
    check and a CursorWrapper, then the execute wrappers around the statement; about 30 us of
    CPU of a 50 us statement, in-process (bench/README.md). Here the same checks run (the health
    check, ensure_connection, thread sharing, a broken transaction) and errors are Django's
    (wrap_database_errors, which also marks the connection for closing at the end of the
    request), but the psycopg cursor is made once per connection (by Django's create_cursor,
    its timezone check included) and kept on the wrapper until the connection is replaced.
    With query logging (DEBUG, CaptureQueriesContext) or execute wrappers installed the
    statement goes through Django's cursor, so both still see it."""
    if connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        cursor = connection.__dict__.get("_authserver_kept_cursor")
        if cursor is None or cursor.connection is not connection.connection or cursor.closed:
            cursor = connection._authserver_kept_cursor = connection.create_cursor()
        cursor.execute(sql, params)
        return cursor.fetchone()
