"""Issue 14.1: admin rights come only from a superuser; issue 14.10: the admin sends a strict CSP.

A staff user with `accounts.change_user` could tick `is_superuser` on their own account, edit
groups and permissions, and reset a superuser's password. Now only superusers set `is_staff`,
`is_superuser`, groups, user permissions and group permissions, and only superusers change,
reset, delete or act on an account holding admin rights. Each test drives the admin's real
forms as a staff user with a given set of permissions; one does the escalation over HTTP
against gunicorn.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import requests
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.services import LoginFailed, user_authenticate
from accounts.throttling import login_lockout_status
from authserver import pages
from authserver import settings as app_settings
from authserver.middleware import ADMIN_CONTENT_SECURITY_POLICY
from oauth.clients import client_create
from oauth.models import Client
from tests.conftest import PASSWORD
from tests.live import Gunicorn
from tests.security.admin_helpers import permissions, staff_with
from tokens.models import SigningKey
from tokens.sessions import session_start

NEW_PASSWORD = "a brand new passphrase 42"  # test-only credential
CHANGE_USER = ("accounts.change_user", "accounts.view_user")


@pytest.fixture
def root(make_user):
    return make_user(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def alice(make_user):
    return make_user(username="alice")


@pytest.fixture
def admins_group(db):
    """A group whose members may do everything there is to do with users and clients."""
    group = Group.objects.create(name="admins")
    group.permissions.set(
        Permission.objects.filter(content_type__app_label__in=["accounts", "oauth"])
    )
    return group


def user_change_url(user: User) -> str:
    return reverse("admin:accounts_user_change", args=[user.pk])


def password_url(user: User) -> str:
    return reverse("admin:auth_user_password_change", args=[user.pk])


def user_form(user: User, **changes) -> dict:
    """The change form as the admin renders it, plus `changes` (an empty value drops a key)."""
    data = {
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_active": "on" if user.is_active else "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def escalation(group: Group) -> dict:
    """Every field that grants admin rights, set to the most it can grant."""
    return {
        "is_staff": "on",
        "is_superuser": "on",
        "groups": [str(group.pk)],
        "user_permissions": [str(pk) for pk in Permission.objects.values_list("pk", flat=True)],
    }


def rights(user: User) -> tuple:
    user.refresh_from_db()
    return (
        user.is_staff,
        user.is_superuser,
        sorted(user.groups.values_list("name", flat=True)),
        sorted(user.user_permissions.values_list("codename", flat=True)),
    )


@pytest.mark.django_db
def test_change_user_staff_cannot_make_themselves_superuser(client, make_user, admins_group):
    """Issue 14.1: with only change_user (+ view_user), the privilege fields are not in the form
    and a crafted POST of them on one's own account changes nothing."""
    staff = staff_with(make_user, *CHANGE_USER)
    client.force_login(staff)
    page = client.get(user_change_url(staff)).content.decode()
    for field in ("is_staff", "is_superuser", "groups", "user_permissions"):
        assert f'name="{field}"' not in page, field
    before = rights(staff)
    response = client.post(
        user_change_url(staff), user_form(staff, first_name="Mallory", **escalation(admins_group))
    )
    assert response.status_code == 302, response.content[:2000]
    assert rights(staff) == before == (True, False, [], ["change_user", "view_user"])
    assert staff.first_name == "Mallory"  # the fields they may edit still save


