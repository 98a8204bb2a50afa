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
"""

from __future__ import annotations

import time

from django.db.backends.postgresql import base

HEALTH_CHECK_INTERVAL = 1.0  # seconds


class DatabaseWrapper(base.DatabaseWrapper):
    # monotonic time of the last successful health check or connect; reset with the connection
    health_checked_at: float | None = None

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
