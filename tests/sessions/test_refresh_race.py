"""Twenty real threads race on one refresh token against PostgreSQL (own connections, locks)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuthEvent
from sessions import services as sessions
from sessions.models import RefreshToken, Session
from sessions.refresh_tokens import refresh_token_digest
from sessions.services import RefreshError, refresh_token_rotate, session_revoke, session_start

CLIENT = "authserver"
RACERS = 20


def race(value: str) -> tuple[list, list, list]:
    """Release RACERS threads at once, all presenting `value` at the same instant."""
    barrier = threading.Barrier(RACERS)
    presented_at = timezone.now()
    successes, refusals, crashes = [], [], []
    lock = threading.Lock()

    def attempt() -> None:
        try:
            barrier.wait()
            pair = refresh_token_rotate(value=value, client_id=CLIENT, presented_at=presented_at)
            with lock:
                successes.append(pair)
        except RefreshError as exc:
            with lock:
                refusals.append(exc.reason)
        except Exception as exc:  # anything else would be a 500
            with lock:
                crashes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return successes, refusals, crashes


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("grace", [0, 30], ids=["strict", "grace-window"])
def test_parallel_refreshes_of_one_token_give_exactly_one_success(make_user, settings, grace):
    settings.AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS = grace
    pair = session_start(user=make_user(), client_id=CLIENT, audience=["api"])
    successes, refusals, crashes = race(pair.refresh_token)
    assert crashes == []
    assert len(successes) == 1
    assert refusals == ["concurrent_use"] * (RACERS - 1)
    session = Session.objects.get(pk=pair.session.pk)
    assert session.revoked_at is None and session.rotations == 1
    # The one live token is the winner's (the row holds its digest), and it keeps working.
    assert bytes(session.refresh_digest) == refresh_token_digest(successes[0].refresh_token)
    assert not RefreshToken.objects.exists()
    refresh_token_rotate(value=successes[0].refresh_token, client_id=CLIENT)


# --- Between the unlocked read and the conditional write (sessions/services.py _rotate_unlocked) --


def interleaved(monkeypatch, competitor) -> None:
    """Run `competitor()` to completion, on its own connection, while the next refresh has its
    token in hand but has not written yet: it makes the successor just before the write (after
    the read, on the path that reads the session first)."""
    real = sessions.refresh_token_new
    ran = []

    def new_token_after_the_competitor(**kwargs):
        if not ran:
            ran.append(True)
            thread = threading.Thread(target=own_connection(competitor))
            thread.start()
            thread.join(timeout=60)
        return real(**kwargs)

    monkeypatch.setattr(sessions, "refresh_token_new", new_token_after_the_competitor)


def own_connection(call):
    def run() -> None:
        try:
            call()
        finally:
            connection.close()

    return run


@pytest.mark.django_db(transaction=True)
def test_a_token_spent_between_the_read_and_the_write_is_a_lost_race(make_user, monkeypatch):
    pair = session_start(user=make_user(), client_id=CLIENT, audience=["api"])
    winner = []
    interleaved(
        monkeypatch,
        lambda: winner.append(refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)),
    )
    with pytest.raises(RefreshError) as refused:
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    assert refused.value.reason == "concurrent_use"
    assert len(winner) == 1
    session = Session.objects.get(pk=pair.session.pk)
    assert session.revoked_at is None and session.rotations == 1  # nothing of the loser's
    assert bytes(session.refresh_digest) == refresh_token_digest(winner[0].refresh_token)
    assert not AuthEvent.objects.filter(event_type="token.reuse_detected").exists()
    refresh_token_rotate(value=winner[0].refresh_token, client_id=CLIENT)


@pytest.mark.django_db(transaction=True)
def test_a_session_revoked_between_the_read_and_the_write_issues_nothing(make_user, monkeypatch):
    pair = session_start(user=make_user(), client_id=CLIENT, audience=["api"])
    interleaved(
        monkeypatch,
        lambda: session_revoke(session=Session.objects.get(pk=pair.session.pk), reason="logout"),
    )
    with pytest.raises(RefreshError) as refused:
        refresh_token_rotate(value=pair.refresh_token, client_id=CLIENT)
    assert refused.value.reason == "session_revoked"
    session = Session.objects.get(pk=pair.session.pk)
    assert session.rotations == 0 and session.refresh_digest is None
