"""Issue 18.3: which language a page is in, over HTTP against gunicorn.

The order (authserver/languages.py): the OpenID Connect `ui_locales` of the authorization
request the page belongs to, then the signed-in user's saved language, then Accept-Language,
then English. An unknown `ui_locales` falls back silently (OpenID Connect Core §3.1.2.1), and
the request's language holds through the login, the second step and the consent page, and
ends with the flow. Browsers are `requests` sessions (cookies, CSRF tokens read off the forms).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from accounts.models import User
from accounts.services import user_create
from authserver import settings as app_settings
from mfa import services as mfa_services
from oauth.clients import client_create
from oauth.pkce import s256_challenge
from tests.conftest import PASSWORD
from tests.live import Gunicorn

pytestmark = pytest.mark.slow

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the code is read off the redirect
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
_LANG = re.compile(r'<html lang="([^"]+)">')


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=1)
    running.env["AUTHSERVER_ISSUER"] = running.url
    with running:
        yield running


@pytest.fixture
def client_id(server) -> str:
    return client_create(
        name="Photos",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
        scopes=["openid", "profile"],
    ).client.client_id


def browser(accept_language: str) -> requests.Session:
    session = requests.Session()
    session.headers["Accept-Language"] = accept_language
    return session


def lang(response: requests.Response) -> str:
    match = _LANG.search(response.text)
    assert match, response.text[:300]
    return match.group(1)


def fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def authorize_path(client_id: str, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile",
        "state": "st",
        "code_challenge": s256_challenge("v" * 50),
        "code_challenge_method": "S256",
        **extra,
    }
    return "/oauth/authorize?" + urlencode(params)


def sign_in(server: Gunicorn, session: requests.Session, username: str = "alice") -> None:
    page = session.get(server.url + "/login", timeout=10)
    response = session.post(
        server.url + "/login",
        data={**fields(page.text), "username": username, "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:300]


def test_accept_language_chooses_the_page_language(server):
    assert lang(browser("de-DE,de;q=0.9").get(server.url + "/login", timeout=10)) == "de"
    assert lang(browser("fr-CH, fr;q=0.9, de;q=0.5").get(server.url + "/login")) == "de"
    assert lang(browser("fr, ja").get(server.url + "/login", timeout=10)) == "en"  # none served
    page = browser("de").get(server.url + "/login", timeout=10)
    assert page.headers["Content-Language"] == "de"
    assert "Accept-Language" in page.headers["Vary"]
    assert "Anmelden" in page.text


def test_ui_locales_comes_before_accept_language_and_the_saved_language(server, client_id):
    # Anonymous, German browser, the app asks for English: the login page is English.
    german_browser = browser("de")
    login = german_browser.get(server.url + authorize_path(client_id, ui_locales="en"))
    assert urlsplit(login.url).path == "/login" and lang(login) == "en"
    # Signed in, German saved on the account, the app asks for English: the consent page too.
    User.objects.filter(username="alice").update(language="de")
    sign_in(server, german_browser)
    consent = german_browser.get(server.url + authorize_path(client_id, ui_locales="en"))
    assert 'name="decision"' in consent.text and lang(consent) == "en"
    # Without ui_locales the saved language holds: German, whatever the browser says.
    english_browser = browser("en")
    sign_in(server, english_browser)
    assert lang(english_browser.get(server.url + "/account/", timeout=10)) == "de"
    consent = english_browser.get(server.url + authorize_path(client_id))
    assert lang(consent) == "de"


def test_the_saved_language_comes_before_accept_language(server):
    User.objects.filter(username="alice").update(language="en")
    session = browser("de")
    sign_in(server, session)
    assert lang(session.get(server.url + "/account/", timeout=10)) == "en"
    # Emptied on the profile page: the browser's language again.
    page = session.get(server.url + "/account/", timeout=10)
    token = fields(page.text)["csrfmiddlewaretoken"]
    saved = session.post(
        server.url + "/account/language",
        data={"csrfmiddlewaretoken": token, "language": ""},
        allow_redirects=False,
        timeout=10,
    )
    assert saved.status_code == 303
    assert User.objects.get(username="alice").language == ""
    assert lang(session.get(server.url + "/account/", timeout=10)) == "de"


def test_a_language_not_offered_is_refused_on_the_profile_page(server):
    session = browser("en")
    sign_in(server, session)
    token = fields(session.get(server.url + "/account/", timeout=10).text)["csrfmiddlewaretoken"]
    answer = session.post(
        server.url + "/account/language",
        data={"csrfmiddlewaretoken": token, "language": "xx"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303  # back to the form, nothing saved
    assert User.objects.get(username="alice").language == ""


@pytest.mark.parametrize(
    "ui_locales", ["tlh", "x-klingon zz-ZZ", "!!! <b>", "de" * 40, " ", "fr-CA " * 30]
)
def test_unknown_ui_locales_fall_back_silently(server, client_id, ui_locales):
    session = browser("de")
    answer = session.get(
        server.url + authorize_path(client_id, ui_locales=ui_locales),
        allow_redirects=False,
        timeout=10,
    )
    # No error for the client: the usual way to the login page ...
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert urlsplit(location).path == "/login" and "error=" not in location
    # ... which is in the browser's language.
    assert lang(session.get(urljoin(server.url, location), timeout=10)) == "de"


def test_discovery_lists_the_languages(server):
    document = requests.get(server.url + "/.well-known/openid-configuration", timeout=10).json()
    assert document["ui_locales_supported"] == ["en", "de"]


def test_ui_locales_holds_through_login_second_step_and_consent(server, client_id):
    alice = User.objects.get(username="alice")
    factor, secret = mfa_services.totp_enrolment_begin(user=alice)
    step = mfa_services.totp_time_step(datetime.now(tz=UTC))
    assert mfa_services.totp_enrolment_confirm(
        factor=factor, code=mfa_services.totp_code_at(secret, step - 1)
    )
    session = browser("en-US,en;q=0.9")  # an English browser; the app asks for German
    login = session.get(server.url + authorize_path(client_id, ui_locales="de-DE"), timeout=10)
    assert urlsplit(login.url).path == "/login" and lang(login) == "de"

    # A wrong password: the page that says so is German too.
    form = fields(login.text)
    wrong = session.post(
        server.url + "/login", data={**form, "username": "alice", "password": "no"}, timeout=10
    )
    assert lang(wrong) == "de" and "Mit diesem Benutzernamen und Passwort" in wrong.text

    second = session.post(
        server.url + "/login",
        data={**fields(wrong.text), "username": "alice", "password": PASSWORD},
        timeout=10,
    )
    assert urlsplit(second.url).path == "/login/mfa" and lang(second) == "de"
    assert "Bestätigung in zwei Schritten" in second.text

    code = mfa_services.totp_code_at(secret, mfa_services.totp_time_step(datetime.now(tz=UTC)))
    consent = session.post(second.url, data={**fields(second.text), "code": code}, timeout=10)
    assert 'name="decision"' in consent.text, consent.text[:500]
    assert lang(consent) == "de" and "Zugriff erlauben?" in consent.text

    decision = session.post(
        server.url + "/oauth/authorize/decision",
        data={**fields(consent.text), "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    assert decision.status_code == 302
    assert "code" in parse_qs(urlsplit(decision.headers["Location"]).query)
    # The flow is over: the account pages follow the browser again.
    assert lang(session.get(server.url + "/account/", timeout=10)) == "en"


def test_documents_the_same_in_every_language_do_not_vary_by_it(server):
    for path in ("/.well-known/openid-configuration", "/brand.css"):
        response = browser("de").get(server.url + path, timeout=10)
        assert response.status_code == 200
        assert "Accept-Language" not in response.headers.get("Vary", ""), path
        assert "Content-Language" not in response.headers, path
