"""Issue 16.6: on a user's admin page, their sessions (end one, end all) and connected apps
(withdraw), each action audited and behind declared permissions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.events import EventType
from audit.models import AuthEvent
from oauth.clients import client_create
from oauth.consents import consent_grant
from oauth.models import Consent
from sessions.models import Session
from sessions.services import (
    RefreshError,
    browser_session_start,
    refresh_token_rotate,
    session_start,
)
from tests.security.admin_helpers import database_snapshot, staff_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_user):
    user = make_user(username="alice")
    registered = client_create(
        name="Photo app",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["https://photos.example.com/cb"],
        scopes=["openid", "offline_access"],
    )
    consent_grant(user=user, client=registered.client, scopes=["openid", "offline_access"])
    browser = browser_session_start(user=user, ip="198.51.100.7", user_agent="Firefox/133.0")
    grant = session_start(user=user, client_id=registered.client.client_id, audience=["api"])
    api = session_start(user=user, client_id="authserver", audience=["api"])
    user.fixture = {
        "client_id": registered.client.client_id,
        "browser": browser,
        "grant": grant,
        "api": api,
    }
    return user


def url(user) -> str:
    return reverse("admin:accounts_user_access", args=[user.pk])


def live(user) -> set:
    return set(
        Session.objects.filter(user=user, revoked_at__isnull=True).values_list("pk", flat=True)
    )


def test_the_change_page_lists_sessions_and_apps_and_links_to_the_actions(admin_client, alice):
    page = admin_client.get(reverse("admin:accounts_user_change", args=[alice.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert "3 live" in body and "Photo app" in body and "198.51.100.7" in body
    assert url(alice) in body


def test_an_admin_ends_one_session_then_all_and_withdraws_an_app(admin_client, admin_user, alice):
    page = admin_client.get(url(alice))
    assert page.status_code == 200 and b"Photo app" in page.content
    api_id = alice.fixture["api"].session.pk

    response = admin_client.post(url(alice), {"action": "end_session", "session": str(api_id)})
    assert response.status_code == 302
    assert api_id not in live(alice) and len(live(alice)) == 2
    event = AuthEvent.objects.get(event_type=EventType.SESSION_REVOKED, session_id=api_id)
    assert event.details["actor"] == admin_user.get_username()
    assert Session.objects.get(pk=api_id).revoke_reason == "admin"

    response = admin_client.post(
        url(alice), {"action": "withdraw", "client": alice.fixture["client_id"]}
    )
    assert response.status_code == 302
    assert not Consent.objects.filter(user=alice).exists()
    with pytest.raises(RefreshError):
        refresh_token_rotate(
            value=alice.fixture["grant"].refresh_token, client_id=alice.fixture["client_id"]
        )
    withdrawn = AuthEvent.objects.get(event_type=EventType.CONSENT_WITHDRAWN)
    assert withdrawn.details["actor"] == admin_user.get_username()

    response = admin_client.post(url(alice), {"action": "end_all"})
    assert response.status_code == 302
    assert live(alice) == set()
    ended_all = AuthEvent.objects.get(event_type=EventType.LOGOUT_ALL, user=alice)
    assert ended_all.details["actor"] == admin_user.get_username()


def test_each_action_needs_its_permission(client, make_user, alice):
    # May change users, but neither sessions nor consents: sees the page, can do nothing.
    staff = staff_with(make_user, "accounts.view_user", "accounts.change_user")
    client.force_login(staff)
    assert client.get(url(alice)).status_code == 200
    before = database_snapshot()
    for data in (
        {"action": "end_session", "session": str(alice.fixture["api"].session.pk)},
        {"action": "end_all"},
        {"action": "withdraw", "client": alice.fixture["client_id"]},
    ):
        assert client.post(url(alice), data).status_code == 403, data
    assert database_snapshot() == before


def test_only_a_superuser_acts_on_an_administrators_sessions(client, make_user):
    other_admin = make_user(username="boss", is_staff=True)
    browser_session_start(user=other_admin)
    staff = staff_with(
        make_user,
        "accounts.view_user",
        "accounts.change_user",
        "sessions.change_session",
        "oauth.delete_consent",
    )
    client.force_login(staff)
    before = live(other_admin)
    assert client.get(url(other_admin)).status_code == 403
    assert client.post(url(other_admin), {"action": "end_all"}).status_code == 403
    assert live(other_admin) == before
