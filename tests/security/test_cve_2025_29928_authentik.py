"""CVE-2025-29928 (authentik, GHSA-19xv-j9h4-x4ch): deleting a session did not invalidate it when
the session store was the database, so an ended session's tokens kept working. In authserver a
session is a refresh-token family and its id is the `sid` of every access token issued in it;
ending it (logout, DELETE /api/v1/sessions/{id}, logout-all, the admin's revoke action, OAuth
revocation, RP-initiated logout) must stop all of its tokens at once on every path authserver
serves: refresh, the first-party API, UserInfo and introspection. Over HTTP against gunicorn.

Downstream APIs that verify only the JWKS are out of reach by design (README "What revoked
means downstream"): they accept the access token until it expires.
Browser (hosted login) sessions are extended here by the lead when that model lands.
"""

from __future__ import annotations

import jwt
import pytest
import requests

from accounts.services import user_create
from tests.conftest import PASSWORD
from tests.security.battery import TIMEOUT, form_fields, register, register_resource_server, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def server(child_env, settings):
    with serve(child_env, settings) as live:
        yield live


@pytest.fixture
def inspector(server):
    return register_resource_server()


def _sid(access_token: str) -> str:
    return jwt.decode(access_token, options={"verify_signature": False})["sid"]


def _first_party_dead(server, inspector, pair: dict) -> None:
    me = server.me(pair["access_token"])
    assert me.status_code == 401 and me.json()["error"] == "invalid_token", me.text
    refreshed = server.refresh(pair["refresh_token"])
    assert refreshed.status_code == 401 and refreshed.json()["error"] == "invalid_grant"
    for kind in ("access_token", "refresh_token"):
        assert server.introspect(inspector, pair[kind]) == {"active": False}, kind


def _first_party_alive(server, inspector, pair: dict) -> None:
    assert server.me(pair["access_token"]).status_code == 200
    assert server.introspect(inspector, pair["access_token"])["active"] is True
    assert server.introspect(inspector, pair["refresh_token"])["active"] is True


def test_logout_ends_the_session_everywhere(server, inspector):
    """CVE-2025-29928: after POST /api/v1/auth/logout, that session's access token is refused by
    the first-party API and introspection, and its refresh token by refresh and introspection;
    another session of the same user is untouched."""
    ended, other = server.tokens(), server.tokens()
    _first_party_alive(server, inspector, ended)
    response = server.api(
        "POST", "/api/v1/auth/logout", json={"refresh_token": ended["refresh_token"]}
    )
    assert response.status_code == 204, response.text
    _first_party_dead(server, inspector, ended)
    _first_party_alive(server, inspector, other)


def test_deleting_a_session_ends_it_everywhere(server, inspector):
    """CVE-2025-29928 (the case of the advisory): DELETE /api/v1/sessions/{id} from another
    session stops the deleted session's tokens at once; the caller's session keeps working, and
    a session of another user cannot be deleted (404, still alive)."""
    victim, caller = server.tokens(), server.tokens()
    listed = server.api("GET", "/api/v1/sessions", token=caller["access_token"])
    assert listed.status_code == 200, listed.text
    assert _sid(victim["access_token"]) in {s["id"] for s in listed.json()}, listed.json()
    deleted = server.api(
        "DELETE", f"/api/v1/sessions/{_sid(victim['access_token'])}", token=caller["access_token"]
    )
    assert deleted.status_code == 204, deleted.text
    _first_party_dead(server, inspector, victim)
    _first_party_alive(server, inspector, caller)

    user_create(username="mallory", email="mallory@example.com", password=PASSWORD)
    mallory = server.tokens("mallory")
    refused = server.api(
        "DELETE", f"/api/v1/sessions/{_sid(caller['access_token'])}", token=mallory["access_token"]
    )
    assert refused.status_code == 404
    _first_party_alive(server, inspector, caller)


