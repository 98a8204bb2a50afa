"""`purge_expired_sessions`: ended sessions go after the retention; live ones (and their spent
tokens, needed for reuse detection) stay."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from sessions.models import RefreshToken, Session
from sessions.services import refresh_token_rotate, session_revoke, session_start

pytestmark = pytest.mark.django_db


def start(user, now):
    return session_start(user=user, client_id="authserver", audience=["api"], now=now)


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_expired_sessions", *args, stdout=out)
    return out.getvalue()


def test_purges_only_sessions_that_ended_before_the_retention(make_user, settings):
    settings.AUTHSERVER_SESSION_RETENTION_DAYS = 30
    settings.AUTHSERVER_SESSION_MAX_AGE = 10 * 86_400
    settings.AUTHSERVER_SESSION_IDLE_TIMEOUT = 86_400
    user = make_user()
    now = timezone.now()
    live = start(user, now)
    live = refresh_token_rotate(value=live.refresh_token, client_id="authserver")
    revoked_long_ago = start(user, now - timedelta(days=40))
    session_revoke(session=revoked_long_ago.session, reason="logout", now=now - timedelta(days=39))
    revoked_recently = start(user, now - timedelta(days=2))
    session_revoke(session=revoked_recently.session, reason="logout", now=now - timedelta(days=1))
    idle_long_ago = start(user, now - timedelta(days=60))  # idle deadline passed 59 days ago

    assert "would delete 2 session(s)" in purge("--dry-run")
    assert Session.objects.count() == 4
    output = purge()
    assert "deleted 2 session(s) and 2 refresh token(s)" in output
    remaining = set(Session.objects.values_list("pk", flat=True))
    assert remaining == {live.session.pk, revoked_recently.session.pk}
    assert not Session.objects.filter(pk=idle_long_ago.session.pk).exists()
    # The live session keeps its spent token, so replaying it is still detected as reuse.
    assert RefreshToken.objects.filter(session=live.session).count() == 2


def test_purge_works_in_batches(make_user):
    user = make_user()
    old = timezone.now() - timedelta(days=400)
    for _ in range(5):
        pair = start(user, old)
        session_revoke(session=pair.session, reason="logout", now=old)
    assert "deleted 5 session(s)" in purge("--batch-size", "2")
    assert Session.objects.count() == 0


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT * FROM tokens_refreshtoken WHERE token_hash = '\\x00'::bytea", "token_hash"),
        (
            "SELECT id FROM tokens_session WHERE revoked_at < now() OR idle_expires_at < now()",
            "tokens_session_revoked",
        ),
        (
            "SELECT id FROM tokens_session WHERE revoked_at < now() OR idle_expires_at < now()",
            "tokens_session_idle_expires",
        ),
        (
            "SELECT id FROM tokens_refreshtoken WHERE session_id = "
            "'00000000-0000-0000-0000-000000000000' AND consumed_at IS NULL "
            "AND revoked_at IS NULL",
            "tokens_refresh_live",
        ),
    ],
)
def test_hot_queries_can_use_an_index(sql, index):
    """With sequential scans priced out, PostgreSQL must find an index for each hot query (the
    plans at a million rows are in README, from bench/query_plans.py)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan" not in plan, plan
    assert index in plan, plan
