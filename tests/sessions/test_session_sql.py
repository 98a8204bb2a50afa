"""The session engine's hand-written SQL (sessions/services.py) loads and writes exactly what the
ORM would: same instances, same rows, fewer statements."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuthEvent
from sessions import services as sessions
from sessions.models import RefreshToken, Session
from sessions.services import (
    RefreshError,
    _token_load,
    refresh_token_rotate,
    session_get,
    session_get_live,
    session_start,
)
from tests.live import base_env, manage

pytestmark = pytest.mark.django_db
CLIENT = "authserver"


def fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


@pytest.fixture
def pair(make_user):
    user = make_user(password_changed_at=None)
    return session_start(user=user, client_id=CLIENT, audience=["api"], ip="192.0.2.7")


def test_locked_token_equals_what_the_orm_loads(pair):
    digest = hashlib.sha256(pair.refresh_token.encode()).digest()
    with transaction.atomic():
        token = _token_load(digest, lock=True)
    orm = RefreshToken.objects.select_related("session", "session__user").get(token_hash=digest)
    assert fields(token) | {"token_hash": bytes(token.token_hash)} == fields(orm) | {
        "token_hash": bytes(orm.token_hash)
    }
    assert fields(token.session) == fields(orm.session)
    assert fields(token.session.user) == fields(orm.session.user)
    assert token.session.ip == "192.0.2.7"
    assert not token._state.adding and token.session.user._state.db == "default"


def test_unknown_digest_finds_nothing():
    with transaction.atomic():
        assert _token_load(b"\0" * 32, lock=True) is None
    assert _token_load(b"\0" * 32, lock=False) is None


def test_session_get_equals_the_orm_and_refuses_bad_ids(pair):
    session = session_get(sid=str(pair.session.id))
    orm = Session.objects.select_related("user").get(pk=pair.session.pk)
    assert fields(session) == fields(orm)
    assert fields(session.user) == fields(orm.user)
    assert session_get(sid=pair.session.id).pk == orm.pk
    for bad in ("", "not-a-uuid", None, 12, str(uuid.uuid4())):
        assert session_get(sid=bad) is None


def test_session_get_live_checks_the_user_filter(pair, make_user):
    assert session_get_live(sid=str(pair.session.id), user=pair.session.user) is not None
    assert session_get_live(sid=str(pair.session.id), user=make_user()) is None


def test_a_rotation_is_two_statements_and_writes_what_the_orm_would(pair):
    with CaptureQueriesContext(connection) as queries:
        second = refresh_token_rotate(
            value=pair.refresh_token, client_id=CLIENT, ip="192.0.2.8", user_agent="ua"
        )
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    # A read without a lock and one conditional write; no BEGIN/SAVEPOINT, no COMMIT.
    assert statements == ["SELECT", "WITH"], statements
    assert "FOR UPDATE" not in queries.captured_queries[0]["sql"]
    old = RefreshToken.objects.get(token_hash=hashlib.sha256(pair.refresh_token.encode()).digest())
    new = RefreshToken.objects.get(
        token_hash=hashlib.sha256(second.refresh_token.encode()).digest()
    )
    session = Session.objects.get(pk=pair.session.pk)
    assert old.consumed_at is not None and old.revoked_at is None
    assert new.parent_id == old.pk and new.session_id == session.pk
    assert new.consumed_at is None and new.revoked_at is None
    assert new.expires_at == session.idle_expires_at
    assert session.rotations == 1 and session.last_used_at == new.created_at
    # The returned session is what the database now holds.
    assert fields(second.session) == fields(session)
    event = AuthEvent.objects.get(event_type="token.refreshed", session_id=session.pk)
    assert model_to_dict(event) | {"id": None} == {
        "id": None,
        "event_type": "token.refreshed",
        "occurred_at": event.occurred_at,
        "user": session.user_id,
        "user_public_id": session.user.public_id,
        "client_id": CLIENT,
        "session_id": session.pk,
        "ip": "192.0.2.8",
        "user_agent": "ua",
        "details": {"rotation": 1, "grace": False},
    }


def test_unlocked_read_equals_the_locked_one(pair):
    digest = hashlib.sha256(pair.refresh_token.encode()).digest()
    read = _token_load(digest, lock=False)
    with transaction.atomic():
        locked = _token_load(digest, lock=True)
    assert fields(read) == fields(locked)
    assert fields(read.session) == fields(locked.session)
    assert fields(read.session.user) == fields(locked.session.user)


def test_a_spent_token_is_decided_under_the_row_lock(pair):
    refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    with CaptureQueriesContext(connection) as queries, pytest.raises(RefreshError) as refused:
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    assert refused.value.reason == "reuse_detected"
    sql = [q["sql"] for q in queries.captured_queries]
    assert "FOR UPDATE" not in sql[0]  # the unlocked read saw it spent ...
    assert any("FOR UPDATE OF t, s" in q for q in sql[1:])  # ... and the lock decided


def plan(sql: str, params: list) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (COSTS OFF) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_refresh_statements_find_rows_by_key_not_by_the_live_indexes(pair):
    """On tables without statistics (a fresh install, the benchmark's scratch database) a
    `consumed_at IS NULL AND revoked_at IS NULL` test made the planner scan the partial "live"
    indexes, which hold every live token and session and the entries of every token spent
    since the last vacuum, on each refresh."""
    token = RefreshToken.objects.get(session=pair.session)
    now = timezone.now()
    spend = plan(sessions._PARENT_SPEND_IF_UNSPENT, [now, token.pk, pair.session.pk])
    assert "tokens_refreshtoken_pkey" in spend and "tokens_session_pkey" in spend, spend
    assert "_live" not in spend, spend
    read = plan(sessions._token_sql("default", False), [bytes(token.token_hash)])
    assert "token_hash_key" in read and "_live" not in read, read


def test_grace_reissue_takes_the_step_by_step_path(pair, settings):
    settings.AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS = 30
    lost = refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    retry = refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    rows = {r.pk: r for r in RefreshToken.objects.filter(session=pair.session)}
    lost_row = next(
        r
        for r in rows.values()
        if bytes(r.token_hash) == hashlib.sha256(lost.refresh_token.encode()).digest()
    )
    assert lost_row.revoked_at is not None
    assert any(r.parent_id == lost_row.pk for r in rows.values())
    assert Session.objects.get(pk=pair.session.pk).rotations == 2
    assert AuthEvent.objects.filter(event_type="token.refreshed").count() == 2
    assert retry.refresh_token


SQLITE_SCRIPT = """
from accounts.models import User
from sessions.services import RefreshError, refresh_token_rotate, session_start
from audit.models import AuthEvent
from sessions import services as sessions
user = User.objects.create(username="lite", email="lite@example.com")
first = session_start(user=user, client_id="authserver", audience=["api"])
second = refresh_token_rotate(value=first.refresh_token, client_id="authserver")
third = refresh_token_rotate(value=second.refresh_token, client_id="authserver")
try:
    refresh_token_rotate(value=first.refresh_token, client_id="authserver")
except RefreshError as exc:
    print("reuse:", exc.reason)
print("rotations:", third.session.rotations)
print("events:", AuthEvent.objects.filter(event_type="token.refreshed").count())
"""


@pytest.mark.slow
def test_sqlite_takes_the_orm_path(tmp_path):
    """`make run` uses SQLite, where the PostgreSQL statements do not apply."""
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env.pop("REDIS_URL", None)
    migrated = manage("migrate", "--noinput", env=env, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    result = manage("shell", "--no-imports", "-c", SQLITE_SCRIPT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["reuse: reuse_detected", "rotations: 2", "events: 2"]
