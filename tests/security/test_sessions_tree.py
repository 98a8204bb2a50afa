"""Issue 13.1: one session model. A browser sign-in, the OAuth grants it approved and their
refresh tokens form one tree, and ending any node ends what hangs from it.

Every test drives authserver under gunicorn on PostgreSQL over HTTP, with `requests` sessions as
browsers (the hosted login form and its CSRF token, the consent form), and checks afterwards
that the ended browser answers `login_required` to `prompt=none` and cannot mint a code, that a
code minted before cannot be exchanged, and that the grant's refresh token is dead.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from accounts.models import User
from accounts.services import user_create
from authserver import settings as app_settings
from oauth.clients import client_create
from sessions.models import Session
from tests.conftest import PASSWORD
from tests.live import Gunicorn, manage
from tests.security.battery import form_fields, pkce
from tests.security.live_oauth import (
    REDIRECT_URI,
    basic,
    bearer_get,
    bearer_post,
    first_party_login,
    first_party_refresh,
    token_request,
)

pytestmark = pytest.mark.slow

SCOPE = "openid profile offline_access"


@pytest.fixture
def server(child_env, settings):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    user_create(username="mallory", email="mallory@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=2)
    running.env["AUTHSERVER_ISSUER"] = running.url
    with running:
        yield running


@pytest.fixture
def app():
    registered = client_create(
        name="Tree App",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=["http://127.0.0.1:9/bye"],
        scopes=SCOPE.split(),
    )
    return registered.client.client_id, registered.secret


def sign_in(server, browser: requests.Session, username: str = "alice") -> requests.Response:
    page = browser.get(server.url + "/login", timeout=10)
    fields = form_fields(page.text)
    fields.update(username=username, password=PASSWORD)
    response = browser.post(server.url + "/login", data=fields, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:300]
    return response


def authorize(server, browser, client_id: str, **extra: str) -> tuple[str, dict[str, list[str]]]:
    """Run an authorization request in `browser` (approving consent if asked); (verifier, the
    callback's query). Does not sign in: a login page means the browser is signed out."""
    challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": "s",
        "code_challenge": challenge.challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    url = server.url + "/oauth/authorize?" + urlencode(params)
    for _ in range(5):
        response = browser.get(url, allow_redirects=False, timeout=10)
        if response.status_code == 302:
            location = urljoin(url, response.headers["Location"])
            if location.startswith(REDIRECT_URI):
                return challenge.verifier, parse_qs(urlsplit(location).query)
            if urlsplit(location).path == "/login":
                return challenge.verifier, {"login_page": [location]}
            url = location
            continue
        assert response.status_code == 200, response.text[:300]
        fields = form_fields(response.text)
        fields["decision"] = "allow"
        response = browser.post(
            server.url + "/oauth/authorize/decision",
            data=fields,
            allow_redirects=False,
            timeout=10,
        )
        location = response.headers["Location"]
        assert location.startswith(REDIRECT_URI), location
        return challenge.verifier, parse_qs(urlsplit(location).query)
    raise AssertionError("no answer from the authorization endpoint")


def exchange(server, app, code: str, verifier: str) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    return token_request(server, data, basic(*app))


def refresh(server, app, token: str) -> requests.Response:
    return token_request(
        server, {"grant_type": "refresh_token", "refresh_token": token}, basic(*app)
    )


def grant(server, browser, app) -> dict:
    verifier, query = authorize(server, browser, app[0])
    response = exchange(server, app, query["code"][0], verifier)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def browser_row(username: str = "alice") -> Session:
    return Session.objects.get(user__username=username, client_id="", revoked_at__isnull=True)


def assert_browser_ended(server, browser, app) -> None:
    """prompt=none answers login_required; a plain request is sent to the login page."""
    _, query = authorize(server, browser, app[0], prompt="none")
    assert query.get("error") == ["login_required"], query
    _, query = authorize(server, browser, app[0])
    assert "login_page" in query, query


def signed_in_tree(server, app):
    """A browser signed in, a code minted but not exchanged, and a grant with a refresh token."""
    browser = requests.Session()
    sign_in(server, browser)
    tokens = grant(server, browser, app)
    pending_verifier, pending = authorize(server, browser, app[0])
    return browser, tokens, (pending["code"][0], pending_verifier)


def assert_tree_ended(server, browser, app, tokens, pending) -> None:
    assert_browser_ended(server, browser, app)
    response = exchange(server, app, *pending)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    response = refresh(server, app, tokens["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert bearer_get(server, "/oauth/userinfo", tokens["access_token"]).status_code == 401
    assert not Session.objects.filter(user__username="alice", revoked_at__isnull=True).exists()


def test_browser_sign_in_is_listed_with_kind_device_ip_and_last_use(server, app):
    """Issue 13.1: the browser sign-in and the grant it approved are listed, with kind, app,
    device, IP and last use; the grant names the sign-in as its parent."""
    browser = requests.Session()
    browser.headers["User-Agent"] = "TreeTest/1.0 (browser)"
    sign_in(server, browser)
    grant(server, browser, app)
    api = first_party_login(server)
    listed = bearer_get(server, "/api/v1/sessions", api["access_token"])
    assert listed.status_code == 200
    rows = {row["kind"]: row for row in listed.json()}
    assert set(rows) == {"browser", "oauth", "first_party"}
    assert rows["browser"]["user_agent"] == "TreeTest/1.0 (browser)"
    assert rows["browser"]["ip"] == "127.0.0.1"
    assert rows["browser"]["app_name"] == "Browser sign-in"
    assert rows["oauth"]["app_name"] == "Tree App"
    assert rows["oauth"]["parent_id"] == rows["browser"]["id"]
    assert rows["first_party"]["parent_id"] is None
    assert all(row["last_used_at"] for row in rows.values())


def test_logout_all_ends_the_browser_sign_in_and_its_grants(server, app):
    """Issue 13.1: logout-all ends browser sign-ins too."""
    browser, tokens, pending = signed_in_tree(server, app)
    api = first_party_login(server)
    assert bearer_post(server, "/api/v1/auth/logout-all", api["access_token"]).status_code == 204
    assert_tree_ended(server, browser, app, tokens, pending)


def test_deleting_the_browser_session_ends_it_and_its_grants(server, app):
    """Issue 13.1: DELETE /api/v1/sessions/{id} of a browser sign-in."""
    browser, tokens, pending = signed_in_tree(server, app)
    api = first_party_login(server)
    row = browser_row()
    response = requests.delete(
        f"{server.url}/api/v1/sessions/{row.pk}", headers=bearer(api["access_token"]), timeout=10
    )
    assert response.status_code == 204
    assert_browser_ended(server, browser, app)
    assert exchange(server, app, *pending).status_code == 400
    assert refresh(server, app, tokens["refresh_token"]).status_code == 400
    # The first-party session was not part of that tree and goes on.
    assert bearer_get(server, "/api/v1/me", api["access_token"]).status_code == 200


def test_admin_revoke_action_ends_the_browser_sign_in(server, app):
    """Issue 13.1: the admin's revoke action, run by a signed-in staff member over HTTP."""
    browser, tokens, pending = signed_in_tree(server, app)
    user_create(
        username="root", email="root@example.com", password=PASSWORD, is_staff=True,
        is_superuser=True,
    )  # fmt: skip
    admin = requests.Session()
    sign_in(server, admin, username="root")
    changelist = admin.get(server.url + "/admin/authsessions/session/", timeout=10)
    assert changelist.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', changelist.text).group(1)
    response = admin.post(
        server.url + "/admin/authsessions/session/",
        data={
            "csrfmiddlewaretoken": token,
            "action": "revoke_sessions",
            "_selected_action": [str(browser_row().pk)],
        },
        headers={"Referer": server.url + "/admin/authsessions/session/"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:300]
    assert_tree_ended(server, browser, app, tokens, pending)


def test_deactivation_ends_the_browser_sign_in(server, app):
    """Issue 13.1: user deactivation (any path that saves the user)."""
    browser, tokens, pending = signed_in_tree(server, app)
    result = manage(
        "shell",
        "-c",
        "from accounts.models import User; u = User.objects.get(username='alice'); "
        "u.is_active = False; u.save()",
        env=server.env,
    )
    assert result.returncode == 0, result.stderr
    assert_tree_ended(server, browser, app, tokens, pending)


def test_set_password_outside_the_services_ends_every_session(server, app):
    """Issue 13.2.5: a password change through the model (a shell, third-party code) ends every
    session: browser sign-ins, OAuth grants and first-party sessions."""
    browser, tokens, pending = signed_in_tree(server, app)
    api = first_party_login(server)
    result = manage(
        "shell",
        "-c",
        "from accounts.models import User; u = User.objects.get(username='alice'); "
        "u.set_password('another horse battery 42'); u.save()",
        env=server.env,
    )
    assert result.returncode == 0, result.stderr
    assert_tree_ended(server, browser, app, tokens, pending)
    assert first_party_refresh(server, api["refresh_token"]).status_code == 401


def test_manage_changepassword_ends_every_session(server, app):
    """Issue 13.2.5: `manage.py changepassword` (Django's own command, not our services)."""
    browser, tokens, pending = signed_in_tree(server, app)
    api = first_party_login(server)
    new = "another horse battery 42"
    result = manage("changepassword", "alice", env=server.env, stdin=f"{new}\n{new}\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_tree_ended(server, browser, app, tokens, pending)
    assert first_party_refresh(server, api["refresh_token"]).status_code == 401


def test_hasher_upgrade_at_sign_in_is_not_a_password_change(server, app, settings):
    """Issue 13.2.5: Django's rehash on sign-in (PBKDF2 -> Argon2id) ends nothing."""
    user = User.objects.get(username="alice")
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        *app_settings.PASSWORD_HASHERS,
    ]
    user.password = ""
    user.set_password(PASSWORD)
    user.save()
    assert user.password.startswith("pbkdf2_")
    api = first_party_login(server)
    browser = requests.Session()
    sign_in(server, browser)  # verifies the PBKDF2 hash and upgrades it to Argon2id
    user.refresh_from_db()
    assert user.password.startswith("argon2")
    assert first_party_refresh(server, api["refresh_token"]).status_code == 200


def test_hosted_logout_ends_the_grants_the_sign_in_approved(server, app):
    """Issue 13.1: ending the browser node (the hosted sign-out) ends what hangs from it."""
    browser, tokens, pending = signed_in_tree(server, app)
    page = browser.get(server.url + "/logout", timeout=10)
    fields = {"csrfmiddlewaretoken": re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                                               page.text).group(1)}  # fmt: skip
    response = browser.post(server.url + "/logout", data=fields, allow_redirects=False, timeout=10)
    assert response.status_code == 303
    assert_tree_ended(server, browser, app, tokens, pending)
    assert Session.objects.get(client_id=app[0]).revoke_reason == "sign_in_ended"


def test_end_session_with_someone_elses_id_token_only_signs_this_browser_out(server, app):
    """Issue 13.2.8: RP-initiated logout with another user's (even expired) id_token_hint ends
    only the calling browser's own sign-in; the victim's sign-in and grant go on."""
    victim = requests.Session()
    sign_in(server, victim)
    victim_tokens = grant(server, victim, app)
    attacker = requests.Session()
    sign_in(server, attacker, username="mallory")
    params = {"id_token_hint": victim_tokens["id_token"]}
    page = attacker.get(server.url + "/oauth/end-session?" + urlencode(params), timeout=10)
    assert page.status_code == 200
    response = attacker.post(
        server.url + "/oauth/end-session/confirm",
        data=form_fields(page.text) | params,
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code in (302, 303)
    assert refresh(server, app, victim_tokens["refresh_token"]).status_code == 200
    assert browser_row("alice").revoked_at is None
    assert not Session.objects.filter(user__username="mallory", revoked_at__isnull=True).exists()
    # And an anonymous browser holding the hint ends nothing either.
    anonymous = requests.Session()
    response = anonymous.get(server.url + "/oauth/end-session?" + urlencode(params), timeout=10)
    assert response.status_code in (200, 302)
    assert browser_row("alice").revoked_at is None


def test_reauthentication_rotates_the_session_cookie(server, app):
    """Issue 14.9: signing in again (prompt=login) issues a new session key, so a cookie stolen
    before does not carry the fresh auth_time; the sign-in (and its grants) go on."""
    browser = requests.Session()
    sign_in(server, browser)
    tokens = grant(server, browser, app)
    cookie_name = next(c.name for c in browser.cookies if "session" in c.name)
    stolen = browser.cookies.get(cookie_name)
    sign_in(server, browser)
    assert browser.cookies.get(cookie_name) != stolen
    thief = requests.Session()
    thief.cookies.set(cookie_name, stolen)
    _, query = authorize(server, thief, app[0], prompt="none")
    assert query.get("error") == ["login_required"]
    assert refresh(server, app, tokens["refresh_token"]).status_code == 200
    assert Session.objects.filter(user__username="alice", client_id="").count() == 1


def test_exchange_racing_a_sign_out_never_leaves_a_live_grant_under_an_ended_sign_in(server, app):
    """Issue 13.1 / Bad input: a code exchange racing the sign-in's end. Whatever the order,
    PostgreSQL ends consistent: no live grant hangs from an ended browser sign-in."""
    for _ in range(5):
        browser = requests.Session()
        sign_in(server, browser)
        verifier, query = authorize(server, browser, app[0])
        row = browser_row()
        api = first_party_login(server)
        barrier = threading.Barrier(2)
        results: dict[str, int] = {}

        def do_exchange(code=query["code"][0], verifier=verifier, barrier=barrier, results=results):
            barrier.wait()
            results["exchange"] = exchange(server, app, code, verifier).status_code

        def do_delete(row=row, api=api, barrier=barrier, results=results):
            barrier.wait()
            results["delete"] = requests.delete(
                f"{server.url}/api/v1/sessions/{row.pk}",
                headers=bearer(api["access_token"]),
                timeout=10,
            ).status_code

        threads = [threading.Thread(target=do_exchange), threading.Thread(target=do_delete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results["delete"] == 204 and results["exchange"] in (200, 400), results
        assert not Session.objects.filter(parent_id=row.pk, revoked_at__isnull=True).exists(), (
            results
        )
