"""Steps the security tests share: authserver under gunicorn on PostgreSQL, and a client and a
person using it over HTTP (the hosted login page and consent page, the token endpoint)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import requests

from tests.conftest import PASSWORD
from tests.live import Gunicorn

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the code is read off the redirect
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def start_server(child_env: dict, settings) -> Gunicorn:
    """A gunicorn sharing this test's database and its cache namespace: a client changed by a
    service or the admin in the test process reaches the workers as it would another instance's
    (the shared cache generation), within about a second. Issuer = the server's address."""
    env = dict(child_env)
    env["AUTHSERVER_CACHE_KEY_PREFIX"] = settings.CACHES["default"]["KEY_PREFIX"]
    server = Gunicorn(env, workers=2)
    server.env["AUTHSERVER_ISSUER"] = server.url
    return server


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _authorize(server: Gunicorn, browser: requests.Session, url: str, username: str) -> str:
    """Follow an authorization URL as a person: sign in, approve; return the callback URL."""
    for _ in range(10):
        response = browser.get(url, allow_redirects=False, timeout=10)
        if response.status_code in (302, 303):
            url = urljoin(url, response.headers["Location"])
            if url.startswith(REDIRECT_URI):
                return url
            continue
        assert response.status_code == 200, response.text[:500]
        page = response.text
        fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}
        if 'name="password"' in page:
            fields.update(username=username, password=PASSWORD)
            target = server.url + "/login"
        else:
            assert 'name="decision"' in page, page[:500]
            fields["decision"] = "allow"
            target = server.url + "/oauth/authorize/decision"
        response = browser.post(target, data=fields, allow_redirects=False, timeout=10)
        assert response.status_code in (302, 303), response.text[:500]
        url = urljoin(target, response.headers["Location"])
        if url.startswith(REDIRECT_URI):
            return url
    raise AssertionError("the authorization did not come back to the client")


def user_tokens(
    server: Gunicorn,
    client_id: str,
    secret: str,
    *,
    username: str = "alice",
    scope: str = "openid profile email offline_access",
    browser: requests.Session | None = None,
) -> dict:
    """Authorization code + PKCE S256 through the hosted pages, then the token endpoint."""
    browser = browser or requests.Session()
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    callback = _authorize(
        server, browser, f"{server.url}/oauth/authorize?{urlencode(params)}", username
    )
    code = parse_qs(urlsplit(callback).query)["code"][0]
    response = token_request(
        server,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        basic(client_id, secret),
    )
    assert response.status_code == 200, response.text
    return response.json()


def pkce_pair() -> tuple[str, str]:
    """A PKCE code_verifier and its S256 code_challenge (RFC 7636 §4.1, §4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(
    server: Gunicorn, client_id: str, challenge: str, *, redirect_uri: str = REDIRECT_URI, **extra
) -> str:
    """An OpenID Connect authorization request (code, PKCE S256, scope "openid profile",
    state s1, nonce n1); `extra` adds or replaces parameters."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid profile",
        "state": "s1",
        "nonce": "n1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return server.url + "/oauth/authorize?" + urlencode(params)


def code_exchange(
    server: Gunicorn,
    client: tuple[str, str],
    code: str,
    verifier: str,
    *,
    redirect_uri: str = REDIRECT_URI,
) -> tuple[dict, dict]:
    """Redeem an authorization code (client_secret_basic): the token response, and the claims of
    its ID token, whose signature, issuer and audience PyJWT checks against the published JWKS."""
    client_id, secret = client
    response = requests.post(
        server.url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        auth=(client_id, secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    token = tokens["id_token"]
    key = jwt.PyJWKClient(server.url + "/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, key.key, algorithms=["RS256", "ES256"], audience=client_id, issuer=server.url
    )
    return tokens, claims


def token_request(server: Gunicorn, data: dict, auth: str | None = None) -> requests.Response:
    headers = {"Authorization": auth} if auth else {}
    return requests.post(server.url + "/oauth/token", data=data, headers=headers, timeout=10)


def machine_token(server: Gunicorn, client_id: str, secret: str) -> str:
    response = token_request(server, {"grant_type": "client_credentials"}, basic(client_id, secret))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def refresh(server: Gunicorn, client_id: str, secret: str, value: str) -> requests.Response:
    return token_request(
        server, {"grant_type": "refresh_token", "refresh_token": value}, basic(client_id, secret)
    )


def introspect(server: Gunicorn, resource_server: tuple[str, str], token: str) -> dict:
    response = requests.post(
        server.url + "/oauth/introspect",
        data={"token": token},
        headers={"Authorization": basic(*resource_server)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def revoke(server: Gunicorn, client: tuple[str, str], token: str, hint: str = "") -> None:
    data = {"token": token, **({"token_type_hint": hint} if hint else {})}
    response = requests.post(
        server.url + "/oauth/revoke",
        data=data,
        headers={"Authorization": basic(*client)},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def bearer_get(server: Gunicorn, path: str, token: str) -> requests.Response:
    return requests.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def bearer_post(server: Gunicorn, path: str, token: str) -> requests.Response:
    return requests.post(
        server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def first_party_login(server: Gunicorn, username: str = "alice") -> dict:
    response = requests.post(
        server.url + "/api/v1/auth/login",
        json={"username": username, "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def first_party_refresh(server: Gunicorn, value: str) -> requests.Response:
    return requests.post(
        server.url + "/api/v1/auth/refresh", json={"refresh_token": value}, timeout=10
    )


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Whether `check` holds within `seconds`: a client change reaches every worker's cached
    copy within about a second (oauth/clients.py GENERATION_CHECK_SECONDS)."""
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
