"""The session engine's hand-written SQL (sessions/services.py) loads and writes exactly what the
ORM would: same instances, same rows, fewer statements."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuthEvent
from sessions import services as sessions
from sessions.models import RefreshToken, Session
from sessions.refresh_tokens import refresh_token_digest
from sessions.services import (
    RefreshError,
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


def test_a_rotation_is_one_statement_on_the_session_row_alone(pair):
    with CaptureQueriesContext(connection) as queries:
        second = refresh_token_rotate(
            value=pair.refresh_token, client_id=CLIENT, ip="192.0.2.8", user_agent="ua"
        )
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    # One conditional write by primary key that reads back what the token needs; no lock, no
    # BEGIN/COMMIT.
    assert statements == ["UPDATE"], statements
    assert "FOR UPDATE" not in queries.captured_queries[0]["sql"]
    assert "tokens_session" in queries.captured_queries[0]["sql"]
    session = Session.objects.get(pk=pair.session.pk)
    assert bytes(session.refresh_digest) == refresh_token_digest(second.refresh_token)
    assert bytes(second.session.refresh_digest) == bytes(session.refresh_digest)
    assert session.rotations == 1 and session.refresh_spent_at is not None
    assert session.last_used_at >= session.created_at
    # The returned session is what the database now holds, for every field it loaded.
    deferred = second.session.get_deferred_fields()
    assert {"id", "scope", "audience", "expires_at", "rotations", "idle_expires_at"}.isdisjoint(
        deferred
    )
    stored = fields(session)
    assert {k: v for k, v in stored.items() if k not in deferred | {"refresh_digest"}} == {
        k: getattr(second.session, k) for k in stored if k not in deferred | {"refresh_digest"}
    }
    # The write read back of the user only what a rotation needs (not the password hash).
    assert {"password", "email", "last_login"} <= second.session.user.get_deferred_fields()
    assert second.session.user.sub == str(session.user.public_id)
    # No row per token, and a routine rotation writes no audit row (issue 15.2).
    assert not RefreshToken.objects.exists()
    assert not AuthEvent.objects.filter(session_id=session.pk).exists()


def test_instances_built_from_the_rotation_row_behave_as_from_db(pair):
    """_model_from_row skips Model.__init__; what it builds must be from_db's instance."""
    *_, session_names, user_names = sessions._one_statement_sql(connection.alias, False)
    stored = Session.objects.select_related("user").get(pk=pair.session.pk)
    row = [getattr(stored, name) for name in session_names]
    user_row = [getattr(stored.user, name) for name in user_names]
    for model, names, values in (
        (Session, session_names, row),
        (type(stored.user), user_names, user_row),
    ):
        ours = sessions._model_from_row(model, connection.alias, names, values)
        django = model.from_db(connection.alias, names, values)
        assert type(ours) is model
        assert ours.__dict__.keys() - {"_state"} == django.__dict__.keys() - {"_state"}
        assert all(ours.__dict__[n] == django.__dict__[n] for n in names)
        assert ours.get_deferred_fields() == django.get_deferred_fields() != set()
        assert (ours._state.adding, ours._state.db) == (False, connection.alias)
        assert ours == django and hash(ours) == hash(django)
    # A deferred field loads on first use; save() updates the row rather than inserting one.
    ours = sessions._model_from_row(Session, connection.alias, session_names, row)
    assert ours.created_at == stored.created_at and "created_at" in ours.__dict__
    ours.scope = "changed"
    with CaptureQueriesContext(connection) as queries:
        ours.save(update_fields=["scope"])
    assert queries.captured_queries[-1]["sql"].startswith("UPDATE")
    assert Session.objects.get(pk=pair.session.pk).scope == "changed"
    with pytest.raises(ValueError):  # a row that does not match its names is refused
        sessions._model_from_row(Session, connection.alias, session_names, row[:-1])


