"""Single-use links (accounts/links.py): hashed at rest, expiring, superseded, one winner."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.links import (
    AccountLinkInvalid,
    account_link_check,
    account_link_consume,
    account_link_digest,
    account_link_issue,
)
from accounts.models import AccountLink

RESET = AccountLink.Purpose.RESET


def issue(user, **kwargs):
    return account_link_issue(purpose=RESET, user=user, email=user.email, ttl=1800, **kwargs)


def reason(**kwargs) -> str:
    with pytest.raises(AccountLinkInvalid) as info:
        account_link_consume(purpose=RESET, **kwargs)
    return info.value.reason


@pytest.mark.django_db
def test_only_the_digest_is_stored(make_user):
    link, token = issue(make_user())
    row = AccountLink.objects.get(pk=link.pk)
    assert row.digest == account_link_digest(token) != token
    assert token not in str(row.__dict__) and token not in str(row)


@pytest.mark.django_db
def test_a_link_works_once(make_user):
    user = make_user()
    _, token = issue(user)
    assert account_link_consume(purpose=RESET, token=token).user == user
    assert reason(token=token) == "used"


@pytest.mark.django_db
def test_expired_tampered_and_wrong_purpose_links_fail(make_user):
    user = make_user()
    _, token = issue(user, now=timezone.now() - timedelta(hours=1))
    assert reason(token=token) == "expired"
    _, token = issue(user)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert reason(token=flipped) == "unknown"
    assert reason(token=token + "x") == "unknown"
    assert reason(token="") == "unknown"
    with pytest.raises(AccountLinkInvalid):
        account_link_consume(purpose=AccountLink.Purpose.VERIFY_EMAIL, token=token)
    assert account_link_consume(purpose=RESET, token=token)  # still good for its own purpose


@pytest.mark.django_db
def test_a_newer_link_ends_the_older_one(make_user):
    user = make_user()
    _, first = issue(user)
    _, second = issue(user)
    assert reason(token=first) == "ended"
    account_link_check(purpose=RESET, token=second)


@pytest.mark.django_db
def test_a_password_change_ends_reset_links(make_user):
    user = make_user()
    _, token = issue(user, now=timezone.now() - timedelta(seconds=5))
    user.set_password("another long passphrase 42")
    user.save()
    assert reason(token=token) == "ended"


@pytest.mark.django_db
def test_an_inactive_user_reset_link_is_dead(make_user):
    user = make_user()
    _, token = issue(user)
    user.is_active = False
    user.save()
    assert reason(token=token) == "ended"


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_uses_of_one_link_have_exactly_one_winner(make_user):
    _, token = issue(make_user())
    barrier = threading.Barrier(20)
    winners, losers, crashes = [], [], []

    def attempt():
        try:
            barrier.wait()
            winners.append(account_link_consume(purpose=RESET, token=token))
        except AccountLinkInvalid as exc:
            losers.append(exc.reason)
        except Exception as exc:
            crashes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert crashes == []
    assert len(winners) == 1 and len(losers) == 19
    assert set(losers) == {"used"}


@pytest.mark.django_db
def test_purge_command_deletes_only_long_expired_links(make_user):
    from io import StringIO

    from django.core.management import call_command

    user = make_user()
    old, _ = issue(user, now=timezone.now() - timedelta(days=10))
    live, _ = issue(user)
    out = StringIO()
    call_command("purge_account_links", stdout=out)
    assert "deleted 1 account link(s)" in out.getvalue()
    assert list(AccountLink.objects.values_list("pk", flat=True)) == [live.pk]
    assert old.pk != live.pk
