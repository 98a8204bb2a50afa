"""The account pages in-process (Django's test client): each renders for a signed-in user, sends
others to the login page, and has the hosted pages' headers."""

from __future__ import annotations

import pytest
from django.urls import reverse

from oauth.clients import client_create
from oauth.consents import consent_grant
from selfservice.selectors import device_summary
from sessions.services import session_start
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

PAGES = ["profile", "password", "sessions", "sessions-end-others", "apps", "activity", "delete"]


@pytest.fixture
def alice(client, make_user):
    user = make_user(username="alice", first_name="Alice")
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    registered = client_create(
        name="Photo app",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["https://photos.example.com/cb"],
        scopes=["openid", "profile", "offline_access"],
    )
    consent_grant(user=user, client=registered.client, scopes=["openid", "profile"])
    session_start(user=user, client_id=registered.client.client_id, audience=["api"])
    return user


@pytest.mark.parametrize("name", PAGES)
def test_each_account_page_renders_with_the_page_headers(client, alice, name):
    response = client.get(reverse(f"account:{name}"))
    assert response.status_code == 200, response.content[:300]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert 'aria-label="Your account"' in body
    assert "<script" not in body


def test_lists_show_the_users_sessions_and_apps(client, alice):
    sessions = client.get(reverse("account:sessions")).content.decode()
    assert "this browser" in sessions and "Photo app" in sessions
    apps = client.get(reverse("account:apps")).content.decode()
    assert "Photo app" in apps and "Your profile" in apps
    log = client.get(reverse("account:activity")).content.decode()
    assert "Signed in" in log and "App allowed" in log


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitors_go_to_the_login_page(client, name):
    response = client.get(reverse(f"account:{name}"))
    assert response.status_code == 303
    assert response["Location"].startswith("/login?next=")


@pytest.mark.parametrize(
    ("agent", "summary"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Firefox on Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari on iPhone",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/131.0.0.0 Safari/537.36",
            "Chrome on Linux",
        ),
        ("python-requests/2.32.3", "Python"),
        ("", "Unknown device"),
    ],
)
def test_device_summary(agent, summary):
    assert device_summary(agent) == summary


def test_a_name_change_is_saved_and_audited_and_bad_input_is_a_form_error(client, alice):
    from audit.models import AuthEvent

    response = client.post(reverse("account:profile"), {"first_name": "Al\u0007ice"})
    assert response.status_code == 200
    assert b"Use letters, spaces and punctuation only." in response.content
    too_long = client.post(reverse("account:profile"), {"first_name": "x" * 151})
    assert too_long.status_code == 200 and b'aria-invalid="true"' in too_long.content
    alice.refresh_from_db()
    assert alice.first_name == "Alice"
    assert not AuthEvent.objects.filter(event_type="account.profile_changed").exists()

    saved = client.post(reverse("account:profile"), {"first_name": "Alicia", "last_name": "B"})
    assert saved.status_code == 303
    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name) == ("Alicia", "B")
    event = AuthEvent.objects.get(event_type="account.profile_changed")
    assert event.user_id == alice.pk and event.details == {"fields": ["first_name", "last_name"]}


def test_an_administrator_account_is_not_deleted_from_the_account_pages(client, make_user):
    from accounts.models import User

    make_user(username="root", is_staff=True, is_superuser=True)
    client.post(reverse("login"), {"username": "root", "password": PASSWORD})
    page = client.get(reverse("account:delete"))
    assert page.status_code == 403 and b"administrator rights" in page.content
    refused = client.post(reverse("account:delete"), {"password": PASSWORD, "confirm": "on"})
    assert refused.status_code == 403
    assert User.objects.filter(username="root").exists()
