"""CVE-2024-52289 (authentik, GHSA-2xrw-5f2x-m56j): redirect URIs registered as regular
expressions matched more than intended (an unescaped `.` matched any character, a missing `$`
matched any suffix), so codes could be sent to an attacker's host. authserver matches by exact
string equality (RFC 9700 §2.1 and §4.1.3, RFC 6749 §3.1.2.3, OAuth 2.1 §2.3.1); this module
throws the usual bypasses at the authorization endpoint under gunicorn and requires an error page
with no redirect for each (RFC 6749 §4.1.2.1), and checks that the token endpoint holds the code
to the exact redirect URI it was issued for.
"""

from __future__ import annotations

import pytest

from oauth.clients import ClientError, client_create
from tests.security.battery import REDIRECT_URI, pkce, query, register, serve

pytestmark = pytest.mark.slow

# Registered: https://app.example.com/callback (REDIRECT_URI) and a native-app loopback URI.
LOOPBACK = "http://127.0.0.1:8765/cb"

NEAR_MISSES = [
    # regex-style matching (the CVE): an unescaped dot, a missing anchor
    "https://appxexample.com/callback",
    "https://app-example.com/callback",
    "https://app.example.com/callbackx",
    "https://app.example.com/callback/evil",
    "https://app.example.com/callback.evil.example",
    "https://evil.example/?https://app.example.com/callback",
    # prefix, suffix, query and fragment additions
    "https://app.example.com/callback/",
    "https://app.example.com/callback?next=https://evil.example",
    "https://app.example.com/callback#@evil.example",
    "https://app.example.com/callback%23@evil.example",
    "https://app.example.com/callback%00",
    "https://app.example.com/callback%20",
    "https://app.example.com/callback.",
    # host tricks
    "https://app.example.com.evil.example/callback",
    "https://evil.example/callback",
    "https://app.example.com@evil.example/callback",
    "https://evil.example@app.example.com/callback",
    "https://app.example.com:443@evil.example/callback",
    "https://app.example.com%40evil.example/callback",
    "https://app.example.com\\@evil.example/callback",
    "https://app.example.com%2f@evil.example/callback",
    "//evil.example/callback",
    "https:/\\evil.example/callback",
    # case and normalisation: equal for a browser, not the registered string
    "HTTPS://APP.EXAMPLE.COM/callback",
    "https://APP.example.com/callback",
    "https://app.example.com/Callback",
    "https://app.example.com:443/callback",
    "https://app.example.com./callback",
    "http://app.example.com/callback",
    # path traversal and encodings
    "https://app.example.com/callback/../evil",
    "https://app.example.com/evil/../callback",
    "https://app.example.com/./callback",
    "https://app.example.com//callback",
    "https://app.example.com/%63allback",
    "https://app.example.com/callback%2f..%2fevil",
    "https://app.example.com/callback;evil",
    # loopback: the port is part of the registration (RFC 8252 §7.3 is not followed: we
    # compare exactly, which is stricter), and other loopback spellings are other URIs
    "http://127.0.0.1:8766/cb",
    "http://localhost:8765/cb",
    "http://[::1]:8765/cb",
    "http://127.0.0.1:8765/cb/",
    # other schemes
    "javascript://app.example.com/callback%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "",
]


@pytest.fixture
def server(child_env, settings):
    with serve(child_env, settings) as live:
        yield live


