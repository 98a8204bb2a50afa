from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client as BrowserClient

from oauth.clients import client_cache_clear_local, client_create
from oauth.models import Client
from oauth.pkce import s256_challenge

REDIRECT_URI = "https://app.example.com/callback"
LOGOUT_URI = "https://app.example.com/signed-out"


@dataclass
class Registered:
    client: Client
    secret: str | None

    @property
    def client_id(self) -> str:
        return self.client.client_id

    def basic(self) -> str:
        raw = f"{self.client.client_id}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture(autouse=True)
def _fresh_client_cache():
    """Each test starts without this process's copies of client records."""
    client_cache_clear_local()
    yield
    client_cache_clear_local()


@pytest.fixture
def make_client(db):
    def make(
        *,
        client_type: str = "confidential",
        grants=("authorization_code", "refresh_token"),
        scopes=("openid", "profile", "email", "offline_access"),
        redirect_uris=(REDIRECT_URI,),
        post_logout_redirect_uris=(LOGOUT_URI,),
        **extra,
    ) -> Registered:
        created = client_create(
            name=extra.pop("name", "Test App"),
            client_type=client_type,
            grant_types=grants,
            redirect_uris=redirect_uris,
            scopes=scopes,
            post_logout_redirect_uris=post_logout_redirect_uris,
            **extra,
        )
        return Registered(created.client, created.secret)

    return make


@pytest.fixture
def confidential(make_client) -> Registered:
    return make_client()


@pytest.fixture
def public(make_client) -> Registered:
    return make_client(client_type="public", name="Public App")


@pytest.fixture
def machine(make_client) -> Registered:
    return make_client(
        grants=("client_credentials",),
        scopes=("orders:read", "orders:write"),
        redirect_uris=(),
        post_logout_redirect_uris=(),
        name="Machine",
        audiences=("https://orders.example.com",),
    )


@pytest.fixture
def alice(make_user):
    return make_user("alice", first_name="Alice", last_name="Liddell")


def sign_in(browser: BrowserClient, user, *, at: int | None = None) -> None:
    """What the hosted login page leaves behind: a Django session and the sign-in time."""
    browser.force_login(user)
    session = browser.session
    session["auth_time"] = int(time.time()) if at is None else at
    session["sign_in_id"] = secrets.token_urlsafe(16)
    session.save()


@pytest.fixture
def browser(alice) -> BrowserClient:
    client = BrowserClient()
    sign_in(client, alice)
    return client


@dataclass
class Pkce:
    verifier: str
    challenge: str


def pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    return Pkce(verifier, s256_challenge(verifier))


def authorize_params(registered: Registered, **overrides) -> dict:
    """A valid request; PKCE (which every client needs by default) with a challenge whose
    verifier is thrown away: pass code_challenge=None to leave it out."""
    params = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email offline_access",
        "state": "st-" + secrets.token_urlsafe(8),
        "nonce": "n-" + secrets.token_urlsafe(8),
        "code_challenge": pkce().challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    if overrides.get("code_challenge", "") is None and "code_challenge_method" not in overrides:
        params.pop("code_challenge_method")
    return {k: v for k, v in params.items() if v is not None}


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def approve(browser: BrowserClient, params: dict):
    """GET /oauth/authorize, then Allow on the consent page if it is shown."""
    response = browser.get("/oauth/authorize", params)
    if response.status_code == 200 and b'name="decision"' in response.content:
        fields = dict(params)
        fields["decision"] = "allow"
        response = browser.post("/oauth/authorize/decision", fields)
    return response


def code_for(browser: BrowserClient, registered: Registered, verifier: Pkce | None = None, **kw):
    verifier = verifier or pkce()
    params = authorize_params(
        registered, code_challenge=verifier.challenge, code_challenge_method="S256", **kw
    )
    response = approve(browser, params)
    assert response.status_code == 302, response.content[:500]
    values = query(response["Location"])
    assert values["state"] == params["state"]
    return values["code"], verifier, params


FORM = "application/x-www-form-urlencoded"


def form_post(http, path: str, data: dict, auth: str | None = None, **headers):
    from urllib.parse import urlencode

    if auth:
        headers["HTTP_AUTHORIZATION"] = auth
    return http.post(path, urlencode(data), content_type=FORM, **headers)
