"""The hosted pages as a newcomer meets them (issue 18.6), against authserver under gunicorn:
the login page names the app of an OAuth flow; `/` and the post-login page do not speak of "the
application that sent you here" when none did; the sign-out page's "Stay signed in" keeps the
authserver sign-in and goes back to the app (which already signed the user out), ending the
app's own session as it asked."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from accounts.services import user_create
from authserver import settings as app_settings
from oauth.clients import client_create
from tests.conftest import PASSWORD
from tests.flows.test_oauth_interop import REDIRECT_URI, browser_authorize, discover
from tests.live import Gunicorn

pytestmark = pytest.mark.slow

SIGNED_OUT_URI = "http://127.0.0.1:9/signed-out"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
NOBODY_SENT_YOU = ("the application that sent you here", "application you were using")


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=1)
    running.env["AUTHSERVER_ISSUER"] = running.url
    with running:
        yield running


def _fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def _client(**extra):
    return client_create(
        name="Ledger & Co",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[SIGNED_OUT_URI],
        scopes=["openid", "offline_access"],
        skip_consent=True,
        **extra,
    )


def test_the_login_page_names_the_app_and_no_page_invents_one(server):
    meta = discover(server)
    registered = _client()
    session = OAuth2Session(
        registered.client.client_id,
        registered.secret,
        scope="openid",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    url, _ = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=secrets.token_urlsafe(48)
    )
    browser = requests.Session()
    to_login = browser.get(url, allow_redirects=False, timeout=10)
    login = browser.get(urljoin(url, to_login.headers["Location"]), timeout=10)
    assert login.status_code == 200
    assert "Sign in to continue to <strong>Ledger &amp; Co</strong>." in login.text

    # Signing in without an app: the login page, then the landing page, name none.
    plain = requests.Session()
    page = plain.get(server.url + "/login", timeout=10)
    assert "Use your authserver account." in page.text
    fields = _fields(page.text) | {"username": "alice", "password": PASSWORD}
    landed = plain.post(server.url + "/login", data=fields, timeout=10)
    assert landed.status_code == 200 and "signed in" in landed.text
    home = plain.get(server.url + "/", timeout=10)
    for text in (page.text, landed.text, home.text):
        lowered = text.lower()
        assert not any(phrase in lowered for phrase in NOBODY_SENT_YOU), text[:2000]


def _signed_in_app(server: Gunicorn, meta: dict, registered) -> tuple[requests.Session, dict]:
    session = OAuth2Session(
        registered.client.client_id,
        registered.secret,
        scope="openid offline_access",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier
    )
    browser = requests.Session()
    callback = browser_authorize(server, browser, url)
    token = session.fetch_token(
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    return browser, token


def _refresh_status(meta: dict, registered, refresh_token: str) -> int:
    response = requests.post(
        meta["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(registered.client.client_id, registered.secret),
        timeout=10,
    )
    return response.status_code


def test_stay_signed_in_goes_back_to_the_app_and_keeps_the_authserver_sign_in(server):
    meta = discover(server)
    registered = _client()
    browser, token = _signed_in_app(server, meta, registered)

    # The app signed the user out and sends the browser to end-session.
    params = {
        "id_token_hint": token["id_token"],
        "post_logout_redirect_uri": SIGNED_OUT_URI,
        "state": "bye-1",
    }
    page = browser.get(meta["end_session_endpoint"], params=params, timeout=10)
    assert page.status_code == 200
    assert 'name="decision" value="stay"' in page.text and "Ledger &amp; Co" in page.text
    fields = _fields(page.text) | {"decision": "stay"}
    stayed = browser.post(
        server.url + "/oauth/end-session/confirm", data=fields, allow_redirects=False, timeout=10
    )
    assert stayed.status_code == 302
    location = urlsplit(stayed.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == SIGNED_OUT_URI
    assert parse_qs(location.query) == {"state": ["bye-1"]}

    # Still signed in to authserver; the app's own session ended, as it asked.
    home = browser.get(server.url + "/", allow_redirects=False, timeout=10)
    assert home.status_code == 200 and "alice" in home.text
    assert _refresh_status(meta, registered, token["refresh_token"]) == 400

    # Without a post-logout URI, "Stay signed in" lands on the signed-in page.
    browser, token = _signed_in_app(server, meta, registered)
    page = browser.get(
        meta["end_session_endpoint"], params={"id_token_hint": token["id_token"]}, timeout=10
    )
    fields = _fields(page.text) | {"decision": "stay"}
    stayed = browser.post(server.url + "/oauth/end-session/confirm", data=fields, timeout=10)
    assert stayed.status_code == 200 and stayed.url == server.url + "/"

    # "Sign out" still signs the browser out.
    page = browser.get(
        meta["end_session_endpoint"], params={"id_token_hint": token["id_token"]}, timeout=10
    )
    fields = _fields(page.text) | {"decision": "sign_out"}
    browser.post(server.url + "/oauth/end-session/confirm", data=fields, timeout=10)
    assert browser.get(server.url + "/", allow_redirects=False, timeout=10).status_code == 302
    assert "Traceback" not in server.output()