def test_authorization_endpoint_matches_redirect_uris_exactly(server):
    """CVE-2024-52289 / RFC 9700 §4.1.3 / RFC 6749 §4.1.2.1: every near miss of a registered
    redirect URI (regex-like, prefix, case, path, userinfo@host, port, scheme) gets an error page
    and no redirect anywhere; the exact registered strings work (baseline)."""
    app = register(redirect_uris=(REDIRECT_URI, LOOPBACK))
    browser = server.browser()
    challenge = pkce().challenge
    for uri in NEAR_MISSES:
        params = {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": uri,
            "scope": "openid",
            "state": "st",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        response = server.authorize(browser, params)
        assert response.status_code == 400, (uri, response.status_code)
        assert "Location" not in response.headers, (uri, response.headers.get("Location"))
        assert "code=" not in response.text, uri
    for uri in (REDIRECT_URI, LOOPBACK):
        response = server.authorize(
            browser,
            {
                "response_type": "code",
                "client_id": app.client_id,
                "redirect_uri": uri,
                "scope": "openid",
                "state": "st",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        assert response.status_code == 302, (uri, response.text[:200])
        assert response.headers["Location"].startswith(uri + "?"), response.headers["Location"]
        assert "code" in query(response.headers["Location"])


def test_errors_for_a_bad_redirect_uri_are_never_redirected(server):
    """RFC 6749 §4.1.2.1 / RFC 9700 §4.11 (open redirector): an invalid request that also names
    an unregistered redirect URI (bad scope, unknown response type, prompt=none while signed
    out) shows an error page; it never bounces the browser to the attacker's URI."""
    app = register()
    evil = "https://evil.example/callback"
    signed_out = __import__("requests").Session()
    cases = [
        (server.browser(), {"response_type": "token"}),
        (server.browser(), {"scope": "nonexistent"}),
        (server.browser(), {"code_challenge_method": "plain"}),
        (signed_out, {"prompt": "none"}),
        (signed_out, {}),
    ]
    for browser, overrides in cases:
        params = {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": evil,
            "scope": "openid",
            "state": "st",
            "code_challenge": pkce().challenge,
            "code_challenge_method": "S256",
            **overrides,
        }
        response = browser.get(
            server.url + "/oauth/authorize", params=params, allow_redirects=False, timeout=15
        )
        location = response.headers.get("Location", "")
        assert "evil.example" not in location, (overrides, location)
        assert response.status_code == 400, (overrides, response.status_code, location)


def test_token_endpoint_requires_the_exact_redirect_uri_of_the_code(server):
    """RFC 6749 §4.1.3 and OAuth 2.1 §4.1.3: a code is redeemed only with the identical
    `redirect_uri` it was issued for; a near miss is invalid_grant and issues nothing."""
    app = register(redirect_uris=(REDIRECT_URI, LOOPBACK))
    browser = server.browser()
    code, verifier = server.code(browser, app)
    for uri in (
        LOOPBACK,
        REDIRECT_URI + "/",
        REDIRECT_URI.upper(),
        "https://app.example.com:443/callback",
        "https://evil.example/callback",
        None,
    ):
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier.verifier,
        }
        if uri is not None:
            data["redirect_uri"] = uri
        response = server.form("/oauth/token", data, auth=app.basic())
        assert response.status_code == 400, (uri, response.text)
        assert response.json()["error"] in ("invalid_grant", "invalid_request"), uri
        assert "access_token" not in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "uri",
    [
        "https://*.example.com/callback",
        "https://app.example.com/*",
        "https://user:pw@app.example.com/callback",
        "https://app.example.com@evil.example/callback",
        "https://app.example.com/callback#frag",
        "javascript:alert(1)",
        "data:text/html,x",
        "/relative/callback",
        "https://app.example.com/call back",
        "https://app.example.com/\u00e9",
        "https://app.example.com\\@evil.example/",
        "https://app.example.com:99999/callback",
    ],
)
def test_ambiguous_redirect_uris_cannot_be_registered(uri):
    """CVE-2024-52289 at the source / RFC 9700 §4.1.3: what could make matching ambiguous
    (wildcards, user information, fragments, dangerous schemes, relative, whitespace, non-ASCII,
    backslashes, bad ports) is refused at registration (admin, create_client, services)."""
    with pytest.raises(ClientError):
        client_create(
            name="Ambiguous",
            client_type="confidential",
            grant_types=["authorization_code"],
            redirect_uris=[uri],
            scopes=["openid"],
        )
