"""Account changes: password, deactivation, admin saves and deletes, each audited."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from accounts.models import User
from accounts.services import (
    PasswordRejected,
    user_admin_save,
    user_deactivate,
    user_delete,
    user_password_disable,
    user_set_password,
)
from audit.models import AuthEvent

NEW_PASSWORD = "a brand new passphrase 42"  # test-only credential


def events(event_type: str) -> list[AuthEvent]:
    return list(AuthEvent.objects.filter(event_type=event_type).order_by("id"))


def test_set_password_validates(make_user):
    user = make_user(username="alice")
    old_hash = user.password
    with pytest.raises(PasswordRejected) as caught:
        user_set_password(user=user, password="short")
    assert caught.value.messages  # the validators' reasons, for the caller to show
    user.refresh_from_db()
    assert user.password == old_hash
    assert user.password_changed_at is None
    assert not events("password.changed")


def test_set_password_stamps_and_audits(make_user):
    user = make_user(username="alice")
    admin = make_user(username="root", is_staff=True)
    before = timezone.now()
    user_set_password(user=user, password=NEW_PASSWORD, actor=admin)
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert user.password_changed_at >= before
    (event,) = events("password.changed")
    assert event.user == user
    assert event.details == {"actor_sub": admin.sub, "actor_username": "root", "change": "set"}
    assert NEW_PASSWORD not in json.dumps(event.details)


def test_password_disable(make_user):
    user = make_user(username="alice")
    user_password_disable(user=user)
    user.refresh_from_db()
    assert not user.has_usable_password()
    assert user.password_changed_at is not None
    assert events("password.changed")[0].details == {"change": "disabled"}


def test_deactivate_once(make_user):
    user = make_user(username="alice")
    user_deactivate(user=user)
    user_deactivate(user=user)
    user.refresh_from_db()
    assert not user.is_active
    assert len(events("admin.user_deactivated")) == 1


def test_admin_save_records_changed_field_names_not_values(make_user):
    user = make_user(username="alice")
    user.email = "secret-address@example.com"
    user.is_active = False
    user_admin_save(user=user, changed_fields=["email", "is_active", "password1"])
    (changed,) = events("admin.user_changed")
    assert changed.details == {"fields": ["email", "is_active"]}
    assert len(events("admin.user_deactivated")) == 1
    assert "secret-address" not in json.dumps(changed.details)


def test_admin_save_of_a_new_user_is_a_creation(db):
    user = User(username="bob", email="bob@example.com")
    user.set_unusable_password()
    user_admin_save(user=user, changed_fields=["username", "email"])
    (created,) = events("admin.user_created")
    assert created.user == user
    assert not events("admin.user_deactivated")


def test_delete_keeps_the_trail(make_user):
    user = make_user(username="alice")
    sub = user.public_id
    user_delete(user=user)
    assert not User.objects.filter(public_id=sub).exists()
    (deleted,) = events("admin.user_deleted")
    assert deleted.user is None
    assert deleted.user_public_id == sub
    assert deleted.details == {"username": "alice"}
