"""The account pages' rules over HTTP: authserver under gunicorn on PostgreSQL, driven with
`requests` as browsers (cookies, CSRF tokens read off the forms) and as OAuth clients (code flow
with PKCE, refresh at the token endpoint). Each test fails if its rule is broken.

"A sign-in ten minutes ago" is made by moving the `auth_time` stored in the browser's Django
session (database-backed, shared with the server) back in time: the server then sees exactly
what it would see ten minutes later.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore

from accounts.models import User
from accounts.services import user_create
from audit.events import EventType
from audit.models import AuthEvent
from audit.services import audit_event_record
from authserver import settings as app_settings
from oauth.clients import client_create
from oauth.models import Consent
from sessions.models import Session
from tests.conftest import PASSWORD
from tests.live import Gunicorn

pytestmark = pytest.mark.slow

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the code is read off the redirect
SCOPE = "openid profile email offline_access"
NEW_PASSWORD = "a brand new passphrase 7431"  # test-only credential
TITLE = '<h2 class="item-title">{}</h2>'  # one entry of a list on the account pages
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    user_create(username="bob", email="bob@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=2)
    running.env["AUTHSERVER_ISSUER"] = running.url
    running.env["AUTHSERVER_REAUTH_MAX_AGE"] = "300"
    with running:
        yield running


@pytest.fixture
def apps(server) -> dict[str, tuple[str, str]]:
    """Two OAuth clients: name -> (client_id, secret)."""
    made = {}
    for name in ("Photos", "Calendar"):
        registered = client_create(
            name=name,
            client_type="confidential",
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=[REDIRECT_URI],
            scopes=SCOPE.split(),
        )
        made[name] = (registered.client.client_id, registered.secret)
    return made


# --- Browser side ------------------------------------------------------------------------------


def fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def csrf_token(browser: requests.Session, server: Gunicorn, path: str = "/login") -> str:
    page = browser.get(server.url + path, timeout=10)
    return fields(page.text)["csrfmiddlewaretoken"]


def sign_in(server: Gunicorn, username: str, agent: str = "") -> requests.Session:
    browser = requests.Session()
    if agent:
        browser.headers["User-Agent"] = agent
    token = csrf_token(browser, server)
    response = browser.post(
        server.url + "/login",
        data={"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:300]
    return browser


def post(browser: requests.Session, server: Gunicorn, path: str, data=None, *, csrf=True):
    """POST a form the way the page does (token from the page's own form, unless csrf=False)."""
    body = dict(data or {})
    if csrf:
        body["csrfmiddlewaretoken"] = csrf_token(browser, server, "/account/")
    return browser.post(server.url + path, data=body, allow_redirects=False, timeout=10)


def sign_in_ages(browser: requests.Session, seconds: int) -> None:
    """The browser's password check now lies `seconds` further in the past."""
    store = SessionStore(session_key=browser.cookies[django_settings.SESSION_COOKIE_NAME])
    store["auth_time"] = int(store["auth_time"]) - seconds
    store.save()


def signed_in(browser: requests.Session, server: Gunicorn) -> bool:
    response = browser.get(server.url + "/account/", allow_redirects=False, timeout=10)
    assert response.status_code in (200, 303), response.status_code
    return response.status_code == 200


# --- OAuth client side -------------------------------------------------------------------------


def authorize(server, browser, client_id, username="alice") -> str:
    """Run the authorization request in `browser` (signing in and approving as needed); the
    code."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    url = (
        server.url
        + "/oauth/authorize?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "state": secrets.token_urlsafe(8),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "prompt": "consent",
            }
        )
    )
    for _ in range(10):
        response = browser.get(url, allow_redirects=False, timeout=10)
        if response.status_code in (302, 303):
            url = urljoin(url, response.headers["Location"])
        else:
            assert response.status_code == 200, response.text[:500]
            form = fields(response.text)
            if 'name="password"' in response.text:
                form.update(username=username, password=PASSWORD)
                target = server.url + "/login"
            else:
                form["decision"] = "allow"
                target = server.url + "/oauth/authorize/decision"
            response = browser.post(target, data=form, allow_redirects=False, timeout=10)
            assert response.status_code in (302, 303), response.text[:500]
            url = urljoin(target, response.headers["Location"])
        if url.startswith(REDIRECT_URI):
            return parse_qs(urlsplit(url).query)["code"][0], verifier
    raise AssertionError("the authorization did not come back to the client")


def oauth_tokens(server, browser, client, username="alice") -> dict:
    client_id, secret = client
    code, verifier = authorize(server, browser, client_id, username)
    response = requests.post(
        server.url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(client_id, secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["refresh_token"]
    return tokens


def refresh(server, client, tokens: dict) -> requests.Response:
    """Use the refresh token (keeping the rotated one in `tokens` on success)."""
    response = requests.post(
        server.url + "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=client,
        timeout=10,
    )
    if response.status_code == 200:
        tokens.update(response.json())
    return response


def api_login(server, username="alice") -> dict:
    response = requests.post(
        server.url + "/api/v1/auth/login",
        json={"username": username, "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def api_refresh(server, tokens: dict) -> requests.Response:
    return requests.post(
        server.url + "/api/v1/auth/refresh",
        json={"refresh_token": tokens["refresh_token"]},
        timeout=10,
    )


def live_sessions(username: str) -> set[str]:
    return {
        str(pk)
        for pk in Session.objects.filter(
            user__username=username, revoked_at__isnull=True
        ).values_list("pk", flat=True)
    }


def browser_sid(browser: requests.Session) -> str:
    store = SessionStore(session_key=browser.cookies[django_settings.SESSION_COOKIE_NAME])
    return store["_authserver_sid"]


# --- The rules ---------------------------------------------------------------------------------


def test_every_account_form_refuses_a_post_without_its_csrf_token(server, apps):
    alice = sign_in(server, "alice")
    oauth_tokens(server, alice, apps["Photos"])
    other = sign_in(server, "alice")
    before = live_sessions("alice")
    other_sid = browser_sid(other)
    for path, data in [
        ("/account/", {"first_name": "Mallory"}),
        (
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_again": NEW_PASSWORD,
            },
        ),
        ("/account/sessions/end-others", {}),
        (f"/account/sessions/{other_sid}/end", {}),
        (f"/account/apps/{apps['Photos'][0]}/withdraw", {}),
        ("/account/delete", {"password": PASSWORD, "confirm": "on"}),
    ]:
        response = post(alice, server, path, data, csrf=False)
        assert response.status_code == 403, path
        assert "This form has expired" in response.text, path
    assert live_sessions("alice") == before
    user = User.objects.get(username="alice")
    assert user.first_name == "" and user.check_password(PASSWORD)
    assert Consent.objects.filter(user=user).count() == 1
    # The same requests with the token do act (the refusal above was the token's doing).
    assert post(alice, server, f"/account/sessions/{other_sid}/end").status_code == 303
    assert other_sid not in live_sessions("alice")


def test_sensitive_actions_ask_for_the_password_again_after_the_window(server, apps):
    alice = sign_in(server, "alice")
    other = sign_in(server, "alice")
    api = api_login(server)
    sign_in_ages(alice, 301)  # AUTHSERVER_REAUTH_MAX_AGE is 300
    before = live_sessions("alice")

    # Every sensitive page and action sends the browser to "Confirm it's you" and back.
    for path, method in [
        ("/account/sessions/end-others", "post"),
        ("/account/sessions/end-others", "get"),
        (f"/account/sessions/{browser_sid(other)}/end", "post"),
        (f"/account/apps/{apps['Photos'][0]}/withdraw", "post"),
        ("/account/password", "get"),
        ("/account/password", "post"),
        ("/account/delete", "get"),
        ("/account/delete", "post"),
    ]:
        if method == "post":
            data = {
                "password": PASSWORD,
                "confirm": "on",
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_again": NEW_PASSWORD,
            }
            response = post(alice, server, path, data)
        else:
            response = alice.get(server.url + path, allow_redirects=False, timeout=10)
        assert response.status_code == 303, (path, method, response.status_code)
        target = urlsplit(response.headers["Location"])
        assert target.path == "/login", path
        assert parse_qs(target.query) == {"next": [path], "prompt": ["login"]}, path
    assert live_sessions("alice") == before
    assert User.objects.filter(username="alice").exists()
    assert User.objects.get(username="alice").check_password(PASSWORD)
    # Pages that only show need no fresh password.
    for path in ("/account/", "/account/sessions", "/account/apps", "/account/activity"):
        assert alice.get(server.url + path, allow_redirects=False, timeout=10).status_code == 200

    # The password typed again: back to the action's page, and the action works.
    confirm = alice.get(
        server.url
        + "/login?"
        + urlencode({"next": "/account/sessions/end-others", "prompt": "login"}),
        timeout=10,
    )
    assert "Confirm it\u2019s you" in confirm.text
    form = fields(confirm.text)
    form.update(username="alice", password=PASSWORD)
    back = alice.post(server.url + "/login", data=form, allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["Location"] == "/account/sessions/end-others"
    page = alice.get(server.url + "/account/sessions/end-others", timeout=10)
    assert page.status_code == 200 and "End all other sessions?" in page.text
    assert post(alice, server, "/account/sessions/end-others").status_code == 303
    assert live_sessions("alice") == {browser_sid(alice)}
    assert not signed_in(other, server)
    assert api_refresh(server, api).status_code == 401
    assert signed_in(alice, server)


def test_another_users_sessions_and_apps_cannot_be_touched(server, apps):
    alice = sign_in(server, "alice")
    bob = sign_in(server, "bob")
    bob_tokens = oauth_tokens(server, bob, apps["Calendar"], username="bob")
    bob_api = api_login(server, "bob")
    bob_before = live_sessions("bob")
    assert len(bob_before) == 3
    bob_browser = browser_sid(bob)

    for sid in [*bob_before, "not-a-uuid", "00000000-0000-0000-0000-000000000000"]:
        for method in ("get", "post"):
            path = f"/account/sessions/{sid}/end"
            if method == "post":
                response = post(alice, server, path)
            else:
                response = alice.get(server.url + path, allow_redirects=False, timeout=10)
            assert response.status_code == 404, (sid, method)
    # Bob's app (alice never used it) and an unknown client: 404 as well.
    for client_id in (apps["Calendar"][0], "no-such-client"):
        assert post(alice, server, f"/account/apps/{client_id}/withdraw").status_code == 404

    assert live_sessions("bob") == bob_before
    assert signed_in(bob, server) and browser_sid(bob) == bob_browser
    assert refresh(server, apps["Calendar"], bob_tokens).status_code == 200
    assert api_refresh(server, bob_api).status_code == 200
    assert Consent.objects.filter(user__username="bob").count() == 1
    # Nor does alice's session list name bob's sessions.
    listing = alice.get(server.url + "/account/sessions", timeout=10).text
    assert not any(sid in listing for sid in bob_before)


def test_password_change_ends_every_other_session_and_keeps_this_one(server, apps):
    here = sign_in(server, "alice")
    elsewhere = sign_in(server, "alice")
    here_app = oauth_tokens(server, here, apps["Photos"])
    elsewhere_app = oauth_tokens(server, elsewhere, apps["Calendar"])
    api = api_login(server)
    form = {
        "current_password": "wrong password 1",
        "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD,
    }

    # Wrong current password, different retypes, a rejected password: nothing changes.
    wrong = post(here, server, "/account/password", form)
    assert wrong.status_code == 200 and "That password is not right." in wrong.text
    differ = post(
        here,
        server,
        "/account/password",
        {**form, "current_password": PASSWORD, "new_password_again": "something else"},
    )
    assert differ.status_code == 200 and "The two new passwords differ." in differ.text
    weak = post(
        here,
        server,
        "/account/password",
        {"current_password": PASSWORD, "new_password": "short", "new_password_again": "short"},
    )
    assert weak.status_code == 200 and 'aria-invalid="true"' in weak.text
    assert User.objects.get(username="alice").check_password(PASSWORD)
    assert refresh(server, apps["Calendar"], elsewhere_app).status_code == 200

    changed = post(here, server, "/account/password", {**form, "current_password": PASSWORD})
    assert changed.status_code == 303, changed.text[:500]
    assert User.objects.get(username="alice").check_password(NEW_PASSWORD)

    # This browser stays signed in (on a new sign-in made after the change) ...
    page = here.get(server.url + "/account/password", allow_redirects=False, timeout=10)
    assert page.status_code == 200 and "Your password was changed." in page.text
    assert signed_in(here, server)
    assert live_sessions("alice") == {browser_sid(here)}
    # ... every other one is over: the other browser, both apps' refresh tokens, the API's.
    assert not signed_in(elsewhere, server)
    for client, tokens in ((apps["Calendar"], elsewhere_app), (apps["Photos"], here_app)):
        refused = refresh(server, client, tokens)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert api_refresh(server, api).status_code == 401
    assert (
        AuthEvent.objects.filter(
            event_type=EventType.PASSWORD_CHANGED, user__username="alice"
        ).count()
        == 1
    )


def test_withdrawing_an_app_ends_its_grants_and_only_its(server, apps):
    alice = sign_in(server, "alice")
    photos = oauth_tokens(server, alice, apps["Photos"])
    calendar = oauth_tokens(server, alice, apps["Calendar"])
    listing = alice.get(server.url + "/account/apps", timeout=10).text
    assert TITLE.format("Photos") in listing and TITLE.format("Calendar") in listing

    withdrawn = post(alice, server, f"/account/apps/{apps['Photos'][0]}/withdraw")
    assert withdrawn.status_code == 303
    refused = refresh(server, apps["Photos"], photos)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    userinfo = requests.get(
        server.url + "/oauth/userinfo",
        headers={"Authorization": f"Bearer {photos['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 401
    assert refresh(server, apps["Calendar"], calendar).status_code == 200
    listing = alice.get(server.url + "/account/apps", timeout=10).text
    assert TITLE.format("Photos") not in listing and TITLE.format("Calendar") in listing
    assert list(
        AuthEvent.objects.filter(event_type=EventType.CONSENT_WITHDRAWN).values_list(
            "client_id", flat=True
        )
    ) == [apps["Photos"][0]]
    assert signed_in(alice, server)


def test_deleting_the_account_removes_the_user_and_its_sessions(server, apps):
    alice = sign_in(server, "alice")
    elsewhere = sign_in(server, "alice")
    tokens = oauth_tokens(server, alice, apps["Photos"])
    api = api_login(server)
    sub = str(User.objects.get(username="alice").public_id)

    wrong = post(alice, server, "/account/delete", {"password": "not it at all", "confirm": "on"})
    assert wrong.status_code == 200 and "That password is not right." in wrong.text
    unconfirmed = post(alice, server, "/account/delete", {"password": PASSWORD})
    assert unconfirmed.status_code == 200 and "Tick the box to confirm." in unconfirmed.text
    assert User.objects.filter(username="alice").exists()

    gone = post(alice, server, "/account/delete", {"password": PASSWORD, "confirm": "on"})
    assert gone.status_code == 303 and gone.headers["Location"] == "/account/deleted"
    assert not User.objects.filter(username="alice").exists()
    assert not Session.objects.filter(user__username="alice").exists()
    assert not Consent.objects.filter(user__username="alice").exists()
    assert not signed_in(alice, server) and not signed_in(elsewhere, server)
    assert refresh(server, apps["Photos"], tokens).status_code == 400
    assert api_refresh(server, api).status_code == 401
    assert (
        requests.post(
            server.url + "/api/v1/auth/login",
            json={"username": "alice", "password": PASSWORD},
            timeout=10,
        ).status_code
        == 401
    )
    # The audit trail keeps the history under the sub, the user reference cleared.
    deleted = AuthEvent.objects.get(event_type=EventType.ACCOUNT_DELETED)
    assert deleted.user_id is None and str(deleted.user_public_id) == sub
    assert AuthEvent.objects.filter(user_public_id=sub, event_type="login.succeeded").exists()
    assert User.objects.filter(username="bob").exists()


def test_the_security_log_shows_only_the_users_own_events(server):
    alice = sign_in(server, "alice", agent="AliceAgent/1.0")
    failed = requests.Session()
    failed.headers["User-Agent"] = "AliceAgent/2.0"
    token = csrf_token(failed, server)
    failed.post(
        server.url + "/login",
        data={"csrfmiddlewaretoken": token, "username": "alice", "password": "wrong guess"},
        timeout=10,
    )
    bob = sign_in(server, "bob", agent="BobAgent/1.0")
    bob_fail = requests.Session()
    bob_fail.headers["User-Agent"] = "BobAgent/2.0"
    token = csrf_token(bob_fail, server)
    bob_fail.post(
        server.url + "/login",
        data={"csrfmiddlewaretoken": token, "username": "bob", "password": "wrong guess"},
        timeout=10,
    )
    assert signed_in(bob, server)

    page = alice.get(server.url + "/account/activity", timeout=10).text
    assert "AliceAgent/1.0" in page and "AliceAgent/2.0" in page
    assert "Failed sign-in attempt" in page and "(wrong password)" in page
    assert "BobAgent" not in page
    assert PASSWORD not in page and "wrong guess" not in page

    # Paginated: with more events than a page holds, page 2 carries the older ones.
    alice_user = User.objects.get(username="alice")
    for n in range(25):
        audit_event_record(
            event=EventType.LOGIN_SUCCEEDED,
            user=alice_user,
            ip="192.0.2.1",
            user_agent=f"Filler/{n}",
        )
    first = alice.get(server.url + "/account/activity", timeout=10).text
    assert "Page 1 of 2" in first and "Filler/24" in first and "AliceAgent/1.0" not in first
    second = alice.get(server.url + "/account/activity?page=2", timeout=10).text
    assert "AliceAgent/1.0" in second and "BobAgent" not in second
    junk = alice.get(server.url + "/account/activity?page=x%00", timeout=10)
    assert junk.status_code == 200
