"""The user admin: searchable, filterable, and never shows a password hash."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, make_user):
    admin = make_user(username="admin", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def test_change_page_shows_no_password_hash(admin_client, make_user):
    user = make_user(username="target")
    page = admin_client.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    hash_parts = user.password.split("$")
    assert user.password not in html
    for part in hash_parts[1:]:
        assert part not in html  # neither salt nor digest
    assert "md5" not in html.lower()
    assert "Change password" in html
    assert str(user.public_id) in html


def test_changelist_searches_by_username_email_and_public_id(admin_client, make_user):
    alice = make_user(username="alice", email="alice@corp.example")
    make_user(username="bob", email="bob@other.example")
    by_email = admin_client.get("/admin/accounts/user/", {"q": "corp.example"}).content.decode()
    assert "alice" in by_email and "bob@other" not in by_email
    by_sub = admin_client.get("/admin/accounts/user/", {"q": str(alice.public_id)}).content.decode()
    assert "alice@corp.example" in by_sub and "bob@other" not in by_sub


def test_changelist_filters_by_active(admin_client, make_user):
    make_user(username="active1")
    make_user(username="gone1", is_active=False)
    html = admin_client.get("/admin/accounts/user/", {"is_active__exact": "0"}).content.decode()
    assert "gone1" in html and "active1" not in html


def test_add_user_form_creates_a_user_with_hashed_password(admin_client):
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "username": "newbie",
            "email": "newbie@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    from accounts.models import User

    user = User.objects.get(username="newbie")
    assert user.check_password(PASSWORD)
    assert user.password != PASSWORD


def test_duplicate_email_in_admin_is_a_readable_form_error(admin_client, make_user):
    make_user(username="first", email="same@example.com")
    other = make_user(username="second", email="other@example.com")
    response = admin_client.post(
        f"/admin/accounts/user/{other.pk}/change/",
        {"username": "second", "email": "SAME@example.com", "is_active": "on"},
    )
    assert response.status_code == 200
    assert "A user with this email address already exists." in response.content.decode()


def test_admin_login_page_renders(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert re.search(r'name="username"', response.content.decode())


def test_send_password_reset_action_queues_a_link_and_audits(admin_client, make_user):
    from audit.models import AuthEvent
    from mail.models import Outbox

    target = make_user(username="forgetful", email="forgetful@example.com")
    inactive = make_user(username="gone", email="gone@example.com", is_active=False)
    response = admin_client.post(
        "/admin/accounts/user/",
        {"action": "send_password_reset", "_selected_action": [target.pk, inactive.pk]},
        follow=True,
    )
    assert b"Queued a password reset link for 1 user(s)" in response.content
    assert b"Skipped 1" in response.content
    assert list(Outbox.objects.values_list("to", "template")) == [
        ("forgetful@example.com", "password_reset")
    ]
    event = AuthEvent.objects.get(event_type="admin.password_reset_sent")
    assert event.user_id == target.pk and event.details["actor_username"] == "admin"


def test_send_password_reset_needs_change_permission_and_spares_admin_accounts(client, make_user):
    from django.contrib.auth.models import Permission

    from mail.models import Outbox

    staff = make_user(username="helpdesk", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_user", "change_user"]))
    client.force_login(staff)
    root = make_user(username="root", is_staff=True, is_superuser=True)
    response = client.post(
        "/admin/accounts/user/",
        {"action": "send_password_reset", "_selected_action": [root.pk]},
        follow=True,
    )
    assert b"Only a superuser may act on an administrator account" in response.content
    assert not Outbox.objects.exists()
    plain = make_user(username="plain")
    client.post(
        "/admin/accounts/user/", {"action": "send_password_reset", "_selected_action": [plain.pk]}
    )
    assert Outbox.objects.count() == 1
