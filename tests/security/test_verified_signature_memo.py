"""The server remembers the tokens whose signature it verified (tokens/backends.py), so that a
resource server introspecting the same token on every API call pays the RSA check once. Over
HTTP against gunicorn (one worker, so the token is known to the process that answers): once a
genuine token has been accepted many times by the first-party API, UserInfo and introspection,

- its signature on any other bytes is still refused everywhere;
- it stops being accepted when it expires (no leeway here), and
- when its key is revoked, within the second that key changes take to reach every process.
"""

from __future__ import annotations

import json
import time

import jwt
import pytest
from django.conf import settings as django_settings

from accounts.models import User
from tests.security.battery import b64url, claims_for, make_person, register_resource_server, serve
from tokens.keys import active_signing_key, keyring_reset
from tokens.rotation import signing_key_revoke, signing_key_rotate

pytestmark = pytest.mark.slow


@pytest.fixture
def world(child_env, settings):
    # The test process's cache namespace: a key revoked here reaches the server's snapshot
    # through the shared generation token, as it would from another instance.
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    with serve(
        child_env, settings, AUTHSERVER_TOKEN_LEEWAY="0", AUTHSERVER_CACHE_KEY_PREFIX=prefix
    ) as server:
        first = server.tokens()  # the server creates its first key and alice's session
        keyring_reset()
        sid = jwt.decode(first["access_token"], options={"verify_signature": False})["sid"]
        inspector = register_resource_server()
        yield server, inspector, User.objects.get(username="alice"), sid


def _token(alice: User, sid: str, **changes) -> str:
    key = active_signing_key()
    claims = claims_for(
        alice,
        audience=django_settings.AUTHSERVER_DEFAULT_AUDIENCE,
        issuer=django_settings.AUTHSERVER_ISSUER,
        sid=sid,
        **changes,
    )
    return jwt.encode(
        claims,
        key.backend.prepared_signing_key,
        algorithm=key.alg,
        headers={"kid": key.kid, "typ": "at+jwt"},
    )


def _accepted_everywhere(server, inspector, token: str, times: int = 5) -> None:
    for _ in range(times):
        assert server.me(token).status_code == 200
        assert server.userinfo(token).status_code == 200
        assert server.introspect(inspector, token)["active"] is True


def _refused_everywhere(server, inspector, token: str, what: str) -> None:
    me = server.me(token)
    assert me.status_code == 401 and me.json()["error"] == "invalid_token", (what, me.text)
    info = server.userinfo(token)
    assert info.status_code == 401, (what, info.status_code, info.text)
    assert server.introspect(inspector, token) == {"active": False}, what


def test_a_remembered_signature_does_not_carry_over_to_other_bytes(world):
    server, inspector, alice, sid = world
    token = _token(alice, sid)
    _accepted_everywhere(server, inspector, token)
    head, payload, signature = token.split(".")
    # Another user's subject, a later expiry, a wider scope: each with the genuine signature.
    bob = make_person("bob")
    for changes in ({"sub": str(bob.public_id)}, {"exp": 2_000_000_000}, {"scope": "admin"}):
        claims = jwt.decode(token, options={"verify_signature": False}) | changes
        other = b64url(json.dumps(claims, separators=(",", ":")).encode())
        _refused_everywhere(server, inspector, f"{head}.{other}.{signature}", repr(changes))
    # The same header and payload with a signature segment that decodes differently.
    _refused_everywhere(server, inspector, f"{head}.{payload}.{signature[:-2]}AA", "signature")
    _accepted_everywhere(server, inspector, token, times=1)


def test_a_remembered_token_expires_on_time(world):
    server, inspector, alice, sid = world
    expires = int(time.time()) + 3
    token = _token(alice, sid, exp=expires)
    _accepted_everywhere(server, inspector, token, times=3)
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    _refused_everywhere(server, inspector, token, "expired")


def test_a_remembered_token_of_a_revoked_key_is_refused_within_seconds(world):
    server, inspector, alice, sid = world
    token = _token(alice, sid)
    _accepted_everywhere(server, inspector, token)
    old = active_signing_key().kid
    signing_key_rotate(immediate=True)
    signing_key_revoke(kid=old)
    deadline = time.monotonic() + 5
    while server.introspect(inspector, token)["active"] and time.monotonic() < deadline:
        time.sleep(0.2)
    _refused_everywhere(server, inspector, token, "key revoked")
