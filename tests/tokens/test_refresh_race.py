"""Twenty real threads race on one refresh token against PostgreSQL (own connections, locks)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.utils import timezone

from tokens.models import RefreshToken, Session
from tokens.sessions import RefreshError, refresh_token_rotate, session_start

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
    assert session.revoked_at is None
    live = RefreshToken.objects.filter(
        session=session, consumed_at__isnull=True, revoked_at__isnull=True
    )
    assert live.count() == 1
    assert RefreshToken.objects.filter(session=session).count() == 2
    # The one live token is the winner's, and it keeps working.
    refresh_token_rotate(value=successes[0].refresh_token, client_id=CLIENT)
