"""Issue 13.2.2: no admin action (and no custom admin view) works for a view-only staff user.

Django offers an action that declares no `permissions` to everyone who may see the change list;
the client admin's "regenerate secret" action was such a one, so a staff user with only
`view_client` could rotate a secret and read the new one. These tests enumerate every
registered ModelAdmin and every action it has, so an action added later without permissions
fails here without anyone having to remember to add a test for it.
"""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.urls import URLPattern, reverse
from django.utils import timezone

from accounts.models import User
from accounts.password_reset import password_reset_send
from accounts.services import LoginFailed, user_authenticate
from accounts.throttling import login_lockout_status
from branding.models import Brand
from oauth.clients import client_create
from oauth.consents import consent_grant
from sessions.services import refresh_token_rotate, session_start
from tests.conftest import PASSWORD
from tests.security.admin_helpers import database_snapshot, permissions, view_only_staff

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "another passphrase, never set 42"  # test-only credential

# Every action the admin has today: the enumeration below must find at least these (it finds
# new ones by itself), so a broken enumeration cannot pass by testing nothing.
KNOWN_ACTIONS = {
    "delete_selected",
    "regenerate_secret",
    "clear_login_lockout",
    "deactivate_users",
    "revoke_selected",
    "revoke_sessions",
    "send_password_reset",
    "retry_now",
}

# The views every ModelAdmin has; anything else get_urls() returns is a custom view.
STANDARD_VIEWS = ("_changelist", "_add", "_history", "_delete", "_change")


@pytest.fixture
def rows(make_user):
    """At least one row in every admin-registered table, in the states actions act on."""
    make_user(username="root", is_staff=True, is_superuser=True)
    alice = make_user(username="alice")
    group = Group.objects.create(name="operators")
    group.permissions.set(permissions("oauth.view_client"))
    alice.groups.add(group)
    for _ in range(5):  # alice is locked out: "Clear login lockout" would lift it
        with pytest.raises(LoginFailed):
            user_authenticate(login="alice", password="wrong", ip="198.51.100.1")
    confidential = client_create(
        name="Confidential app",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["https://app.example.com/cb"],
        scopes=["openid", "offline_access"],
    )
    client_create(
        name="Public app",
        client_type="public",
        grant_types=["authorization_code"],
        redirect_uris=["https://spa.example.com/cb"],
        scopes=["openid"],
    )
    consent_grant(user=alice, client=confidential.client, scopes=["openid"])
    first = session_start(user=alice, client_id="authserver", audience=["api"])
    refresh_token_rotate(value=first.refresh_token, client_id="authserver")  # a chain of two
    password_reset_send(user=alice, actor=None)  # an outbox row and an account link
    Brand.objects.create(pk=1, name="Example Corp", primary_color="#0b5394")
    return {"alice": alice}


@pytest.fixture
def viewer(client, make_user):
    user = view_only_staff(make_user)
    client.force_login(user)
    return user


def model_admins():
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def all_actions(model_admin) -> list[tuple[str, object]]:
    # _get_base_actions is what Django filters by permission: every action of the ModelAdmin
    # class hierarchy and of the site, before any filtering.
    return [(name, func) for func, name, _ in model_admin._get_base_actions()]


def lockouts() -> dict[str, bool]:

    now = timezone.now()
    return {u.username: login_lockout_status(user=u, now=now).locked for u in User.objects.all()}


def assert_no_secret(response) -> None:
    body = response.content.decode(errors="replace")
    assert "client_secret" not in body
    assert not re.search(r"<title>Client secret", body)


def test_every_admin_action_declares_its_permissions():
    """Issue 13.2.2: each action names the permissions it needs, and the ModelAdmin can check
    each of them (`has_<perm>_permission`)."""
    for model, model_admin in model_admins():
        for name, func in all_actions(model_admin):
            declared = getattr(func, "allowed_permissions", None)
            assert declared, f"{model._meta.label}: action {name} declares no permissions"
            for permission in declared:
                assert callable(getattr(model_admin, f"has_{permission}_permission", None)), (
                    f"{model._meta.label}: action {name} needs has_{permission}_permission"
                )


def test_no_admin_action_changes_anything_for_a_view_only_user(client, rows, viewer):
    """Issue 13.2.2: a staff user holding every view_* permission and nothing else runs every
    action of every registered ModelAdmin through the change list's POST, on each row alone
    and on all rows, with and without the confirmation step: no row changes, no lockout is
    lifted, and no client secret is shown."""
    before, locked_before = database_snapshot(), lockouts()
    assert locked_before["alice"]
    seen = set()
    for model, model_admin in model_admins():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        pks = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
        assert pks, f"no {opts.label} row to run the actions on"
        for name, _func in all_actions(model_admin):
            seen.add(name)
            for selection in [*([pk] for pk in pks), pks]:
                for confirm in ({}, {"confirm": "yes", "post": "yes"}):
                    response = client.post(
                        changelist,
                        {"action": name, "_selected_action": selection, "index": "0", **confirm},
                    )
                    assert response.status_code in (200, 302, 403), (opts.label, name)
                    assert_no_secret(response)
    assert seen >= KNOWN_ACTIONS
    assert database_snapshot() == before
    assert lockouts() == locked_before


def test_delete_selected_is_not_offered_to_a_view_only_user(client, rows, viewer):
    """Issue 13.2.2: delete_selected is neither among the view-only user's actions nor on the
    change list page."""
    request = RequestFactory().get("/admin/")
    request.user = viewer
    for model, model_admin in model_admins():
        assert "delete_selected" not in model_admin.get_actions(request), model._meta.label
        opts = model._meta
        page = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        # Superuser-only tables (the brand) refuse the page itself.
        expected = 200 if model_admin.has_view_permission(request) else 403
        assert page.status_code == expected, opts.label
        assert b'value="delete_selected"' not in page.content, opts.label


def custom_views(model, model_admin) -> list[URLPattern]:
    opts = model._meta
    standard = {f"{opts.app_label}_{opts.model_name}{suffix}" for suffix in STANDARD_VIEWS}
    return [
        pattern
        for pattern in model_admin.get_urls()
        if isinstance(pattern, URLPattern) and pattern.name and pattern.name not in standard
    ]


def test_custom_admin_views_refuse_a_view_only_user(client, rows, viewer):
    """Issue 13.2.2: every custom admin view (get_urls: the user password form, signing-key
    rotation, any added later) answers a view-only user's GET and POST with 403 and changes
    nothing."""
    before = database_snapshot()
    form = {
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        "usable_password": "true",
        "set_usable_password": "true",
        "immediate": "1",
        "confirm": "yes",
        "post": "yes",
    }
    checked = []
    for model, model_admin in model_admins():
        for pattern in custom_views(model, model_admin):
            if pattern.pattern.converters:  # one URL per row of the model
                urls = [
                    reverse(f"admin:{pattern.name}", args=[pk])
                    for pk in model._default_manager.values_list("pk", flat=True)
                ]
            else:
                urls = [reverse(f"admin:{pattern.name}")]
            for url in urls:
                assert client.get(url).status_code == 403, url
                assert client.post(url, form).status_code == 403, url
            checked.append(pattern.name)
    assert {
        "auth_user_password_change",
        "tokens_signingkey_rotate",
        "accounts_user_access",
    } <= set(checked)
    assert database_snapshot() == before

    assert User.objects.get(username="alice").check_password(PASSWORD)
