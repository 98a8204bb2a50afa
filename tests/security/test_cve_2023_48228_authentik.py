"""CVE-2023-48228 (authentik, GHSA-fm34-v8xq-f2c3): an authorization code issued with a PKCE
`code_challenge` could be redeemed without any `code_verifier`, so a stolen code was as good as a
token. Enforced here over HTTP against gunicorn: RFC 7636 §4.5/§4.6 (the verifier is required
and must match), RFC 9700 §2.1.1 and §4.8 (S256 only, no downgrade), for confidential and public
clients.
"""

from __future__ import annotations

import pytest

from tests.security.battery import REDIRECT_URI, pkce, query, register, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def server(child_env, settings):
    with serve(child_env, settings) as live:
        yield live


def _apps():
    return [register(client_type=kind, name=f"PKCE {kind}") for kind in ("confidential", "public")]


def test_code_with_a_challenge_needs_its_verifier(server):
    """CVE-2023-48228 / RFC 7636 §4.5-§4.6: a code bound to a challenge is refused without a
    verifier (invalid_request), with an empty one, with a wrong one, with another
    authorization's verifier, and with the challenge itself sent as the verifier (invalid_grant);
    none of those attempts yields a token. Then the right verifier works (baseline). For a
    confidential and a public client."""
    browser = server.browser()
    for app in _apps():
        _verifier_required(server, browser, app)


def _verifier_required(server, browser, app) -> None:
    code, verifier = server.code(browser, app)
    _other_code, other_verifier = server.code(browser, app)
    attempts = {
        "no verifier": (None, "invalid_request"),
        "empty verifier": ("", "invalid_request"),
        "wrong verifier": (pkce().verifier, "invalid_grant"),
        "verifier of another code": (other_verifier.verifier, "invalid_grant"),
        "the challenge as verifier (plain)": (verifier.challenge, "invalid_grant"),
        "verifier with a changed last character": (
            verifier.verifier[:-1] + ("A" if verifier.verifier[-1] != "A" else "B"),
            "invalid_grant",
        ),
    }
    for what, (value, error) in attempts.items():
        response = server.code_exchange(app, code, value)
        assert response.status_code in (400, 401), (what, response.status_code, response.text)
        body = response.json()
        assert body["error"] in (error, "invalid_grant"), (what, body)
        assert "access_token" not in body, what
    # Whether the code survived failed attempts is the server's choice; if it did, only the
    # right verifier redeems it.
    final = server.code_exchange(app, code, verifier.verifier)
    assert final.status_code in (200, 400), final.text
    if final.status_code == 400:
        assert final.json()["error"] == "invalid_grant"
    fresh_code, fresh_verifier = server.code(browser, app)
    assert server.code_exchange(app, fresh_code, fresh_verifier.verifier).status_code == 200


def test_plain_and_missing_methods_are_refused_at_the_authorization_endpoint(server):
    """RFC 9700 §2.1.1 and RFC 7636 §4.2-§4.3: `code_challenge_method=plain`, an unknown method,
    and a challenge without a method (which RFC 7636 reads as plain) are refused with an error
    sent back to the registered redirect URI, and no code is issued (confidential and public)."""
    browser = server.browser()
    challenge = pkce().challenge
    for app, method in (
        (app, method) for app in _apps() for method in ("plain", "PLAIN", "s256", "S512", "", None)
    ):
        params = {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "st",
            "code_challenge": challenge,
        }
        if method is not None:
            params["code_challenge_method"] = method
        response = server.authorize(browser, params)
        assert response.status_code == 302, (method, response.status_code, response.text[:300])
        values = query(response.headers["Location"])
        assert response.headers["Location"].startswith(REDIRECT_URI), method
        assert "code" not in values, (method, values)
        assert values["error"] == "invalid_request", (method, values)
        assert values["state"] == "st"


def test_verifier_without_challenge_is_refused(server):
    """RFC 9700 §4.8 (PKCE downgrade): a confidential client's code obtained without a challenge
    cannot be redeemed with a `code_verifier`: an attacker who injects a stolen code would
    otherwise pass any verifier."""
    app = register(name="No-PKCE confidential")
    browser = server.browser()
    response = server.authorize(
        browser,
        {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "st",
        },
    )
    assert response.status_code == 302, response.text[:300]
    values = query(response.headers["Location"])
    if "code" not in values:  # the server requires PKCE from every client: even better
        assert values["error"] == "invalid_request", values
        return
    refused = server.code_exchange(app, values["code"], pkce().verifier)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] in ("invalid_request", "invalid_grant")
    assert "access_token" not in refused.json()


def test_public_client_cannot_skip_pkce(server):
    """RFC 7636 §4.4.1 and RFC 9700 §2.1.1: a public client's authorization request without a
    challenge gets an error at the redirect URI, never a code."""
    app = register(client_type="public", name="Public without PKCE")
    browser = server.browser()
    response = server.authorize(
        browser,
        {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "st",
        },
    )
    assert response.status_code == 302, response.text[:300]
    values = query(response.headers["Location"])
    assert "code" not in values and values["error"] == "invalid_request", values