@pytest.mark.django_db
def test_change_user_staff_cannot_grant_rights_to_another_user(
    client, make_user, alice, admins_group
):
    """Issue 14.1: the same crafted POST on an ordinary user's form grants them nothing."""
    client.force_login(staff_with(make_user, *CHANGE_USER))
    response = client.post(
        user_change_url(alice), user_form(alice, last_name="Smith", **escalation(admins_group))
    )
    assert response.status_code == 302, response.content[:2000]
    assert rights(alice) == (False, False, [], [])
    assert alice.last_name == "Smith"


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["root", "other staff"])
def test_admin_account_is_read_only_for_a_non_superuser(client, make_user, root, target):
    """Issue 14.1: a superuser's (or another staff member's) change page is read-only for a
    staff user with change_user, and a POST to it is refused with 403."""
    account = root if target == "root" else make_user(username="ops", is_staff=True)
    client.force_login(staff_with(make_user, *CHANGE_USER))
    page = client.get(user_change_url(account))
    assert page.status_code == 200
    assert b'name="username"' not in page.content and b'name="_save"' not in page.content
    response = client.post(
        user_change_url(account), user_form(account, email="mallory@example.com", is_active="")
    )
    assert response.status_code == 403
    account.refresh_from_db()
    assert account.is_active and account.email != "mallory@example.com"


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["root", "other staff"])
def test_admin_account_password_cannot_be_set_by_a_non_superuser(
    client, make_user, root, alice, target
):
    """Issue 14.1: the admin password page (set or disable a password) of a superuser or other
    staff account is refused to a staff user with change_user; an ordinary user's still works."""
    account = root if target == "root" else make_user(username="ops", is_staff=True)
    client.force_login(staff_with(make_user, *CHANGE_USER))
    assert client.get(password_url(account)).status_code == 403
    set_password = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}
    assert client.post(password_url(account), set_password).status_code == 403
    assert client.post(password_url(account), {"usable_password": "false"}).status_code == 403
    account.refresh_from_db()
    assert account.check_password(PASSWORD)
    assert client.post(password_url(alice), set_password).status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_user_actions_refuse_a_selection_holding_an_admin_account(client, make_user, root, alice):
    """Issue 14.1: "Deactivate" and "Clear login lockout" do nothing when the selection holds a
    superuser; on ordinary users alone they still work."""
    for _ in range(5):
        with pytest.raises(LoginFailed):
            user_authenticate(login="root", password="wrong", ip="198.51.100.1")
    client.force_login(staff_with(make_user, *CHANGE_USER))
    changelist = reverse("admin:accounts_user_changelist")
    for action in ("deactivate_users", "clear_login_lockout"):
        response = client.post(
            changelist, {"action": action, "_selected_action": [root.pk, alice.pk]}, follow=True
        )
        assert b"Only a superuser may act on an administrator account" in response.content
    root.refresh_from_db()
    alice.refresh_from_db()
    assert root.is_active and alice.is_active
    assert login_lockout_status(user=root, now=timezone.now()).locked
    client.post(changelist, {"action": "deactivate_users", "_selected_action": [alice.pk]})
    alice.refresh_from_db()
    assert not alice.is_active


@pytest.mark.django_db
def test_admin_account_cannot_be_deleted_by_a_non_superuser(client, make_user, root, alice):
    """Issue 14.1: with delete_user, a superuser can be deleted neither from its delete page nor
    by delete_selected."""
    client.force_login(
        staff_with(make_user, "accounts.delete_user", "accounts.change_user", "accounts.view_user")
    )
    delete_url = reverse("admin:accounts_user_delete", args=[root.pk])
    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    response = client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "delete_selected", "_selected_action": [root.pk, alice.pk], "post": "yes"},
    )
    assert response.status_code == 403
    assert User.objects.filter(pk__in=[root.pk, alice.pk]).count() == 2


@pytest.mark.django_db
def test_add_user_alone_cannot_add_users(client, make_user, admins_group):
    """Issue 14.1, permission pair add_user only: the add form is refused, crafted or not."""
    client.force_login(staff_with(make_user, "accounts.add_user"))
    add_url = reverse("admin:accounts_user_add")
    assert client.get(add_url).status_code == 403
    form = {
        "username": "mallory",
        "email": "mallory@example.com",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        **escalation(admins_group),
    }
    assert client.post(add_url, form).status_code == 403
    assert not User.objects.filter(username="mallory").exists()


@pytest.mark.django_db
def test_add_form_cannot_create_a_staff_or_superuser(client, make_user, admins_group):
    """Issue 14.1, add_user + change_user: a crafted add form with the privilege fields creates
    an ordinary account."""
    client.force_login(
        staff_with(make_user, "accounts.add_user", "accounts.change_user", "accounts.view_user")
    )
    response = client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "mallory",
            "email": "mallory@example.com",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            **escalation(admins_group),
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert rights(User.objects.get(username="mallory")) == (False, False, [], [])


@pytest.mark.django_db
def test_group_permissions_are_read_only_for_a_non_superuser(client, make_user, admins_group):
    """Issue 14.1, change_user + change_group: a staff member of a group cannot add permissions
    to it (they would reach themselves), nor join another group; renaming still works."""
    staff = staff_with(
        make_user, *CHANGE_USER, "auth.change_group", "auth.view_group", username="helpdesk"
    )
    own = Group.objects.create(name="helpdesk")
    own.permissions.set(permissions("accounts.view_user"))
    staff.groups.add(own)
    client.force_login(staff)
    group_url = reverse("admin:auth_group_change", args=[own.pk])
    assert b'name="permissions"' not in client.get(group_url).content
    every = [str(pk) for pk in Permission.objects.values_list("pk", flat=True)]
    response = client.post(group_url, {"name": "helpdesk team", "permissions": every})
    assert response.status_code == 302, response.content[:2000]
    own.refresh_from_db()
    assert own.name == "helpdesk team"
    assert list(own.permissions.values_list("codename", flat=True)) == ["view_user"]
    client.post(user_change_url(staff), user_form(staff, groups=[str(admins_group.pk)]))
    assert rights(staff)[2] == ["helpdesk team"]
    assert not User.objects.get(pk=staff.pk).has_perm("accounts.delete_user")


