"""`purge_expired_sessions`: ended sessions go after the retention; live ones stay."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from oauth.clients import client_create
from oauth.models import AuthorizationCode
from sessions.models import RefreshToken, Session
from sessions.services import (
    browser_session_start,
    refresh_token_rotate,
    session_references,
    session_revoke,
    session_start,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["index", "heap", "auto"])
def order(request):
    """Every purge test runs in both orders (and the automatic choice)."""
    return request.param


def start(user, now):
    return session_start(user=user, client_id="authserver", audience=["api"], now=now)


def purge(*args: str, order: str = "auto") -> str:
    out = io.StringIO()
    call_command("purge_expired_sessions", *args, "--order", order, stdout=out)
    return out.getvalue()


def test_purges_only_sessions_that_ended_before_the_retention(make_user, settings, order):
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

    assert "would delete 2 session(s)" in purge("--dry-run", order=order)
    assert Session.objects.count() == 4
    output = purge(order=order)
    assert "deleted 2 session(s) and 0 refresh token(s)" in output
    remaining = set(Session.objects.values_list("pk", flat=True))
    assert remaining == {live.session.pk, revoked_recently.session.pk}
    assert not Session.objects.filter(pk=idle_long_ago.session.pk).exists()
    refresh_token_rotate(value=live.refresh_token, client_id="authserver")


def test_a_live_session_found_by_its_old_bound_is_kept_and_its_bound_moved(
    make_user, settings, order
):
    """A refresh does not move `ends_not_before` (so it stays a HOT update); the purge finds
    such a session among its candidates, keeps it, and moves the bound to its idle deadline so
    it is not looked at again until then. Rows without a bound (written before it existed) get
    one."""
    settings.AUTHSERVER_SESSION_RETENTION_DAYS = 30
    user = make_user()
    now = timezone.now()
    kept = start(user, now - timedelta(days=5))
    Session.objects.filter(pk=kept.session.pk).update(ends_not_before=now - timedelta(days=60))
    unbounded = start(user, now)
    Session.objects.filter(pk=unbounded.session.pk).update(ends_not_before=None)
    ended_unbounded = start(user, now - timedelta(days=90))
    Session.objects.filter(pk=ended_unbounded.session.pk).update(ends_not_before=None)

    assert "deleted 1 session(s)" in purge(order=order)
    rows = {s.pk: s for s in Session.objects.all()}
    assert set(rows) == {kept.session.pk, unbounded.session.pk}
    for row in rows.values():
        assert row.ends_not_before == row.idle_expires_at
    refresh_token_rotate(value=kept.refresh_token, client_id="authserver")


def test_the_purge_clears_what_refers_to_a_deleted_session(make_user, order):
    """A grant whose browser sign-in is purged keeps living without its parent (SET_NULL), and
    refresh tokens of the old format go with their session (CASCADE), in the purge's one
    statement per batch."""
    user = make_user()
    old = timezone.now() - timedelta(days=400)
    browser = browser_session_start(user=user, now=old)
    session_revoke(session=browser, reason="logout", now=old)
    grant = session_start(
        user=user, client_id="app", audience=["api"], now=timezone.now(), parent=None
    )
    # Its own bound is behind too: the batch that deletes its parent also moves its bound, and
    # both changes must land (one statement may modify a row only once).
    Session.objects.filter(pk=grant.session.pk).update(parent=browser, ends_not_before=old)
    legacy = start(user, old)
    RefreshToken.objects.create(
        session=legacy.session,
        token_hash=b"\x01" * 32,
        created_at=old,
        expires_at=old,
    )
    session_revoke(session=legacy.session, reason="logout", now=old)

    registered = client_create(
        name="App",
        client_type="confidential",
        grant_types=["authorization_code"],
        redirect_uris=["https://app.example/cb"],
        scopes=["openid"],
    )
    code = AuthorizationCode.objects.create(
        code_hash="0" * 64,
        client=registered.client,
        user=user,
        redirect_uri="https://app.example/cb",
        auth_time=old,
        created_at=old,
        expires_at=old,
        session=legacy.session,
        browser_session=browser,
    )

    assert "deleted 2 session(s) and 1 refresh token(s)" in purge(order=order)
    kept = Session.objects.get(pk=grant.session.pk)
    assert kept.parent_id is None and kept.ends_not_before == kept.idle_expires_at
    assert not RefreshToken.objects.exists()
    code.refresh_from_db()
    assert code.session_id is None and code.browser_session_id is None
    # Nothing anywhere refers to a session that is gone (no constraint says so: the purge does).
    with connection.cursor() as cursor:
        for relation in session_references():
            table, column = relation.related_model._meta.db_table, relation.field.column
            cursor.execute(
                f"SELECT count(*) FROM {table} WHERE {column} IS NOT NULL AND {column} NOT IN "  # noqa: S608
                "(SELECT id FROM tokens_session)"
            )
            assert cursor.fetchone()[0] == 0, (table, column)


def test_purge_works_in_batches(make_user, order):
    user = make_user()
    old = timezone.now() - timedelta(days=400)
    for _ in range(5):
        pair = start(user, old)
        session_revoke(session=pair.session, reason="logout", now=old)
    assert "deleted 5 session(s)" in purge("--batch-size", "2", order=order)
    assert Session.objects.count() == 0


def test_max_rate_spreads_the_batches_over_time(make_user, order):
    """--max-rate 20 with batches of 2: six sessions take at least (6 - 2) / 20 = 0.2 s (each
    batch after the first waits for its share of time; unpaced they take milliseconds)."""
    user = make_user()
    old = timezone.now() - timedelta(days=400)
    for _ in range(6):
        pair = start(user, old)
        session_revoke(session=pair.session, reason="logout", now=old)
    started = time.monotonic()
    assert "deleted 6 session(s)" in purge("--batch-size", "2", "--max-rate", "20", order=order)
    assert time.monotonic() - started >= 0.2
    assert Session.objects.count() == 0


def test_each_batch_commits_asynchronously_and_writes_its_pages_back_as_it_goes(make_user, order):
    """A trigger records the settings in force where the purge deletes: the batch's commit does
    not wait for the WAL flush, and the pages it evicts are handed to the kernel every 256 kB
    instead of piling up in the page cache (sessions/services.py PURGE_COMMIT_SETTINGS)."""
    user = make_user()
    old = timezone.now() - timedelta(days=400)
    for _ in range(3):
        pair = start(user, old)
        session_revoke(session=pair.session, reason="logout", now=old)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE purge_settings (sync text, flush text)")
        cursor.execute(
            "CREATE FUNCTION pg_temp.purge_settings_record() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN INSERT INTO purge_settings VALUES (current_setting('synchronous_commit'),"
            " current_setting('backend_flush_after')); RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER purge_settings_record AFTER DELETE ON tokens_session "
            "FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.purge_settings_record()"
        )
    assert "deleted 3 session(s)" in purge("--batch-size", "2", order=order)
    with connection.cursor() as cursor:
        cursor.execute("SELECT sync, flush FROM purge_settings")
        recorded = cursor.fetchall()
    assert recorded and set(recorded) == {("off", "256kB")}


def test_a_negative_max_rate_is_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        call_command("purge_expired_sessions", "--max-rate", "-1")
    assert stopped.value.code == 2
    assert "--max-rate must not be negative" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT * FROM tokens_refreshtoken WHERE token_hash = '\\x00'::bytea", "token_hash"),
        (
            "SELECT id FROM tokens_session WHERE ends_not_before >= now() - interval '1 year' "
            "AND ends_not_before < now() ORDER BY ends_not_before LIMIT 5000",
            "tokens_session_ends_nb",
        ),
        (
            "SELECT id FROM tokens_session WHERE revoked_at >= now() - interval '1 year' "
            "AND revoked_at < now() ORDER BY revoked_at LIMIT 5000",
            "tokens_session_revoked",
        ),
        (
            "SELECT id FROM tokens_session WHERE ends_not_before IS NULL LIMIT 5000",
            "tokens_session_ends_nb",
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


def test_the_heap_order_walks_every_page_of_the_table(make_user):
    """In physical order each batch covers a range of pages: sessions spread over several pages
    all go, batch after batch, and the live one among them stays."""
    user = make_user()
    old = timezone.now() - timedelta(days=400)
    for _ in range(90):  # about 30 rows a page: three pages or more
        start(user, old)
    live = start(user, timezone.now())
    Session.objects.exclude(pk=live.session.pk).update(revoked_at=old, revoke_reason="logout")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT (ctid::text::point)[0]) FROM tokens_session")
        assert cursor.fetchone()[0] >= 3
    assert "deleted 90 session(s)" in purge("--batch-size", "2", order="heap")
    assert list(Session.objects.values_list("pk", flat=True)) == [live.session.pk]


def test_auto_order_takes_the_heap_only_when_many_sessions_ended(make_user):
    """The automatic choice follows the planner's estimate of ended sessions against the
    table's pages: a table mostly of ended sessions is walked in physical order, a table of
    live sessions with a few ended ones through the indexes."""
    from sessions.services import _PostgresPurge

    user = make_user()
    old = timezone.now() - timedelta(days=400)
    for _ in range(300):
        start(user, timezone.now())
    cutoff = timezone.now() - timedelta(days=30)

    def heap_order() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE tokens_session")
        return _PostgresPurge(connection.alias, cutoff, 5000)._heap_order()

    assert not heap_order()
    Session.objects.filter(pk__in=Session.objects.values("pk")[:200]).update(revoked_at=old)
    assert heap_order()
