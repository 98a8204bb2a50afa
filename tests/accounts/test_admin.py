"""The user admin writes through the services: every change is audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import User
from accounts.services import user_authenticate
from accounts.throttling import login_lockout_status
from audit.models import AuthEvent
from tests.accounts.conftest import T0
from tests.conftest import PASSWORD

NEW_PASSWORD = "a brand new passphrase 42"  # test-only credential


@pytest.fixture
def root(make_user):
    return make_user(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, root):
    client.force_login(root)
    return client


def events(event_type: str) -> list[AuthEvent]:
    return list(AuthEvent.objects.filter(event_type=event_type).order_by("id"))


def change_form_data(user: User, **changes) -> dict:
    data = {
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_change_form_save_audits_field_names(admin_client, make_user, root):
    alice = make_user(username="alice")
    url = reverse("admin:accounts_user_change", args=[alice.pk])
    response = admin_client.post(url, change_form_data(alice, first_name="Alice"))
    assert response.status_code == 302, response.content[:2000]
    (changed,) = events("admin.user_changed")
    assert changed.user == alice
    assert changed.details == {
        "actor_sub": root.sub,
        "actor_username": "root",
        "fields": ["first_name"],
    }


def test_unticking_active_is_an_audited_deactivation(admin_client, make_user):
    alice = make_user(username="alice")
    url = reverse("admin:accounts_user_change", args=[alice.pk])
    admin_client.post(url, change_form_data(alice, is_active=""))
    alice.refresh_from_db()
    assert not alice.is_active
    assert events("admin.user_changed")[0].details["fields"] == ["is_active"]
    assert len(events("admin.user_deactivated")) == 1


def test_admin_password_change_goes_through_the_service(admin_client, make_user, root):
    alice = make_user(username="alice")
    url = reverse("admin:auth_user_password_change", args=[alice.pk])
    response = admin_client.post(
        url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    assert alice.password_changed_at is not None
    (changed,) = events("password.changed")
    assert changed.user == alice
    assert changed.details["actor_sub"] == root.sub
    assert changed.ip == "127.0.0.1"


def test_admin_password_change_still_applies_validators(admin_client, make_user):
    alice = make_user(username="alice")
    url = reverse("admin:auth_user_password_change", args=[alice.pk])
    response = admin_client.post(
        url, {"password1": "short", "password2": "short", "usable_password": "true"}
    )
    assert response.status_code == 200  # form redisplayed with errors
    assert not events("password.changed")


def test_adding_a_user_is_audited(admin_client, root):
    response = admin_client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "bob",
            "email": "bob@example.com",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302, response.content[:2000]
    bob = User.objects.get(username="bob")
    (created,) = events("admin.user_created")
    assert created.user == bob
    assert "password1" not in created.details["fields"]


def test_clear_lockout_action(admin_client, make_user, settings, root):
    alice = make_user(username="alice")
    for _ in range(5):
        with pytest.raises(Exception):  # noqa: B017 - LoginFailed, asserted elsewhere
            user_authenticate(login="alice", password="wrong", ip="198.51.100.1", now=T0)
    response = admin_client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "clear_login_lockout", "_selected_action": [alice.pk]},
    )
    assert response.status_code == 302
    assert login_lockout_status(user=alice, now=T0).failures == 0
    assert not login_lockout_status(user=alice, now=T0).locked
    (unlocked,) = events("account.unlocked")
    assert unlocked.details["actor_sub"] == root.sub
    assert user_authenticate(login="alice", password=PASSWORD, ip="198.51.100.2", now=T0) == alice


def test_change_page_shows_lockout_but_no_hash(admin_client, make_user):
    alice = make_user(username="alice")
    for _ in range(5):
        with pytest.raises(Exception):  # noqa: B017
            user_authenticate(login="alice", password="wrong", ip="198.51.100.1")
    page = admin_client.get(reverse("admin:accounts_user_change", args=[alice.pk]))
    assert page.status_code == 200
    assert b"locked until" in page.content
    assert alice.password.encode() not in page.content
    assert alice.password.split("$")[-1].encode() not in page.content


def test_deactivate_action(admin_client, make_user):
    alice = make_user(username="alice")
    admin_client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "deactivate_users", "_selected_action": [alice.pk]},
    )
    alice.refresh_from_db()
    assert not alice.is_active
    assert len(events("admin.user_deactivated")) == 1


def test_delete_is_audited(admin_client, make_user):
    alice = make_user(username="alice")
    sub = alice.public_id
    response = admin_client.post(
        reverse("admin:accounts_user_delete", args=[alice.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not User.objects.filter(pk=alice.pk).exists()
    (deleted,) = events("admin.user_deleted")
    assert deleted.user_public_id == sub


def test_change_page_survives_a_dead_cache(admin_client, make_user, dead_cache):
    alice = make_user(username="alice")
    page = admin_client.get(reverse("admin:accounts_user_change", args=[alice.pk]))
    assert page.status_code == 200
    assert b"unknown (the cache is unavailable)" in page.content
