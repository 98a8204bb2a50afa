"""Password reset pages and services with Django's test client, real PostgreSQL and Redis.

The live runs (gunicorn, a real SMTP server, Chromium, races over HTTP) are in
tests/flows/test_password_reset_live.py and tests/flows/test_browser_password_reset.py."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts.links import account_link_issue
from accounts.models import AccountLink
from audit.models import AuthEvent
from mail.models import Outbox
from mail.services import mail_deliver_due
from sessions.models import Session
from sessions.services import session_start
from tests.conftest import PASSWORD
from tests.live import window_with_room

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new passphrase 77"
LINK = re.compile(r"(https?://[^\s\"<>]+/password/reset\?token=([A-Za-z0-9_-]{43}))")
CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


def csrf(client: Client, path: str) -> str:
    match = CSRF.search(client.get(path).content)
    assert match, f"{path} has no CSRF token"
    return match.group(1).decode()


def forgot(client: Client, login: str, **extra):
    return client.post(
        "/password/forgot",
        {"csrfmiddlewaretoken": csrf(client, "/password/forgot"), "login": login},
        **extra,
    )


def mailed_link() -> tuple[str, str]:
    mail.outbox.clear()
    mail_deliver_due()
    (message,) = mail.outbox
    url, token = LINK.search(message.body).groups()
    return url, token


def set_password(client: Client, one: str, two: str | None = None):
    return client.post(
        "/password/reset",
        {
            "csrfmiddlewaretoken": csrf(client, "/password/reset"),
            "new_password1": one,
            "new_password2": one if two is None else two,
        },
    )


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)


def test_the_login_page_links_to_the_reset_page(client):
    page = client.get("/login")
    assert b'href="/password/forgot"' in page.content
    assert b"Forgot your password?" in page.content


def test_the_answer_is_the_same_for_an_account_an_unknown_name_and_an_inactive_account(
    client, make_user
):
    make_user("ada", email="ada@example.com")
    make_user("bob", email="bob@example.com", is_active=False)
    answers = [
        forgot(Client(), login) for login in ("ada", "nobody-here", "bob", "x@nowhere.example")
    ]
    assert {a.status_code for a in answers} == {200}
    bodies = {a.content for a in answers}
    assert len(bodies) == 1, "the answer page tells accounts apart"
    assert all(set(a.cookies) == set(answers[0].cookies) for a in answers)
    # Only the active account got a message and a link; the decoys left no rows.
    assert list(Outbox.objects.values_list("to", flat=True)) == ["ada@example.com"]
    assert AccountLink.objects.count() == 1
    events = AuthEvent.objects.filter(event_type="password.reset_requested")
    assert sorted(e.details["sent"] for e in events) == [False, False, False, True]


def test_full_reset_ends_every_session_and_notifies(client, make_user, settings):
    user = make_user("ada", email="ada@example.com")
    tokens = session_start(user=user, client_id="authserver", audience=["api"])
    assert forgot(client, "ADA@example.com").status_code == 200
    url, token = mailed_link()
    assert url.startswith(settings.AUTHSERVER_ISSUER + "/password/reset?token=")
    assert not AccountLink.objects.filter(digest__contains=token).exists()

    landing = client.get(f"/password/reset?token={token}")
    assert landing.status_code == 302 and landing["Location"] == "/password/reset"
    assert landing["Referrer-Policy"] == "no-referrer"
    form = client.get("/password/reset")
    assert form.status_code == 200 and b"ada" in form.content
    assert b'<meta name="referrer" content="same-origin">' in form.content  # CSRF needs Origin
    assert token.encode() not in form.content

    mismatch = set_password(client, NEW_PASSWORD, NEW_PASSWORD + "x")
    assert b"The two passwords are not the same." in mismatch.content
    weak = set_password(client, "password")
    assert weak.status_code == 200 and b"too common" in weak.content
    user.refresh_from_db()
    assert user.check_password(PASSWORD)  # nothing changed yet; the link still works

    done = set_password(client, NEW_PASSWORD)
    assert done.status_code == 200 and b"Your password was changed" in done.content
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert Session.objects.get(pk=tokens.session.pk).revoked_at is not None
    assert AuthEvent.objects.filter(event_type="password.reset", user_id=user.pk).count() == 1
    mail.outbox.clear()
    mail_deliver_due()
    (notice,) = mail.outbox
    assert notice.to == ["ada@example.com"] and "was changed" in notice.subject

    # Replaying the link (fresh browser, or the same one) shows the clear "used" page.
    again = Client().get(f"/password/reset?token={token}")
    assert again.status_code == 400 and b"already been used" in again.content
    assert client.get("/password/reset").status_code == 400


def test_the_link_is_built_from_the_issuer_not_the_host_header(client, make_user, settings):
    make_user("ada", email="ada@example.com")
    settings.ALLOWED_HOSTS = ["*"]
    forgot(client, "ada", HTTP_HOST="evil.example")
    url, _ = mailed_link()
    assert url.startswith(settings.AUTHSERVER_ISSUER + "/") and "evil.example" not in url


@pytest.mark.parametrize(
    ("mangle", "text"),
    [
        (lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), b"not valid"),
        (lambda t: t[:20], b"not valid"),
        (lambda t: t + "A", b"not valid"),
        (lambda t: "%00" + t[3:], b"not valid"),
    ],
)
def test_tampered_links_show_the_clear_page(client, make_user, mangle, text):
    make_user("ada", email="ada@example.com")
    forgot(client, "ada")
    _, token = mailed_link()
    page = client.get(f"/password/reset?token={mangle(token)}")
    assert page.status_code == 400 and text in page.content
    assert page["Referrer-Policy"] == "no-referrer"
    assert b'<meta name="referrer" content="no-referrer">' in page.content
    assert b"ada" not in page.content


def test_expired_superseded_and_password_changed_links_die(client, make_user, settings):
    user = make_user("ada", email="ada@example.com")
    _, old = account_link_issue(
        purpose="reset",
        user=user,
        email=user.email,
        ttl=60,
        now=timezone.now() - timedelta(hours=1),
    )
    assert b"expired" in client.get(f"/password/reset?token={old}").content
    forgot(client, "ada")
    _, first = mailed_link()
    forgot(client, "ada")
    _, second = mailed_link()
    assert b"newer link" in client.get(f"/password/reset?token={first}").content
    assert client.get(f"/password/reset?token={second}").status_code == 302
    user.set_password("changed elsewhere 1234")
    user.save()
    assert client.get("/password/reset").status_code == 400


def test_a_foreign_users_link_resets_only_its_owner(client, make_user):
    ada = make_user("ada", email="ada@example.com")
    bob = make_user("bob", email="bob@example.com")
    forgot(client, "bob")
    _, token = mailed_link()
    client.force_login(ada)
    client.get(f"/password/reset?token={token}")
    set_password(client, NEW_PASSWORD)
    ada.refresh_from_db()
    bob.refresh_from_db()
    assert ada.check_password(PASSWORD) and bob.check_password(NEW_PASSWORD)


def test_throttled_per_typed_name_alike_for_unknown_names(client, make_user, settings):
    settings.AUTHSERVER_PASSWORD_RESET_PER_LOGIN = 2
    make_user("ada", email="ada@example.com")
    window_with_room(settings.AUTHSERVER_PASSWORD_RESET_WINDOW_SECONDS, 30)
    for login in ("ada", "nobody-here"):
        assert [forgot(client, login).status_code for _ in range(2)] == [200, 200]
        refused = forgot(client, login)
        assert refused.status_code == 429
        assert 0 < int(refused["Retry-After"]) <= settings.AUTHSERVER_PASSWORD_RESET_WINDOW_SECONDS
        assert b"Too many reset requests" in refused.content
    assert Outbox.objects.count() == 2
    assert AuthEvent.objects.filter(event_type="password.reset_throttled").count() == 2


def test_throttled_per_ip(client, make_user, settings):
    settings.AUTHSERVER_PASSWORD_RESET_PER_IP = 3
    window_with_room(settings.AUTHSERVER_PASSWORD_RESET_WINDOW_SECONDS, 30)
    statuses = [forgot(client, f"name{n}").status_code for n in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_no_token_reaches_the_logs(client, make_user, caplog):
    make_user("ada", email="ada@example.com")
    caplog.set_level(logging.DEBUG)
    forgot(client, "ada")
    _, token = mailed_link()
    client.get(f"/password/reset?token={token}")
    set_password(client, NEW_PASSWORD)
    mail_deliver_due()
    assert token not in caplog.text
    assert not [r for r in caplog.records if token in r.getMessage()]


def test_the_reset_form_without_a_link_is_the_clear_page(client):
    page = client.get("/password/reset")
    assert page.status_code == 400 and b"This link does not work" in page.content


def test_no_csrf_token_no_request(make_user):
    page = Client(enforce_csrf_checks=True).post("/password/forgot", {"login": "ada"})
    assert page.status_code == 403
    assert not Outbox.objects.exists()


def test_a_reset_lifts_a_login_lockout(client, make_user):
    from accounts.services import LoginFailed, user_authenticate
    from accounts.throttling import login_lockout_status

    user = make_user("ada", email="ada@example.com")
    for _ in range(5):
        with pytest.raises(LoginFailed):
            user_authenticate(login="ada", password="wrong guess", ip="198.51.100.7")
    assert login_lockout_status(user=user, now=timezone.now()).locked
    forgot(client, "ada")
    _, token = mailed_link()
    client.get(f"/password/reset?token={token}")
    set_password(client, NEW_PASSWORD)
    assert not login_lockout_status(user=user, now=timezone.now()).locked
    assert user_authenticate(login="ada", password=NEW_PASSWORD, ip="198.51.100.8") == user