def test_the_one_statement_rotation_refuses_what_the_rules_refuse(pair, make_user):
    """The one statement's conditions are Session.is_live and _user_may_continue in SQL (and
    the client check): in every state either path refuses, it matches no row and changes
    nothing, and the locked path then decides (the rest of tests/sessions covers what it
    decides). Only the live session rotates in it."""
    from datetime import timedelta

    from sessions.refresh_tokens import refresh_token_parse

    session, user = pair.session, pair.session.user
    now = timezone.now()
    original = fields(Session.objects.get(pk=session.pk))
    digest = refresh_token_digest(pair.refresh_token)
    parsed = refresh_token_parse(pair.refresh_token)

    def reset():
        Session.objects.filter(pk=session.pk).update(
            **{k: original[k] for k in ("expires_at", "idle_expires_at", "revoked_at")}
        )
        type(user).objects.filter(pk=user.pk).update(is_active=True, password_changed_at=None)

    later = session.created_at + timedelta(seconds=1)
    states = [
        ("expired", lambda: Session.objects.filter(pk=session.pk).update(expires_at=now)),
        ("idle", lambda: Session.objects.filter(pk=session.pk).update(idle_expires_at=now)),
        (
            "password changed",
            lambda: type(user).objects.filter(pk=user.pk).update(password_changed_at=later),
        ),
        ("user inactive", lambda: type(user).objects.filter(pk=user.pk).update(is_active=False)),
    ]
    issue = sessions._Issue(
        presented_at=now, client_id=CLIENT, lifetime=None, ip=None, user_agent="", now=now,
        started=0.0,
    )  # fmt: skip
    for name, change in states:
        reset()
        change()
        row = Session.objects.select_related("user").get(pk=session.pk)
        assert not sessions.session_is_usable(session=row, now=now), name
        assert sessions._rotate_in_one_statement(parsed, digest, issue, connection) is None, name
        assert Session.objects.get(pk=session.pk).rotations == 0, name
    reset()
    other = sessions._Issue(**{**issue.__dict__, "client_id": "someone-else"})
    assert sessions._rotate_in_one_statement(parsed, digest, other, connection) is None
    wrong = sessions._rotate_in_one_statement(parsed, b"x" * 32, issue, connection)
    assert wrong is None
    assert Session.objects.get(pk=session.pk).rotations == 0
    rotated = sessions._rotate_in_one_statement(parsed, digest, issue, connection)
    assert rotated is not None and Session.objects.get(pk=session.pk).rotations == 1


def test_a_rotation_whose_token_cannot_be_signed_leaves_the_presented_token_current(pair):
    """The one statement spends the token before the access token is signed: if signing fails
    (a key-store outage, here a corrupt active key), the write is undone, so the client's retry
    once signing works again is a normal rotation, not a replay that would end the session."""
    from tokens import keys
    from tokens.models import SigningKey
    from tokens.rotation import signing_key_rotate

    now = timezone.now()
    SigningKey.objects.filter(kid=keys.active_signing_key(now).kid).update(
        private_key_ciphertext=b"not a sealed key " * 8
    )
    keys.keyring_reset()
    with pytest.raises(keys.KeyStoreUnavailable):
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    session = Session.objects.get(pk=pair.session.pk)
    assert session.rotations == 0 and session.revoked_at is None
    assert bytes(session.refresh_digest) == refresh_token_digest(pair.refresh_token)
    signing_key_rotate(now=now, immediate=True)
    keys.keyring_reset()
    retry = refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    assert retry.session.rotations == 1
    assert Session.objects.get(pk=pair.session.pk).revoked_at is None


def test_a_session_stays_one_row_however_often_it_refreshes(pair):
    value = pair.refresh_token
    for _ in range(25):
        value = refresh_token_rotate(value=value, client_id=CLIENT).refresh_token
    assert Session.objects.filter(user=pair.session.user).count() == 1
    assert not RefreshToken.objects.exists()
    assert Session.objects.get(pk=pair.session.pk).rotations == 25
    assert not AuthEvent.objects.filter(event_type="token.refreshed").exists()


def test_a_spent_token_is_decided_under_the_row_lock(pair):
    refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    with CaptureQueriesContext(connection) as queries, pytest.raises(RefreshError) as refused:
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    assert refused.value.reason == "reuse_detected"
    sql = [q["sql"] for q in queries.captured_queries]
    assert "FOR UPDATE" not in sql[0]  # the unlocked read saw it was not the current token ...
    assert any("FOR UPDATE OF" in q for q in sql[1:])  # ... and the lock decided


def plan(sql: str, params: list) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (COSTS OFF) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_rotation_finds_its_row_by_primary_key(pair):
    now = timezone.now()
    params = [b"x" * 32, 1, now, now, now, pair.session.pk, b"y" * 32]
    update = plan(sessions._ROTATION_UPDATE_IF_CURRENT, params)
    assert "tokens_session_pkey" in update, update
    read = plan(sessions._session_sql("default"), [pair.session.pk])
    assert "tokens_session_pkey" in read, read
    sql = sessions._one_statement_sql("default", True)[0]
    one = plan(sql, [b"x" * 32, 1, now, now, now, pair.session.pk, b"y" * 32, 0, now, now, CLIENT])
    assert "tokens_session_pkey" in one, one


