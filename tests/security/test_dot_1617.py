"""django-oauth-toolkit #1617 (fixed in DOT by #1777, "Don't let the grace period bypass
refresh-token reuse protection"; source: DOT's CHANGELOG and commit 5bf33f27, read from the
project's repository because the issue thread itself was not in the searchable corpus): with
reuse protection on, a refresh token that had been rotated past several generations ago was
still honoured inside REFRESH_TOKEN_GRACE_PERIOD_SECONDS, minting a fresh pair instead of
revoking the family.

authserver has the same opt-in window (AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS, README "Grace
window"): only the immediately preceding token, only while its successor is unused, only once.
Everything else is reuse (RFC 9700 §4.14.2): refused, and the whole session revoked. Checked
over HTTP against gunicorn with a 60-second window, on the first-party API and the OAuth
refresh grant.
"""

from __future__ import annotations

import pytest

from tests.security.battery import register, serve

pytestmark = pytest.mark.slow

GRACE = {"AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS": "60"}


@pytest.fixture
def server(child_env, settings):
    with serve(child_env, settings, **GRACE) as live:
        yield live


class FirstParty:
    def __init__(self, server):
        self.server = server

    def start(self) -> str:
        return self.server.tokens()["refresh_token"]

    def refresh(self, token: str):
        response = self.server.refresh(token)
        return response.status_code, response.json()


class OAuth:
    def __init__(self, server):
        self.server = server
        self.app = register()
        self.browser = server.browser()

    def start(self) -> str:
        return self.server.oauth_tokens(self.browser, self.app)["refresh_token"]

    def refresh(self, token: str):
        response = self.server.oauth_refresh(self.app, token)
        return response.status_code, response.json()


def _ok(result) -> str:
    status, body = result
    assert status == 200, body
    return body["refresh_token"]


def _refused(result) -> None:
    status, body = result
    assert status in (400, 401), body
    assert body["error"] == "invalid_grant", body
    assert "access_token" not in body


def _grandparent_in_window_revokes_the_session(flow) -> None:
    t0 = flow.start()
    t1 = _ok(flow.refresh(t0))
    t2 = _ok(flow.refresh(t1))  # t1 has been used: t0 is two generations back
    _refused(flow.refresh(t0))
    _refused(flow.refresh(t2))  # the whole session is gone, the newest token included


def _predecessor_after_successor_used_revokes(flow) -> None:
    t0 = flow.start()
    t1 = _ok(flow.refresh(t0))
    t2 = _ok(flow.refresh(t1))
    t3 = _ok(flow.refresh(t2))  # t2 (t1's successor) used: t1 is no longer "just spent"
    _refused(flow.refresh(t1))
    _refused(flow.refresh(t3))


def _grace_shields_once(flow) -> None:
    t0 = flow.start()
    lost = _ok(flow.refresh(t0))  # the client never saw this answer
    retried = _ok(flow.refresh(t0))  # baseline: the window covers a lost response
    _refused(flow.refresh(lost))  # the replaced successor is dead
    _refused(flow.refresh(t0))  # a second retry is reuse...
    _refused(flow.refresh(retried))  # ...and ends the session


@pytest.mark.parametrize("make_flow", [FirstParty, OAuth], ids=["first-party", "oauth"])
def test_grace_window_never_honours_an_older_generation(server, make_flow):
    """DOT #1617 / RFC 9700 §4.14.2: inside the grace window, a refresh token two generations
    old, and a just-spent token whose successor has already been used, are reuse: refused, and
    the session (its newest token too) is revoked. The window still covers one lost response,
    once (baseline)."""
    flow = make_flow(server)
    _grandparent_in_window_revokes_the_session(flow)
    _predecessor_after_successor_used_revokes(flow)
    _grace_shields_once(flow)
