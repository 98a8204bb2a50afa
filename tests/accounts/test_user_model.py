"""accounts.User: a UUID `sub`, case-insensitive unique email and username, Argon2id hashing."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction
from django.test import RequestFactory

from accounts.models import User
from accounts.selectors import user_get_by_login, user_get_by_sub
from authserver import settings as app_settings
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_sub_is_a_random_uuid_not_the_primary_key(make_user):
    first, second = make_user(), make_user()
    assert isinstance(first.public_id, uuid.UUID)
    assert first.public_id.version == 4
    assert first.sub == str(first.public_id)
    assert first.sub != str(first.pk)
    assert first.public_id != second.public_id


def test_sub_is_stable_across_saves(make_user):
    user = make_user()
    before = user.public_id
    user.first_name = "Changed"
    user.save()
    user.refresh_from_db()
    assert user.public_id == before


def test_email_is_unique_case_insensitively(make_user):
    make_user(username="alice", email="alice@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_user(username="alice2", email="ALICE@Example.COM")


def test_username_is_unique_case_insensitively(make_user):
    make_user(username="alice")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_user(username="Alice", email="other@example.com")


def test_login_lookup_accepts_username_or_email_in_any_case(make_user):
    user = make_user(username="bob", email="bob@example.com")
    assert user_get_by_login(login="BOB") == user
    assert user_get_by_login(login="Bob@Example.com") == user
    assert user_get_by_login(login="nobody") is None


def test_inactive_users_are_not_found_and_cannot_authenticate(make_user):
    user = make_user(username="carol", is_active=False)
    assert user_get_by_login(login="carol") is None
    assert user_get_by_sub(sub=user.sub) is None
    request = RequestFactory().post("/admin/login/")
    assert authenticate(request, username="carol", password=PASSWORD) is None
    user.is_active = True
    user.save()
    assert authenticate(request, username="carol", password=PASSWORD) == user


def test_sub_lookup_rejects_malformed_values(make_user):
    make_user()
    assert user_get_by_sub(sub="not-a-uuid") is None
    assert user_get_by_sub(sub="") is None


def test_new_passwords_are_hashed_with_argon2id(make_user, settings):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user = make_user()
    assert user.password.startswith("argon2$argon2id$")


def test_pbkdf2_hash_is_upgraded_to_argon2id_on_login(make_user, settings):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user = make_user(username="dave")
    User.objects.filter(pk=user.pk).update(password=make_password(PASSWORD, hasher="pbkdf2_sha256"))
    request = RequestFactory().post("/admin/login/")
    assert authenticate(request, username="dave", password=PASSWORD) == user
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")


def test_str_is_the_username_and_reveals_no_secret(make_user):
    user = make_user(username="erin")
    assert str(user) == "erin"


def test_case_insensitive_lookups_use_the_lower_index(db):
    """Sign-in finds the user through the unique index on LOWER(username) / LOWER(email), not by
    reading every user (Django's `__iexact` is UPPER(...), which that index does not serve)."""
    from django.db import connection

    from accounts.models import User

    for field, value in (("username", "Alice"), ("email", "Alice@Example.com")):
        query = User.objects.matching(field, value).query
        sql, params = query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert f"accounts_user_{field}_ci_unique" in plan, plan


def test_matching_is_case_insensitive(make_user):
    from accounts.models import User

    user = make_user(username="Mixed.Case", email="Mixed@Example.com")
    assert User.objects.matching("username", "mixed.CASE").get() == user
    assert User.objects.matching("email", "MIXED@example.COM").get() == user
    assert User.objects.get_by_natural_key("MIXED.case") == user