def test_logout_all_ends_every_session(server, inspector):
    """CVE-2025-29928: POST /api/v1/auth/logout-all ends every session of the user, including
    OAuth sessions: all first-party tokens and the OAuth client's tokens stop everywhere."""
    app = register()
    pairs = [server.tokens(), server.tokens()]
    oauth = server.oauth_tokens(server.browser(), app)
    response = server.api("POST", "/api/v1/auth/logout-all", token=pairs[0]["access_token"])
    assert response.status_code == 204, response.text
    for pair in pairs:
        _first_party_dead(server, inspector, pair)
    assert server.userinfo(oauth["access_token"]).status_code == 401
    assert server.oauth_refresh(app, oauth["refresh_token"]).status_code == 400
    assert server.introspect(app, oauth["access_token"]) == {"active": False}


def test_admin_revoke_action_ends_the_session_everywhere(server, inspector):
    """CVE-2025-29928 via the admin: the "Revoke selected sessions now" action, posted by a staff
    user through the real admin (login form, CSRF), ends that session on every path."""
    victim, bystander = server.tokens(), server.tokens()
    user_create(
        username="root",
        email="root@example.com",
        password=PASSWORD,
        is_staff=True,
        is_superuser=True,
    )
    admin = requests.Session()
    page = admin.get(server.url + "/admin/login/", timeout=TIMEOUT)
    fields = form_fields(page.text)
    fields.update(username="root", password=PASSWORD, next="/admin/")
    signed_in = admin.post(
        server.url + "/admin/login/", data=fields, allow_redirects=False, timeout=TIMEOUT
    )
    assert signed_in.status_code == 302, signed_in.text[:300]
    changelist = server.url + "/admin/authsessions/session/"
    page = admin.get(changelist, timeout=TIMEOUT)
    assert page.status_code == 200, page.text[:300]
    response = admin.post(
        changelist,
        data={
            "csrfmiddlewaretoken": form_fields(page.text)["csrfmiddlewaretoken"],
            "action": "revoke_sessions",
            "_selected_action": [_sid(victim["access_token"])],
            "index": "0",
        },
        headers={"Referer": changelist},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert response.status_code == 302, response.text[:500]
    _first_party_dead(server, inspector, victim)
    _first_party_alive(server, inspector, bystander)


def test_oauth_revocation_ends_the_grant_everywhere(server, inspector):
    """CVE-2025-29928 for OAuth sessions / RFC 7009 §2.1: revoking either token of an OAuth grant
    ends its session: UserInfo and introspection refuse the access token, the refresh grant
    refuses the refresh token."""
    app = register()
    browser = server.browser()
    for kind in ("access_token", "refresh_token"):
        issued = server.oauth_tokens(browser, app)
        assert server.userinfo(issued["access_token"]).status_code == 200
        revoked = server.form("/oauth/revoke", {"token": issued[kind]}, auth=app.basic())
        assert revoked.status_code == 200, revoked.text
        assert server.userinfo(issued["access_token"]).status_code == 401, kind
        for token in (issued["access_token"], issued["refresh_token"]):
            assert server.introspect(inspector, token) == {"active": False}, kind
        refreshed = server.oauth_refresh(app, issued["refresh_token"])
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


def test_rp_initiated_logout_ends_the_session_everywhere(server, inspector):
    """CVE-2025-29928 for OpenID Connect RP-Initiated Logout 1.0 §2-§3: confirming
    /oauth/end-session with the ID token as hint ends the session it names: UserInfo,
    introspection and refresh all refuse its tokens afterwards."""
    app = register(post_logout_redirect_uris=("https://app.example.com/bye",))
    browser = server.browser()
    issued = server.oauth_tokens(browser, app)
    page = browser.get(
        server.url + "/oauth/end-session",
        params={
            "id_token_hint": issued["id_token"],
            "post_logout_redirect_uri": "https://app.example.com/bye",
            "state": "s1",
        },
        timeout=TIMEOUT,
    )
    assert page.status_code == 200, page.text[:300]
    assert server.userinfo(issued["access_token"]).status_code == 200  # GET changes nothing
    confirmed = browser.post(
        server.url + "/oauth/end-session/confirm",
        data=form_fields(page.text),
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert confirmed.status_code == 302, confirmed.text[:300]
    assert confirmed.headers["Location"].startswith("https://app.example.com/bye")
    assert server.userinfo(issued["access_token"]).status_code == 401
    for token in (issued["access_token"], issued["refresh_token"]):
        assert server.introspect(inspector, token) == {"active": False}
    assert server.oauth_refresh(app, issued["refresh_token"]).status_code == 400
