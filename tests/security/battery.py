"""Shared steps of the security battery: authserver under gunicorn on PostgreSQL, driven the way an
attacker or a client would drive it, over HTTP only.

A module makes its `server` fixture with `serve(child_env, settings)`; the steps below take the
returned `Live` and talk to it with `requests`. Clients and users are created in the test process
(their rows are committed: `child_env` runs with transactional_db) and read by the child.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import requests

from accounts.models import User
from accounts.services import user_create
from authserver import settings as app_settings
from oauth.clients import client_create
from tests.conftest import PASSWORD
from tests.live import Gunicorn

REDIRECT_URI = "https://app.example.com/callback"  # never contacted: codes are read off Location
SCOPE = "openid profile email offline_access"
TIMEOUT = 15
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@dataclass
class Live:
    server: Gunicorn

    @property
    def url(self) -> str:
        return self.server.url

    # First-party JSON API ------------------------------------------------------------------
    def api(self, method: str, path: str, *, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(
            method, self.url + path, headers=headers, timeout=TIMEOUT, allow_redirects=False, **kw
        )

    def login(self, username: str = "alice", password: str = PASSWORD, **kw) -> requests.Response:
        return self.api(
            "POST", "/api/v1/auth/login", json={"username": username, "password": password}, **kw
        )

    def tokens(self, username: str = "alice") -> dict[str, Any]:
        response = self.login(username)
        assert response.status_code == 200, response.text
        return response.json()

    def me(self, token: str) -> requests.Response:
        return self.api("GET", "/api/v1/me", token=token)

    def refresh(self, refresh_token: str) -> requests.Response:
        return self.api("POST", "/api/v1/auth/refresh", json={"refresh_token": refresh_token})

    # OAuth back channel -----------------------------------------------------------------------
    def form(
        self, path: str, data: dict[str, str], *, auth: str | None = None, **headers: str
    ) -> requests.Response:
        if auth:
            headers["Authorization"] = auth
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return requests.post(
            self.url + path, data=urlencode(data), headers=headers, timeout=TIMEOUT
        )

    def userinfo(self, token: str) -> requests.Response:
        return self.api("GET", "/oauth/userinfo", token=token)

    def introspect(self, client: OAuthClient, token: str) -> dict[str, Any]:
        response = self.form("/oauth/introspect", {"token": token}, auth=client.basic())
        assert response.status_code == 200, response.text
        return response.json()

    # Browser ------------------------------------------------------------------------------
    def browser(self, username: str = "alice", password: str = PASSWORD) -> requests.Session:
        """A requests session signed in on the hosted login page (its real form and CSRF)."""
        session = requests.Session()
        page = session.get(self.url + "/login", timeout=TIMEOUT)
        assert page.status_code == 200, page.text[:300]
        fields = form_fields(page.text)
        fields.update(username=username, password=password)
        response = session.post(
            self.url + "/login", data=fields, allow_redirects=False, timeout=TIMEOUT
        )
        assert response.status_code in (302, 303), response.text[:300]
        return session

    def authorize(self, browser: requests.Session, params: dict[str, str]) -> requests.Response:
        """GET /oauth/authorize, approving the consent page if one is shown; the first answer
        that is not the consent page (a redirect, an error page)."""
        response = browser.get(
            self.url + "/oauth/authorize", params=params, allow_redirects=False, timeout=TIMEOUT
        )
        if response.status_code == 200 and 'name="decision"' in response.text:
            fields = form_fields(response.text)
            fields["decision"] = "allow"
            response = browser.post(
                self.url + "/oauth/authorize/decision",
                data=fields,
                allow_redirects=False,
                timeout=TIMEOUT,
            )
        return response

    def code(
        self, browser: requests.Session, client: OAuthClient, **overrides: str | None
    ) -> tuple[str, Pkce]:
        verifier = pkce()
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": "st-" + secrets.token_urlsafe(8),
            "nonce": "n-" + secrets.token_urlsafe(8),
            "code_challenge": verifier.challenge,
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        params = {k: v for k, v in params.items() if v is not None}
        response = self.authorize(browser, params)
        assert response.status_code == 302, response.text[:500]
        location = urljoin(self.url, response.headers["Location"])
        assert location.startswith(REDIRECT_URI), location
        values = query(location)
        assert values.get("state") == params["state"], values
        return values["code"], verifier

    def code_exchange(
        self, client: OAuthClient, code: str, verifier: str | None, **extra: str
    ) -> requests.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        if verifier is not None:
            data["code_verifier"] = verifier
        data.update(extra)
        auth = None
        if client.secret is None:
            data["client_id"] = client.client_id
        else:
            auth = client.basic()
        return self.form("/oauth/token", data, auth=auth)

    def oauth_tokens(
        self, browser: requests.Session, client: OAuthClient, **overrides: str | None
    ) -> dict[str, Any]:
        code, verifier = self.code(browser, client, **overrides)
        response = self.code_exchange(client, code, verifier.verifier)
        assert response.status_code == 200, response.text
        return response.json()

    def oauth_refresh(self, client: OAuthClient, refresh_token: str) -> requests.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if client.secret is None:
            data["client_id"] = client.client_id
            return self.form("/oauth/token", data)
        return self.form("/oauth/token", data, auth=client.basic())


@dataclass
class OAuthClient:
    client_id: str
    secret: str | None

    def basic(self) -> str:
        raw = f"{self.client_id}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass
class Pkce:
    verifier: str
    challenge: str


def pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def form_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def register(
    *,
    client_type: str = "confidential",
    grants: tuple[str, ...] = ("authorization_code", "refresh_token"),
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,),
    scopes: tuple[str, ...] = tuple(SCOPE.split()),
    name: str = "Battery app",
    **extra: Any,
) -> OAuthClient:
    """A client registered through the same service as the admin and create_client."""
    extra.setdefault("skip_consent", True)
    created = client_create(
        name=name,
        client_type=client_type,
        grant_types=grants,
        redirect_uris=redirect_uris,
        scopes=scopes,
        **extra,
    )
    return OAuthClient(created.client.client_id, created.secret)


def register_resource_server() -> OAuthClient:
    """A resource server: a confidential client that may introspect any client's tokens."""
    return register(
        name="Resource server",
        grants=("client_credentials",),
        scopes=("api",),
        redirect_uris=(),
        is_resource_server=True,
    )


def make_person(username: str = "alice", **extra: Any) -> User:
    return user_create(
        username=username, email=f"{username}@example.com", password=PASSWORD, **extra
    )


@contextmanager
def serve(child_env: dict[str, str], settings, workers: int = 1, **env: str) -> Iterator[Live]:
    """authserver under gunicorn (production config file, `workers` processes) sharing this
    test's database, with `alice` registered. Extra keyword arguments become environment
    variables of the child."""
    # The child runs the production hasher list; hash the password with it.
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    make_person("alice")
    running = Gunicorn({**child_env, **env}, workers=workers)
    with running:
        yield Live(running)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: Any = None, alg: str = "RS256"):
    """A JWS with exactly this header (PyJWT adds only alg and typ when missing)."""
    if alg == "none":
        import json

        return b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode()) + "."
    return jwt.encode(claims, key, algorithm=alg, headers=header)


def claims_for(user: User, *, audience: str, issuer: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": str(user.public_id),
        "aud": audience,
        "exp": now + 300,
        "iat": now,
        "jti": secrets.token_hex(16),
        "client_id": "authserver",  # the first-party API takes first-party tokens only
        "scope": "openid profile email",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}
