"""The session engine against real PostgreSQL: rotation, reuse detection, expiry, grace window."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuthEvent
from sessions.models import RefreshToken, Session
from sessions.refresh_tokens import TOKEN_LENGTH, refresh_token_parse
from sessions.services import (
    RefreshError,
    refresh_token_rotate,
    session_get_live,
    session_revoke,
    session_start,
    user_sessions_revoke,
)

pytestmark = pytest.mark.django_db

CLIENT = "authserver"


@pytest.fixture
def start(make_user):
    def _start(user=None, **kwargs):
        return session_start(
            user=user or make_user(), client_id=CLIENT, audience=["https://api.example"], **kwargs
        )

    return _start


def live_tokens(session) -> int:
    """How many refresh tokens of the session could still be spent: its current one, if any."""
    row = Session.objects.get(pk=session.pk)
    return int(row.refresh_digest is not None and row.revoked_at is None)


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def test_only_the_sha256_digest_of_a_refresh_token_is_stored(start):
    pair = start()
    row = Session.objects.get(pk=pair.session.pk)
    assert bytes(row.refresh_digest) == digest(pair.refresh_token)
    with connection.cursor() as cursor:
        everything = ""
        for table in ("tokens_session", "tokens_refreshtoken", "audit_authevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - constant names
            everything += repr(cursor.fetchall())
    assert pair.refresh_token not in everything
    assert pair.refresh_token not in str(row)


def test_refresh_tokens_are_unguessable_and_self_describing(start):
    """192 random bits and a 128-bit MAC (RFC 6749 §10.10 asks for at most 2^-128 odds of a
    guess); the rest names the session and generation."""
    pairs = [start() for _ in range(5)]
    values = {p.refresh_token for p in pairs}
    assert len(values) == 5
    assert all(len(v) == TOKEN_LENGTH for v in values)
    for pair in pairs:
        parsed = refresh_token_parse(pair.refresh_token)
        assert parsed.session_id == pair.session.id and parsed.generation == 0
        assert parsed.authentic
    randoms = {base64.urlsafe_b64decode(v + "=")[25:49] for v in values}
    assert len(randoms) == 5


def test_rotation_spends_the_token_and_issues_the_next_generation(start):
    first = start()
    second = refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
    assert second.refresh_token != first.refresh_token
    assert second.session.id == first.session.id
    session = Session.objects.get(pk=first.session.pk)
    assert bytes(session.refresh_digest) == digest(second.refresh_token)
    assert refresh_token_parse(second.refresh_token).generation == 1
    assert session.rotations == 1 and session.refresh_spent_at is not None
    assert live_tokens(first.session) == 1
    # Counted on the session and in the metrics; no audit row for a routine rotation.
    assert not AuthEvent.objects.filter(session_id=first.session.id).exists()


def test_a_chain_of_rotations_keeps_one_live_token_and_one_row(start):
    pair = start()
    for _ in range(5):
        pair = refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    assert live_tokens(pair.session) == 1
    assert Session.objects.filter(user=pair.session.user).count() == 1
    assert not RefreshToken.objects.exists()


def test_reused_refresh_token_revokes_the_whole_session(start):
    first = start()
    second = refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
    third = refresh_token_rotate(value=second.refresh_token, client_id=CLIENT)
    with pytest.raises(RefreshError) as excinfo:
        refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
    assert excinfo.value.reason == "reuse_detected"
    session = Session.objects.get(pk=first.session.pk)
    assert session.revoked_at is not None
    assert session.revoke_reason == "reuse_detected"
    assert live_tokens(session) == 0
    # The newest token of the family stops working too.
    with pytest.raises(RefreshError) as newest:
        refresh_token_rotate(value=third.refresh_token, client_id=CLIENT)
    assert newest.value.reason == "session_revoked"
    event = AuthEvent.objects.get(event_type="token.reuse_detected")
    assert event.session_id == first.session.id
    assert first.refresh_token not in repr(event.details)


def test_strict_mode_replaying_the_just_spent_token_kills_the_session(start):
    first = start()
    refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
    with pytest.raises(RefreshError):
        refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
    assert session_get_live(sid=str(first.session.id)) is None


def test_token_presented_before_it_was_spent_loses_the_race_without_revoking(start):
    first = start()
    presented = timezone.now()
    winner = refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
    with pytest.raises(RefreshError) as excinfo:
        refresh_token_rotate(value=first.refresh_token, client_id=CLIENT, presented_at=presented)
    assert excinfo.value.reason == "concurrent_use"
    assert session_get_live(sid=str(first.session.id)) is not None
    refresh_token_rotate(value=winner.refresh_token, client_id=CLIENT)


@pytest.mark.parametrize(
    "value",
    ["", "x", "a" * 42, "a" * 44, "Ä" * 43, "Ä" * 87, "a" * 86, "a" * 88, "a" * 10_000, None, 12],
)
def test_malformed_refresh_tokens_are_refused_without_a_query(value, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(RefreshError) as excinfo:
        refresh_token_rotate(value=value, client_id=CLIENT)
    assert excinfo.value.reason == "malformed"


def test_unknown_refresh_token_is_refused(start):
    start()
    with pytest.raises(RefreshError) as excinfo:
        refresh_token_rotate(value="A" * 43, client_id=CLIENT)
    assert excinfo.value.reason == "unknown"


def test_token_of_another_client_is_refused_and_not_spent(start):
    pair = start()
    with pytest.raises(RefreshError) as excinfo:
        refresh_token_rotate(value=pair.refresh_token, client_id="someone-else")
    assert excinfo.value.reason == "client_mismatch"
    refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)


def test_idle_timeout_ends_the_session(start, settings):
    settings.AUTHSERVER_SESSION_IDLE_TIMEOUT = 3600
    pair = start()
    later = timezone.now() + timedelta(seconds=3601)
    with pytest.raises(RefreshError) as excinfo:
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT, now=later)
    assert excinfo.value.reason == "expired"


def test_refresh_moves_the_idle_deadline_but_not_the_absolute_one(start, settings):
    settings.AUTHSERVER_SESSION_IDLE_TIMEOUT = 3600
    settings.AUTHSERVER_SESSION_MAX_AGE = 3 * 3600
    now = timezone.now()
    pair = start(now=now)
    for step in (1, 2):  # each refresh inside the idle period keeps the session going
        pair = refresh_token_rotate(
            value=pair.refresh_token, client_id=CLIENT, now=now + timedelta(seconds=3000 * step)
        )
    with pytest.raises(RefreshError) as excinfo:  # past the absolute lifetime
        refresh_token_rotate(
            value=pair.refresh_token, client_id=CLIENT, now=now + timedelta(seconds=3 * 3600 + 1)
        )
    assert excinfo.value.reason == "expired"


def test_deactivated_user_cannot_refresh_and_the_session_is_revoked(start, make_user):
    """A bulk update bypasses User.save() (which revokes at once): the refresh still refuses."""
    user = make_user()
    pair = start(user)
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    with pytest.raises(RefreshError) as excinfo:
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    assert excinfo.value.reason == "user_inactive"
    assert Session.objects.get(pk=pair.session.pk).revoke_reason == "user_inactive"


def test_password_change_after_login_ends_the_session(start, make_user):
    user = make_user()
    pair = start(user)
    user.password_changed_at = timezone.now() + timedelta(seconds=1)
    user.save()
    assert session_get_live(sid=str(pair.session.id)) is None
    with pytest.raises(RefreshError) as excinfo:
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    assert excinfo.value.reason == "password_changed"


def test_logout_revokes_the_session_and_its_tokens(start):
    pair = start()
    assert session_revoke(session=pair.session, reason="logout") is True
    assert session_revoke(session=pair.session, reason="logout") is False
    with pytest.raises(RefreshError):
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)


def test_user_sessions_revoke_ends_every_session_of_that_user_only(start, make_user):
    alice, bob = make_user(), make_user()
    a1, a2, b1 = start(alice), start(alice), start(bob)
    assert user_sessions_revoke(user=alice, reason="logout_all") == 2
    for pair in (a1, a2):
        with pytest.raises(RefreshError):
            refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    refresh_token_rotate(value=b1.refresh_token, client_id=CLIENT)


def test_failed_rotation_leaves_the_old_state(start, monkeypatch):
    pair = start()

    def broken_signer(**kwargs):
        raise RuntimeError("signing failed")

    monkeypatch.setattr("sessions.services.access_token_issue", broken_signer)
    with pytest.raises(RuntimeError):
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    monkeypatch.undo()
    assert live_tokens(pair.session) == 1
    assert Session.objects.get(pk=pair.session.pk).rotations == 0
    refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)


class TestGraceWindow:
    @pytest.fixture(autouse=True)
    def grace(self, settings):
        settings.AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS = 30

    def test_lost_response_is_recovered_by_presenting_the_spent_token_again(self, start):
        first = start()
        lost = refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
        retry = refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
        assert retry.refresh_token not in {first.refresh_token, lost.refresh_token}
        assert session_get_live(sid=str(first.session.id)) is not None
        # The successor that was never received is revoked; the fresh one works.
        with pytest.raises(RefreshError):
            refresh_token_rotate(value=lost.refresh_token, client_id=CLIENT)

    def test_retry_after_the_successor_was_used_is_reuse(self, start):
        first = start()
        second = refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
        refresh_token_rotate(value=second.refresh_token, client_id=CLIENT)
        with pytest.raises(RefreshError) as excinfo:
            refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
        assert excinfo.value.reason == "reuse_detected"
        assert session_get_live(sid=str(first.session.id)) is None

    def test_retry_after_the_window_is_reuse(self, start):
        first = start()
        refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
        later = timezone.now() + timedelta(seconds=31)
        with pytest.raises(RefreshError) as excinfo:
            refresh_token_rotate(value=first.refresh_token, client_id=CLIENT, now=later)
        assert excinfo.value.reason == "reuse_detected"

    def test_the_grace_retry_works_once(self, start):
        first = start()
        refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
        refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
        with pytest.raises(RefreshError) as excinfo:
            refresh_token_rotate(value=first.refresh_token, client_id=CLIENT)
        assert excinfo.value.reason == "reuse_detected"
