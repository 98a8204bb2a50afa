"""Email verification and the change of address, in-process: the rules the HTTP tests do not
reach cheaply (stale sign-ups, a deactivated account, an address taken meanwhile, the recent
sign-in the account page needs)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.links import account_link_digest
from accounts.login_flow import AUTH_TIME_SESSION_KEY
from accounts.models import AccountLink, User
from accounts.registration import invite_accept, invite_send, user_signup
from accounts.verification import (
    EmailConfirmFailed,
    email_change_request,
    email_confirm,
    email_verification_send,
)
from mail.models import Outbox
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a fresh and long passphrase 42"


def digest_in(row: Outbox, path: str) -> str:
    """The digest of the token in the mailed link (what the page keeps in the session)."""
    found = re.search(re.escape(path) + r"\?token=([A-Za-z0-9_-]{43})", row.body_text)
    assert found, row.body_text
    return account_link_digest(found.group(1))


@pytest.fixture
def signed_in(client, make_user):
    user = make_user(username="alice", email="alice@example.com")
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    return user


def test_the_account_page_asks_for_a_recent_sign_in(client, signed_in):
    session = client.session
    session[AUTH_TIME_SESSION_KEY] = int(time.time()) - 3600
    session.save()
    response = client.post(reverse("account:email"), {"email": "new@example.org"})
    assert response.status_code == 303 and "prompt=login" in response["Location"]
    assert not Outbox.objects.exists()


def test_a_taken_address_gets_the_same_answer_and_its_owner_is_told(client, signed_in, make_user):
    make_user(username="bob", email="bob@example.org")
    taken = client.post(reverse("account:email"), {"email": "BOB@example.org"})
    free = client.post(reverse("account:email"), {"email": "free@example.org"})
    assert (taken.status_code, taken["Location"]) == (free.status_code, free["Location"])
    templates = sorted(Outbox.objects.values_list("template", "to"))
    assert templates == [("email_in_use", "bob@example.org"), ("verify_email", "free@example.org")]
    signed_in.refresh_from_db()
    assert signed_in.email == "alice@example.com"


def test_a_bad_address_is_a_form_error(client, signed_in):
    for bad in ("not an address", "a@b.example\r\nBcc: x@y.example", "a@b.example,c@d.example"):
        response = client.post(reverse("account:email"), {"email": bad})
        assert response.status_code == 200
        assert 'class="field-error"' in response.content.decode()
    assert not Outbox.objects.exists()


def test_the_address_taken_meanwhile_is_not_confirmed(make_user):
    alice = make_user(username="alice", email="alice@example.com")
    email_change_request(user=alice, new_email="shared@example.org")
    digest = digest_in(Outbox.objects.get(to="shared@example.org"), "/email/confirm")
    make_user(username="bob", email="shared@example.org")
    with pytest.raises(EmailConfirmFailed) as failed:
        email_confirm(digest=digest)
    assert failed.value.reason == "taken"
    alice.refresh_from_db()
    assert alice.email == "alice@example.com" and not alice.email_verified


def test_a_link_does_not_reactivate_a_deactivated_account(make_user):
    alice = make_user(username="alice")
    email_verification_send(user=alice)
    digest = digest_in(Outbox.objects.get(), "/email/confirm")
    alice.is_active = False
    alice.save()
    with pytest.raises(EmailConfirmFailed) as failed:
        email_confirm(digest=digest)
    assert failed.value.reason == "inactive"
    alice.refresh_from_db()
    assert not alice.is_active and not alice.email_verified


def test_a_newer_link_ends_the_older_one(make_user):
    alice = make_user(username="alice")
    email_verification_send(user=alice)
    email_change_request(user=alice, new_email="other@example.org")
    old, new = (digest_in(row, "/email/confirm") for row in Outbox.objects.order_by("id"))
    with pytest.raises(EmailConfirmFailed):
        email_confirm(digest=old)
    assert email_confirm(digest=new).changed


def test_a_stale_pending_sign_up_frees_its_name_and_address():
    user_signup(username="squatter", email="victim@example.org", password=NEW_PASSWORD)
    pending = User.objects.get(username="squatter")
    assert not pending.is_active
    # While its link lives, the address is held: the new sign-up only mails the address.
    user_signup(username="victim", email="victim@example.org", password=NEW_PASSWORD)
    assert not User.objects.filter(username="victim").exists()
    User.objects.filter(pk=pending.pk).update(date_joined=timezone.now() - timedelta(days=2))
    user_signup(username="victim", email="victim@example.org", password=NEW_PASSWORD)
    assert not User.objects.filter(username="squatter").exists()
    assert User.objects.get(username="victim").email == "victim@example.org"


def test_an_active_account_is_never_taken_as_stale(make_user):
    old = make_user(username="old", email="old@example.org")
    User.objects.filter(pk=old.pk).update(date_joined=timezone.now() - timedelta(days=400))
    user_signup(username="old", email="someone@example.org", password=NEW_PASSWORD)
    assert User.objects.filter(pk=old.pk).exists()
    assert Outbox.objects.get().template == "signup_username_taken"


def test_sign_up_without_required_verification_is_active_but_unverified(settings):
    settings.AUTHSERVER_REGISTRATION_REQUIRE_VERIFIED = False
    user_signup(username="quick", email="quick@example.org", password=NEW_PASSWORD)
    quick = User.objects.get(username="quick")
    assert quick.is_active and not quick.email_verified


def test_an_invitation_refused_for_its_password_stays_usable():
    from django.core.exceptions import ValidationError

    invite_send(email="ivy@example.org")
    digest = digest_in(Outbox.objects.get(), "/invite")
    with pytest.raises(ValidationError):
        invite_accept(digest=digest, username="ivy", password="ivy")
    assert AccountLink.objects.get(purpose="invite").used_at is None
    accepted = invite_accept(digest=digest, username="ivy", password=NEW_PASSWORD)
    assert accepted.user.email_verified and accepted.user.is_active


@pytest.mark.parametrize(
    ("headers", "path", "saved"),
    [
        ({"HTTP_ACCEPT_LANGUAGE": "de-DE,de;q=0.9,en;q=0.5"}, "/signup", "de"),
        ({"HTTP_ACCEPT_LANGUAGE": "fr-FR,fr;q=0.9"}, "/signup", ""),  # not one we serve
        ({}, "/signup", ""),  # no choice made: stays the browser's
        # An authorization request's ui_locales, carried by `next`, comes first.
        (
            {"HTTP_ACCEPT_LANGUAGE": "en"},
            "/signup?next=/oauth/authorize%3Fclient_id%3Dx%26ui_locales%3Dde",
            "de",
        ),
    ],
)
def test_a_new_account_keeps_the_language_it_was_made_in(rf, headers, path, saved):
    """Sign-up and an accepted invitation save the language the person asked for, so later
    mails with no page of theirs behind them (security notices, an admin's reset) use it."""
    user_signup(
        username="lang", email="lang@example.org", password=NEW_PASSWORD,
        request=rf.get(path, **headers),
    )  # fmt: skip
    assert User.objects.get(username="lang").language == saved
    invite_send(email="ivy@example.org")
    digest = digest_in(Outbox.objects.get(to="ivy@example.org"), "/invite")
    accepted = invite_accept(
        digest=digest, username="ivy", password=NEW_PASSWORD, request=rf.get(path, **headers)
    )
    assert User.objects.get(pk=accepted.user.pk).language == saved


def test_sign_up_takes_a_hashing_slot_and_is_refused_when_none_is_free(client, settings):
    """A flood of sign-ups is bounded like one of sign-ins (accounts/hash_gate.py)."""
    from accounts.hash_gate import hash_gate

    settings.AUTHSERVER_REGISTRATION = "open"
    settings.AUTHSERVER_PASSWORD_HASH_CONCURRENCY = 1
    settings.AUTHSERVER_PASSWORD_HASH_QUEUE = 0
    gate = hash_gate()
    gate.acquire()
    try:
        response = client.post(
            reverse("signup"),
            {
                "username": "busy",
                "email": "busy@example.org",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
        )
    finally:
        gate.release()
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert not User.objects.filter(username="busy").exists()
    assert not Outbox.objects.exists()


def test_mailed_links_are_built_from_the_issuer_not_the_host_header(client, settings):
    settings.AUTHSERVER_REGISTRATION = "open"
    settings.AUTHSERVER_ISSUER = "https://id.example.com"
    settings.ALLOWED_HOSTS = ["other.example.net"]
    response = client.post(
        reverse("signup"),
        {
            "username": "hosty",
            "email": "hosty@example.org",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
        HTTP_HOST="other.example.net",
    )
    assert response.status_code == 303
    body = Outbox.objects.get().body_text
    assert "https://id.example.com/email/confirm?token=" in body
    assert "other.example.net" not in body


def test_a_confirmed_change_ends_reset_links_sent_to_the_old_address(make_user):
    from accounts.links import AccountLinkInvalid, account_link_check, account_link_issue

    alice = make_user(username="alice", email="alice@example.com")
    _, reset_token = account_link_issue(
        purpose=AccountLink.Purpose.RESET, email=alice.email, ttl=1800, user=alice
    )
    email_change_request(user=alice, new_email="new@example.org")
    email_confirm(digest=digest_in(Outbox.objects.get(to="new@example.org"), "/email/confirm"))
    with pytest.raises(AccountLinkInvalid):
        account_link_check(purpose=AccountLink.Purpose.RESET, token=reset_token)


def test_expired_and_foreign_purpose_links_get_the_clear_page(client, make_user):
    from accounts.links import account_link_issue

    alice = make_user(username="alice")
    email_verification_send(user=alice)
    expired = re.search(r"token=([A-Za-z0-9_-]{43})", Outbox.objects.get().body_text).group(1)
    AccountLink.objects.filter(user=alice).update(expires_at=timezone.now() - timedelta(1))
    _, reset = account_link_issue(
        purpose=AccountLink.Purpose.RESET, email=alice.email, ttl=1800, user=alice
    )
    for token in (expired, reset):  # a reset link's token is no confirmation link
        page = client.get(reverse("email_confirm"), {"token": token})
        assert page.status_code == 400
        assert "This link can\u2019t be used" in page.content.decode()
        invite = client.get(reverse("invite_accept"), {"token": token})
        assert invite.status_code == 400
    alice.refresh_from_db()
    assert not alice.email_verified
