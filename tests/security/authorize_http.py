"""Browsers for the authorization endpoint over HTTP, against authserver under gunicorn on
PostgreSQL (tests/live.py). Each `Browser` is a requests.Session, so its own cookie jar: it
follows authserver's redirects, types a password into the real login form (CSRF token
included) and answers the real consent page."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests
from django.conf import settings

from authserver import settings as app_settings
from oauth.clients import client_create
from oauth.pkce import s256_challenge
from tests.conftest import PASSWORD
from tests.live import Gunicorn
from tokens.keys import active_signing_key

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the answer is read off the redirect
SCOPE = "openid profile email"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def live_server(child_env, django_settings) -> Iterator[Gunicorn]:
    """authserver under gunicorn sharing the test's database (use from a fixture)."""
    django_settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    active_signing_key()  # the first signing key exists before the server reads the key store
    with Gunicorn(child_env, workers=1) as running:
        yield running


def register_client(**options):
    """A confidential client for REDIRECT_URI; returns (client, secret)."""
    created = client_create(
        name=options.pop("name", "Security test app"),
        client_type=options.pop("client_type", "confidential"),
        grant_types=["authorization_code"],
        redirect_uris=[REDIRECT_URI],
        scopes=SCOPE.split(),
        **options,
    )
    return created.client, created.secret


def authorize_path(client_id: str, *, pkce: bool = True, **params: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": "st-" + secrets.token_urlsafe(8),
        "nonce": "n-" + secrets.token_urlsafe(8),
    }
    if pkce:
        query["code_challenge"] = s256_challenge(secrets.token_urlsafe(48))
        query["code_challenge_method"] = "S256"
    query.update(params)
    return "/oauth/authorize?" + urlencode(query)


@dataclass
class Landing:
    """Where a browser stopped: a page of authserver, or the client's redirect URI."""

    url: str
    response: requests.Response | None

    @property
    def at_client(self) -> bool:
        return self.url.startswith(REDIRECT_URI + "?")

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    @property
    def page(self) -> str:
        return self.response.text if self.response is not None else ""

    @property
    def password_asked(self) -> bool:
        return urlsplit(self.url).path == "/login" and 'name="password"' in self.page

    @property
    def reauthentication(self) -> bool:
        """The login page asking a signed-in user for the password again."""
        return self.password_asked and self.params.get("prompt") == "login"

    @property
    def consent(self) -> bool:
        return 'name="decision"' in self.page


class Browser:
    def __init__(self, server: Gunicorn):
        self.server = server
        self.http = requests.Session()

    def visit(self, path: str) -> Landing:
        """GET, following redirects until an authserver page or the client's redirect URI."""
        url = urljoin(self.server.url, path)
        for _ in range(10):
            response = self.http.get(url, allow_redirects=False, timeout=10)
            if response.status_code not in (302, 303):
                return Landing(url, response)
            url = urljoin(url, response.headers["Location"])
            if url.startswith(REDIRECT_URI):
                return Landing(url, None)
        raise AssertionError("redirect loop")

    def _post(self, path: str, fields: dict[str, str]) -> Landing:
        url = urljoin(self.server.url, path)
        response = self.http.post(url, data=fields, allow_redirects=False, timeout=10)
        if response.status_code not in (302, 303):
            return Landing(url, response)
        location = urljoin(url, response.headers["Location"])
        if location.startswith(REDIRECT_URI):
            return Landing(location, None)
        return self.visit(location)

    def sign_in(self, landing: Landing, username: str, password: str = PASSWORD) -> Landing:
        """Type the password into the login page `landing` shows; follow where it leads."""
        assert landing.password_asked, landing.page[:500]
        fields = hidden_fields(landing.page)
        fields.update(username=username, password=password)
        return self._post("/login", fields)

    def answer_consent(self, landing: Landing, decision: str = "allow") -> Landing:
        assert landing.consent, landing.page[:500]
        fields = hidden_fields(landing.page)
        fields["decision"] = decision
        return self._post("/oauth/authorize/decision", fields)

    def session_key(self) -> str:
        return self.http.cookies[settings.SESSION_COOKIE_NAME]

    def session_update(self, **values) -> None:
        """Change this browser's server-side session (the test shares the server's database)."""
        store = import_module(settings.SESSION_ENGINE).SessionStore(self.session_key())
        for key, value in values.items():
            store[key] = value
        store.save()


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def login_next(landing: Landing) -> str:
    """The URL the login page will return to (the authorization request, with its ticket)."""
    return landing.params["next"]
