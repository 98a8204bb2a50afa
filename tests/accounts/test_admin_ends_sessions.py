"""Admin actions that change credentials end the user's sessions at that moment, and the admin
login form is protected like every other login."""

from __future__ import annotations

import pytest

from sessions.models import Session
from sessions.services import session_start
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user(username="root", is_staff=True, is_superuser=True))
    return client


def start(user):
    return session_start(user=user, client_id="authserver", audience=["api"])


def test_admin_password_change_revokes_sessions(admin_client, make_user):
    user = make_user(username="target")
    pair = start(user)
    response = admin_client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {
            "password1": "a brand new passphrase",
            "password2": "a brand new passphrase",
            "usable_password": "true",
            "set_usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    session = Session.objects.get(pk=pair.session.pk)
    assert session.revoked_at is not None
    assert session.revoke_reason == "password_changed"


def test_admin_deactivate_action_revokes_sessions(admin_client, make_user):
    user = make_user(username="target")
    pair = start(user)
    response = admin_client.post(
        "/admin/accounts/user/",
        {"action": "deactivate_users", "_selected_action": [user.pk]},
    )
    assert response.status_code == 302
    assert Session.objects.get(pk=pair.session.pk).revoke_reason == "user_inactive"


def test_unticking_active_in_the_change_form_revokes_sessions(admin_client, make_user):
    user = make_user(username="target", email="target@example.com")
    pair = start(user)
    response = admin_client.post(
        f"/admin/accounts/user/{user.pk}/change/",
        {"username": "target", "email": "target@example.com"},  # is_active unticked
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Session.objects.get(pk=pair.session.pk).revoke_reason == "user_inactive"


def test_admin_login_goes_through_the_lockout(client, make_user, settings):
    make_user(username="boss", is_staff=True, is_superuser=True)
    for attempt in range(settings.AUTHSERVER_LOCKOUT_THRESHOLD):
        client.post("/admin/login/", {"username": "boss", "password": f"wrong {attempt}"})
    response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": PASSWORD})
    assert response.status_code == 200  # the form again, not a redirect into the admin
    assert "_auth_user_id" not in client.session


def test_admin_login_works_with_the_right_password(client, make_user):
    make_user(username="boss", is_staff=True, is_superuser=True)
    response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": PASSWORD})
    assert response.status_code == 302
    assert "_auth_user_id" in client.session
