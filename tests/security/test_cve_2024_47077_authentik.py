"""CVE-2024-47077 (authentik, GHSA-8gfv-rfc6-9mwm): the introspection endpoint answered for tokens
issued to any client, so one client could read (and validate) another client's tokens. authserver
shows a client only its own tokens unless an admin marked it a resource server (RFC 7662 §2.1
and §4: the endpoint MUST be protected and SHOULD limit what a caller learns). Over HTTP against
gunicorn. Revocation (RFC 7009 §2.1: the server checks the token was issued to the caller) is
checked alongside, since the same lookup serves both.
"""

from __future__ import annotations

import pytest

from tests.security.battery import register, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def server(child_env, settings):
    with serve(child_env, settings) as live:
        yield live


@pytest.fixture
def scene(server):
    """Client A holds alice's tokens; B is another confidential client of the same server."""
    a = register(name="A")
    b = register(name="B")
    issued = server.oauth_tokens(server.browser(), a)
    return server, a, b, issued


def test_another_client_learns_nothing_about_my_tokens(scene):
    """CVE-2024-47077 / RFC 7662 §2.2 and §4: client B introspecting client A's access or refresh
    token gets exactly `{"active": false}`, the same as for a made-up token; A gets the claims."""
    server, a, b, issued = scene
    for kind in ("access_token", "refresh_token"):
        mine = server.introspect(a, issued[kind])
        assert mine["active"] is True and mine["client_id"] == a.client_id, kind
        assert server.introspect(b, issued[kind]) == {"active": False}, kind
        # With a type hint, and through client_secret_post instead of Basic.
        hinted = server.form(
            "/oauth/introspect",
            {
                "token": issued[kind],
                "token_type_hint": kind,
                "client_id": b.client_id,
                "client_secret": b.secret,
            },
        )
        assert hinted.status_code == 200 and hinted.json() == {"active": False}, kind
    assert server.introspect(b, "made-up-" + "x" * 40) == {"active": False}


def test_introspection_needs_an_authenticated_confidential_client(scene):
    """RFC 7662 §2.1 (the endpoint MUST require authorization): no credentials, a wrong secret,
    A's client_id with B's secret, and a public client are all invalid_client (401), and the
    body says nothing about the token."""
    server, a, b, issued = scene
    public = register(client_type="public", name="Public")
    token = issued["access_token"]
    attempts = {
        "anonymous": ({"token": token}, None),
        "wrong secret": ({"token": token}, _basic(a.client_id, "wrong")),
        "mixed credentials": ({"token": token}, _basic(a.client_id, b.secret)),
        "public client": ({"token": token, "client_id": public.client_id}, None),
        "unknown client": ({"token": token}, _basic("nobody", "secret")),
    }
    for what, (data, auth) in attempts.items():
        response = server.form("/oauth/introspect", data, auth=auth)
        assert response.status_code == 401, (what, response.status_code, response.text)
        body = response.json()
        assert body["error"] == "invalid_client", (what, body)
        assert "active" not in body and "sub" not in body, what


def test_only_a_resource_server_sees_other_clients_tokens(scene):
    """The one exception to CVE-2024-47077's rule, by explicit registration: a client an admin
    marked as resource server introspects any client's token (that is its job, RFC 7662 §1)."""
    server, a, b, issued = scene
    api = register(
        name="Orders API",
        grants=("client_credentials",),
        scopes=("api",),
        redirect_uris=(),
        is_resource_server=True,
    )
    seen = server.introspect(api, issued["access_token"])
    assert seen["active"] is True and seen["client_id"] == a.client_id
    assert server.introspect(b, issued["access_token"]) == {"active": False}


def test_another_client_cannot_revoke_my_tokens(scene):
    """RFC 7009 §2.1 (the server verifies the token was issued to the requesting client) and
    §2.2: B's revocation of A's refresh token answers 200 (reveals nothing) and changes nothing:
    A can still refresh."""
    server, a, b, issued = scene
    for kind in ("refresh_token", "access_token"):
        response = server.form("/oauth/revoke", {"token": issued[kind]}, auth=b.basic())
        assert response.status_code == 200, response.text
    assert server.introspect(a, issued["access_token"])["active"] is True
    refreshed = server.oauth_refresh(a, issued["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text


def _basic(client_id: str, secret: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