def indexed_columns(table: str) -> set[str]:
    """Every column any index of `table` reads, in its key, expression or predicate."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            [table],
        )
        definitions = " ".join(row[0] for row in cursor.fetchall())
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            [table],
        )
        columns = {row[0] for row in cursor.fetchall()}
    return {c for c in columns if c in definitions.replace("(", " ").replace(")", " ").split()}


def test_a_rotation_changes_no_indexed_column_so_postgres_can_update_in_place():
    """A HOT update needs no new index entries and its old version is pruned on the page: the
    table does not grow with refreshes (issue 15.1). PostgreSQL makes one only if no column that
    any index reads changed and the page has room (fillfactor below 100)."""
    for statement in (sessions._ROTATION_UPDATE, sessions._one_statement_sql("default", True)[0]):
        written = statement.split(" SET ")[1].split(" WHERE ")[0].split(" FROM ")[0]
        set_columns = set(re.findall(r"(\w+) = ", written))
        assert set_columns == {
            "refresh_digest",
            "rotations",
            "refresh_spent_at",
            "last_used_at",
            "idle_expires_at",
        }, statement
        assert not set_columns & indexed_columns("tokens_session")
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'tokens_session'")
        assert "fillfactor=80" in cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_rotations_are_heap_only_updates(make_user):
    """The statistics agree: the rotations were HOT updates (committed, so counted)."""
    pair = session_start(user=make_user(), client_id=CLIENT, audience=["api"])

    def hot_updates() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_sleep(0.05)")  # idle between statements: flushed
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                "WHERE relname = 'tokens_session'"
            )
            return cursor.fetchone()

    value = pair.refresh_token
    before = hot_updates()
    for _ in range(10):
        value = refresh_token_rotate(value=value, client_id=CLIENT).refresh_token
    after = hot_updates()
    assert after[0] - before[0] == 10
    assert after[1] - before[1] == 10


def test_grace_reissue_takes_the_step_by_step_path(pair, settings):
    settings.AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS = 30
    lost = refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    retry = refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    session = Session.objects.get(pk=pair.session.pk)
    assert session.rotations == 2 and session.refresh_spent_at is None
    assert bytes(session.refresh_digest) == refresh_token_digest(retry.refresh_token)
    # The lost successor was replaced, so it no longer works; the reissue is audited.
    with pytest.raises(RefreshError):
        refresh_token_rotate(value=lost.refresh_token, client_id=CLIENT)
    event = AuthEvent.objects.get(event_type="token.refreshed")
    assert event.details == {"grace": True, "rotations": 2}


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
print("events:", AuthEvent.objects.filter(event_type="token.reuse_detected").count())
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
    assert result.stdout.split("\n")[:3] == ["reuse: reuse_detected", "rotations: 2", "events: 1"]


def test_the_usable_read_decides_as_the_python_rule_and_fetches_no_secret(pair):
    """Introspection asks the database whether the session is usable (session_usable_get): in
    every state it answers as session_is_usable on the full row does, also at the instant of a
    deadline, in one statement that reads neither the digest nor the user's password hash."""
    from datetime import timedelta

    from sessions.services import session_is_usable, session_usable_get

    session, user = pair.session, pair.session.user
    now = timezone.now()
    states = [
        ("live", lambda: None, True),
        ("revoked", lambda: Session.objects.filter(pk=session.pk).update(revoked_at=now), False),
        (
            "idle",
            lambda: Session.objects.filter(pk=session.pk).update(
                revoked_at=None, idle_expires_at=now - timedelta(seconds=1)
            ),
            False,
        ),
        (
            "password changed",
            lambda: (
                Session.objects.filter(pk=session.pk).update(idle_expires_at=session.expires_at),
                type(user).objects.filter(pk=user.pk).update(password_changed_at=now),
            ),
            False,
        ),
        (
            "at the idle deadline",
            lambda: (
                type(user).objects.filter(pk=user.pk).update(password_changed_at=None),
                Session.objects.filter(pk=session.pk).update(idle_expires_at=now),
            ),
            False,
        ),
        (
            "expired",
            lambda: Session.objects.filter(pk=session.pk).update(
                idle_expires_at=session.expires_at, expires_at=now - timedelta(seconds=1)
            ),
            False,
        ),
        (
            "password changed at the start",
            lambda: (
                Session.objects.filter(pk=session.pk).update(expires_at=session.expires_at),
                type(user)
                .objects.filter(pk=user.pk)
                .update(password_changed_at=session.created_at),
            ),
            True,
        ),
        (
            "user inactive",
            lambda: (
                type(user)
                .objects.filter(pk=user.pk)
                .update(password_changed_at=None, is_active=False)
            ),
            False,
        ),
    ]
    for name, change, usable in states:
        change()
        with CaptureQueriesContext(connection) as queries:
            decided = session_usable_get(sid=str(session.pk), now=now)
        assert decided is usable, name
        assert session_is_usable(session=session_get(sid=session.pk), now=now) is usable, name
        assert len(queries) == 1, name
        sql = queries[0]["sql"]
        assert "password" not in sql.replace("password_changed_at", "")
        assert "refresh_digest" not in sql and "user_agent" not in sql
    assert session_usable_get(sid="not-a-uuid") is None
    assert session_usable_get(sid=uuid.uuid4()) is None
