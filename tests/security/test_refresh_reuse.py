"""Issue 13.10 (reuse detection dodged with a slow body), over HTTP against authserver under
gunicorn on PostgreSQL.

A refresh token travels in the request body. gunicorn calls the application as soon as the
headers are in, so a stamp taken on arrival (a middleware) dates the presentation before the
body, and the token in it, were sent: a thief could open a request, wait for the rightful client
to spend the token, then send it and pass as a lost race instead of a replay. And every refused
refresh must say the same thing, so a thief cannot tell an unknown token from a spent, revoked,
raced or another client's one.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

import pytest

from accounts.services import user_create
from audit.models import AuthEvent
from authserver import settings as app_settings
from oauth.clients import client_create
from sessions.models import Session
from tests.conftest import PASSWORD
from tests.live import json_posts_at_once, json_response
from tests.security.live_oauth import (
    basic,
    first_party_login,
    first_party_refresh,
    refresh,
    revoke,
    start_server,
    user_tokens,
)

pytestmark = pytest.mark.slow

REFUSED = {
    "error": "invalid_grant",
    "error_description": "The refresh token is invalid or expired.",
}
SLOW_BODY_DELAY = 1.5


@pytest.fixture
def server(child_env, settings):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    with start_server(child_env, settings) as running:
        yield running


def web_app(name: str = "Web App") -> tuple[str, str]:
    created = client_create(
        name=name,
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["http://127.0.0.1:9/callback"],
        scopes=["openid", "offline_access"],
    )
    return created.client.client_id, created.secret


def slow_post(
    url: str,
    body: bytes,
    content_type: str,
    *,
    meanwhile: Callable[[], None],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict]:
    """POST with the headers sent at once and the body SLOW_BODY_DELAY seconds later; run
    `meanwhile` (the rightful client spending the token) in between."""
    parts = urlsplit(url)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    ).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(head)
    started = time.monotonic()
    time.sleep(0.2)  # the server has the headers and is waiting for the body
    meanwhile()
    time.sleep(max(0.0, SLOW_BODY_DELAY - (time.monotonic() - started)))
    sock.sendall(body)
    return json_response(sock)


def test_spent_token_in_a_slow_body_is_reuse_at_the_first_party_api(server):
    """Issue 13.10: a request whose headers arrived before the token was spent, and whose body
    (with the token) arrived after, is a replay: reuse detected, the session revoked, the
    rightful client's new token dead too."""
    first = first_party_login(server)
    spent_by_owner: list = []

    def owner_refreshes() -> None:
        response = first_party_refresh(server, first["refresh_token"])
        assert response.status_code == 200, response.text
        spent_by_owner.append(response.json())

    status, body = slow_post(
        server.url + "/api/v1/auth/refresh",
        json.dumps({"refresh_token": first["refresh_token"]}).encode(),
        "application/json",
        meanwhile=owner_refreshes,
    )
    assert (status, body) == (401, REFUSED)
    session = Session.objects.get()
    assert session.revoke_reason == "reuse_detected"
    assert AuthEvent.objects.filter(event_type="token.reuse_detected").count() == 1
    successor = first_party_refresh(server, spent_by_owner[0]["refresh_token"])
    assert successor.status_code == 401


def test_spent_token_in_a_slow_body_is_reuse_at_the_token_endpoint(server):
    """Issue 13.10: the same at POST /oauth/token (grant_type=refresh_token)."""
    client_id, secret = web_app()
    tokens = user_tokens(server, client_id, secret, scope="openid offline_access")
    spent_by_owner: list = []

    def owner_refreshes() -> None:
        response = refresh(server, client_id, secret, tokens["refresh_token"])
        assert response.status_code == 200, response.text
        spent_by_owner.append(response.json())

    status, body = slow_post(
        server.url + "/oauth/token",
        urlencode(
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        ).encode(),
        "application/x-www-form-urlencoded",
        meanwhile=owner_refreshes,
        headers={"Authorization": basic(client_id, secret)},
    )
    assert (status, body) == (400, REFUSED)
    session = Session.objects.get(client_id=client_id)
    assert session.revoke_reason == "reuse_detected"
    again = refresh(server, client_id, secret, spent_by_owner[0]["refresh_token"])
    assert (again.status_code, again.json()) == (400, REFUSED)


def test_every_refused_refresh_says_the_same_at_the_first_party_api(server):
    """Issue 13.10: unknown, malformed, spent (reuse), lost race (concurrent use), ended
    session and another client's token all get the same error and description."""
    client_id, secret = web_app()
    oauth_refresh = user_tokens(server, client_id, secret, scope="openid offline_access")[
        "refresh_token"
    ]
    answers = []

    def refused(value: str) -> None:
        response = first_party_refresh(server, value)
        answers.append((response.status_code, response.json()))

    refused(secrets.token_urlsafe(32))  # unknown
    refused("not-a-token")  # malformed
    refused(oauth_refresh)  # another client's
    pair = first_party_login(server)
    assert first_party_refresh(server, pair["refresh_token"]).status_code == 200
    refused(pair["refresh_token"])  # spent: reuse
    refused(pair["refresh_token"])  # its session is revoked now
    racing = first_party_login(server)
    results = json_posts_at_once(
        server.url + "/api/v1/auth/refresh", {"refresh_token": racing["refresh_token"]}, 8
    )
    assert [status for status, _ in results].count(200) == 1, results
    answers += [result for result in results if result[0] != 200]
    assert {json.dumps(a, sort_keys=True) for a in answers} == {
        json.dumps((401, REFUSED), sort_keys=True)
    }, answers


def test_every_refused_refresh_says_the_same_at_the_token_endpoint(server):
    """Issue 13.10: at POST /oauth/token, authlib's own refusals (unknown token, another
    client's) and the session engine's (malformed, spent, revoked) are one invalid_grant with
    one description."""
    client_id, secret = web_app()
    other_id, other_secret = web_app("Other")
    answers = []

    def refused(value: str, as_client: tuple[str, str] = (client_id, secret)) -> None:
        response = refresh(server, *as_client, value)
        answers.append((response.status_code, response.json()))

    refused(secrets.token_urlsafe(32))  # unknown
    refused("not-a-token")  # malformed
    refused(first_party_login(server)["refresh_token"])  # the first-party client's
    tokens = user_tokens(server, client_id, secret, scope="openid offline_access")
    refused(tokens["refresh_token"], (other_id, other_secret))  # another client's
    assert refresh(server, client_id, secret, tokens["refresh_token"]).status_code == 200
    refused(tokens["refresh_token"])  # spent: reuse
    fresh = user_tokens(server, client_id, secret, scope="openid offline_access")
    revoke(server, (client_id, secret), fresh["refresh_token"])
    refused(fresh["refresh_token"])  # revoked
    assert answers == [(400, REFUSED)] * len(answers), answers
