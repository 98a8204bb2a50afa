"""Sessions in the admin: listed, searchable, revocable, and never showing a token."""

from __future__ import annotations

import pytest

from audit.models import AuthEvent
from sessions.models import Session
from sessions.services import RefreshError, refresh_token_rotate, session_start

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def pair(make_user):
    first = session_start(
        user=make_user(username="target"), client_id="authserver", audience=["api"]
    )
    return refresh_token_rotate(value=first.refresh_token, client_id="authserver")


def test_session_pages_show_no_token_or_digest(admin_client, pair):
    listing = admin_client.get("/admin/authsessions/session/", {"q": "target"})
    assert listing.status_code == 200
    assert str(pair.session.id) in listing.content.decode()
    page = admin_client.get(f"/admin/authsessions/session/{pair.session.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert pair.refresh_token not in html
    digest = bytes(Session.objects.get(pk=pair.session.pk).refresh_digest)
    assert digest.hex() not in html
    assert repr(digest)[2:-1] not in html


def test_admin_can_revoke_a_session(admin_client, pair):
    response = admin_client.post(
        "/admin/authsessions/session/",
        {"action": "revoke_sessions", "_selected_action": [str(pair.session.id)]},
    )
    assert response.status_code == 302
    assert Session.objects.get(pk=pair.session.pk).revoke_reason == "admin"
    with pytest.raises(RefreshError):
        refresh_token_rotate(value=pair.refresh_token, client_id="authserver")
    event = AuthEvent.objects.get(event_type="session.revoked")
    assert event.details["actor"] == "root"


def test_sessions_cannot_be_added_or_deleted_in_the_admin(admin_client, pair):
    assert admin_client.get("/admin/authsessions/session/add/").status_code == 403
    response = admin_client.get(f"/admin/authsessions/session/{pair.session.id}/delete/")
    assert response.status_code == 403
