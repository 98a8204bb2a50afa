"""Keycloak #49213: the issue itself could not be found in the searchable corpus (searched by
number and by topic on 2026-12-04). The Keycloak issues nearest to it, all about one class of
bug, are what this module checks:

- #49113 (CVE-2026-37979): the introspection endpoint did not enforce the token's audience, so
  any confidential client could read the claims of tokens meant for another resource server;
- #49794: the audience check compared the token's own `azp` instead of the client that
  authenticated to the endpoint (a value from the token decided who may read the token);
- #51284 (CVE-2026-18208): out-of-audience answers were marked inactive but still carried a
  signed JWT of the token's claims when a JWT response was requested.

If #49213 turns out to be about something else, this module still stands for that class.

authserver's rule (oauth/endpoints/introspect.py, RFC 7662 §2.2 and §4) is stricter than an
audience check: a client learns only about tokens issued to itself, decided by the client that
authenticated to the endpoint; a client an admin marked *resource server* learns about every
token (by design: it is trusted with all tokens, whatever their `aud`; README "Revocation,
introspection"). Over HTTP against gunicorn.
"""

from __future__ import annotations

import base64

import pytest

from tests.security.battery import register, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def server(child_env, settings):
    with serve(child_env, settings) as live:
        yield live


def test_being_in_the_audience_does_not_let_a_client_read_the_token(server):
    """Keycloak #49113 class: client A's access token whose `aud` names client B's API is still
    not B's to introspect: B (not a resource server) gets exactly `{"active": false}`."""
    b = register(name="B")
    a = register(name="A", audiences=("https://b.example", b.client_id))
    issued = server.oauth_tokens(server.browser(), a)
    assert server.introspect(a, issued["access_token"])["aud"] in (
        ["https://b.example", b.client_id],
        [b.client_id, "https://b.example"],
    )
    assert server.introspect(b, issued["access_token"]) == {"active": False}


def test_the_authenticated_client_decides_not_the_token_or_the_body(server):
    """Keycloak #49794 class: who may read a token is decided by the client that authenticated,
    never by a value the caller or the token supplies: B's credentials with `client_id=A` in
    the body are refused (401 invalid_client); A's client_id with B's secret is refused."""
    a = register(name="A")
    b = register(name="B")
    issued = server.oauth_tokens(server.browser(), a)
    token = issued["access_token"]
    mixed = server.form(
        "/oauth/introspect", {"token": token, "client_id": a.client_id}, auth=b.basic()
    )
    assert mixed.status_code == 401 and mixed.json()["error"] == "invalid_client", mixed.text
    swapped = server.form(
        "/oauth/introspect",
        {"token": token, "client_id": a.client_id, "client_secret": b.secret},
    )
    assert swapped.status_code == 401 and swapped.json()["error"] == "invalid_client"
    basic = "Basic " + base64.b64encode(f"{a.client_id}:{b.secret}".encode()).decode()
    assert server.form("/oauth/introspect", {"token": token}, auth=basic).status_code == 401


def test_an_inactive_answer_carries_nothing_whatever_is_asked(server):
    """Keycloak #51284 class / RFC 7662 §2.2: for a token the caller may not see, the answer is
    exactly `{"active": false}` as JSON, also when the caller asks for a JWT response
    (RFC 9701 media type), sends a type hint, or asks for the refresh token."""
    a = register(name="A")
    b = register(name="B")
    issued = server.oauth_tokens(server.browser(), a)
    for kind in ("access_token", "refresh_token"):
        for accept in ("application/token-introspection+jwt", "application/jwt", "*/*"):
            response = server.form(
                "/oauth/introspect",
                {"token": issued[kind], "token_type_hint": kind},
                auth=b.basic(),
                Accept=accept,
            )
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"].startswith("application/json")
            assert response.json() == {"active": False}, (kind, accept)
            assert "eyJ" not in response.text  # no JWT of any kind in the body


def test_a_resource_server_reads_any_token_by_registration_only(server):
    """The deliberate exception: only a client registered as resource server reads tokens of
    other clients; registering an audience for one's own tokens grants nothing."""
    a = register(name="A")
    b = register(name="B", audiences=("https://orders.example",))
    api = register(
        name="Orders API",
        grants=("client_credentials",),
        scopes=("api",),
        redirect_uris=(),
        is_resource_server=True,
    )
    issued = server.oauth_tokens(server.browser(), a)
    assert server.introspect(b, issued["access_token"]) == {"active": False}
    assert server.introspect(api, issued["access_token"])["active"] is True