@pytest.mark.django_db
def test_a_superuser_still_grants_rights(client, root, alice, admins_group):
    """Issue 14.1: the rule narrows who grants rights, not whether they can be granted."""
    client.force_login(root)
    response = client.post(user_change_url(alice), user_form(alice, **escalation(admins_group)))
    assert response.status_code == 302, response.content[:2000]
    staff, superuser, groups, perms = rights(alice)
    assert staff and superuser and groups == ["admins"] and len(perms) > 10
    group_url = reverse("admin:auth_group_change", args=[admins_group.pk])
    client.post(group_url, {"name": "admins", "permissions": permissions("auth.view_group")[0].pk})
    assert list(admins_group.permissions.values_list("codename", flat=True)) == ["view_group"]


class AdminSession:
    """A person at a browser signed in to the admin of a live server (requests, no test client:
    real cookies, real CSRF tokens)."""

    def __init__(self, base_url: str):
        self.base = base_url
        self.http = requests.Session()

    def csrf_from(self, path: str) -> str:
        page = self.http.get(self.base + path, timeout=10)
        assert page.status_code == 200, (path, page.status_code)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match, page.text[:2000]
        return match.group(1)

    def login(self, username: str, password: str) -> None:
        token = self.csrf_from("/admin/login/")
        response = self.http.post(
            self.base + "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token, "username": username, "password": password},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, response.text[:2000]

    def post_form(self, path: str, data: dict) -> requests.Response:
        token = self.csrf_from(path)
        return self.http.post(
            self.base + path,
            data={"csrfmiddlewaretoken": token, **data},
            allow_redirects=False,
            timeout=10,
        )


@pytest.mark.slow
def test_escalation_over_http_is_refused(child_env, settings, make_user):
    """Issue 14.1 end to end: against gunicorn + PostgreSQL, a staff user with change_user signs
    in to the admin, posts their own change form with is_superuser/is_staff/groups/permissions
    ticked and tries the superuser's password page: no right is gained, no password changes,
    and every admin page carries the admin's CSP (issue 14.10)."""
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    root = make_user(username="root", is_staff=True, is_superuser=True)
    staff = staff_with(make_user, *CHANGE_USER, username="mallory")
    group = Group.objects.create(name="admins")
    group.permissions.set(Permission.objects.all())
    with Gunicorn(child_env, workers=1) as server:
        browser = AdminSession(server.url)
        browser.login("mallory", PASSWORD)
        own = user_change_url(staff)
        response = browser.post_form(own, user_form(staff, **escalation(group)))
        assert response.status_code == 302, response.text[:2000]
        reset = browser.http.get(server.url + password_url(root), timeout=10)
        assert reset.status_code == 403
        page = browser.http.get(server.url + own, timeout=10)
        assert page.headers["Content-Security-Policy"] == ADMIN_CONTENT_SECURITY_POLICY
    assert rights(staff) == (True, False, [], ["change_user", "view_user"])
    root.refresh_from_db()
    assert root.check_password(PASSWORD)


# --- Issue 14.10: Content-Security-Policy on the admin ---------------------------------------


class InlineCode(HTMLParser):
    """Collects what a strict CSP (no 'unsafe-inline', 'self' only) would block on a page."""

    def __init__(self):
        super().__init__()
        self.blocked: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, _value in attrs:
            if name.startswith("on"):
                self.blocked.append(f"<{tag} {name}=...> event handler")
            if name == "style":
                self.blocked.append(f"<{tag} style=...> inline style")
        if tag == "style":
            self.blocked.append("<style> element")
        if tag == "script":
            kind = attributes.get("type", "text/javascript")
            if "src" not in attributes and "json" not in kind:
                self._in_script = True
        for name in ("src", "href"):
            value = attributes.get(name) or ""
            if tag in ("script", "link", "img") and re.match(r"^(https?:)?//", value):
                self.blocked.append(f"<{tag} {name}={value}> from another origin")

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.blocked.append(f"inline script: {data.strip()[:80]}")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


def admin_pages(client, root) -> list[str]:
    """Every kind of admin page: index, each model's list, add, change and delete pages, the
    password form, and the action confirmation and secret pages."""
    alice = User.objects.get(username="alice")
    urls = [reverse("admin:index"), password_url(alice)]
    for model in admin.site._registry:
        opts = model._meta
        prefix = f"admin:{opts.app_label}_{opts.model_name}"
        urls += [reverse(f"{prefix}_changelist"), reverse(f"{prefix}_add")]
        pk = model._default_manager.values_list("pk", flat=True).first()
        if pk is not None:
            urls += [
                reverse(f"{prefix}_change", args=[pk]),
                reverse(f"{prefix}_delete", args=[pk]),
                reverse(f"{prefix}_history", args=[pk]),
            ]
    return urls


@pytest.fixture
def populated(make_user, root, alice):
    client_create(
        name="App",
        client_type="confidential",
        grant_types=["authorization_code"],
        redirect_uris=["https://app.example.com/cb"],
        scopes=["openid"],
    )
    session_start(user=alice, client_id="authserver", audience=["api"])
    Group.objects.create(name="ops")


def strict(policy: str) -> bool:
    return "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy and "*" not in policy


@pytest.mark.django_db
def test_admin_responses_carry_a_strict_csp(client, root, populated):
    """Issue 14.10: every admin response (pages, refusals, the login page, a 404 under the
    admin) carries the admin's Content-Security-Policy, which allows no inline code."""
    assert strict(ADMIN_CONTENT_SECURITY_POLICY)
    assert "script-src 'self'" in ADMIN_CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in ADMIN_CONTENT_SECURITY_POLICY
    anonymous = client.get(reverse("admin:login"))
    assert anonymous["Content-Security-Policy"] == ADMIN_CONTENT_SECURITY_POLICY
    client.force_login(root)
    for url in [*admin_pages(client, root), "/admin/no/such/page/"]:
        response = client.get(url)
        assert response["Content-Security-Policy"] == ADMIN_CONTENT_SECURITY_POLICY, url


@pytest.mark.django_db
def test_admin_pages_need_no_inline_code(client, root, populated):
    """Issue 14.10: the CSP costs the admin nothing: no page (nor the client-secret and action
    confirmation pages) has an inline script, event handler, inline style or a resource from
    another origin, so a browser enforcing the policy blocks nothing the admin needs."""
    probe = InlineCode()  # the checker itself sees each kind of inline code
    probe.feed(
        '<script>x()</script><p style="a" onclick="b"><style>p{}</style>'
        '<script src="https://cdn.example/x.js"></script><script type="application/json">{}'
    )
    assert len(probe.blocked) == 5, probe.blocked
    client.force_login(root)
    responses = [client.get(url) for url in admin_pages(client, root)]
    confidential = Client.objects.get(name="App")
    action = {"action": "regenerate_secret", "_selected_action": [confidential.pk]}
    responses.append(client.post(reverse("admin:oauth_client_changelist"), action))
    responses.append(
        client.post(reverse("admin:oauth_client_changelist"), {**action, "confirm": "yes"})
    )
    signing = reverse("admin:tokens_signingkey_changelist")
    key = SigningKey.objects.values_list("pk", flat=True).first()
    responses.append(client.post(signing, {"action": "revoke_selected", "_selected_action": [key]}))
    responses.append(client.get(reverse("admin:tokens_signingkey_rotate")))
    client.logout()
    responses.append(client.get(reverse("admin:login")))
    for response in responses:
        if response.status_code != 200 or "html" not in response["Content-Type"]:
            continue
        parser = InlineCode()
        parser.feed(response.content.decode())
        assert parser.blocked == [], (response.request["PATH_INFO"], parser.blocked)
    titles = b"".join(r.content for r in responses)
    assert b"Regenerate client secret?" in titles or b"Regenerate the secret" in titles
    assert b"client_secret" in titles  # the secret page itself was checked


@pytest.mark.django_db
def test_csp_is_set_only_on_admin_paths(client):
    """Issue 14.10: the admin's policy stays on the admin; the hosted pages keep their own and
    machine endpoints get none from this middleware."""
    login = client.get(reverse("login"))
    assert login["Content-Security-Policy"] == pages.CONTENT_SECURITY_POLICY
    discovery = client.get(reverse("openid-configuration"))
    assert discovery.get("Content-Security-Policy") != ADMIN_CONTENT_SECURITY_POLICY
