"""Black-box over HTTP: authserver under gunicorn on PostgreSQL, driven through public endpoints."""

from __future__ import annotations

import pytest
import requests

from accounts.services import user_create
from audit.models import AuthEvent
from authserver import settings as app_settings
from sessions.models import Session
from tests.conftest import PASSWORD
from tests.live import Gunicorn, json_posts_at_once

pytestmark = pytest.mark.slow

GTHREAD = ("--worker-class", "gthread", "--threads", "16")


@pytest.fixture
def server(child_env, settings):
    # The child runs the production hasher list; hash the password with it.
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    with Gunicorn(child_env, workers=2, extra=GTHREAD) as running:
        yield running


def post(server, path, body, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(server.url + path, json=body, headers=headers, timeout=10)


def login(server, username="alice", password=PASSWORD):
    return post(server, "/api/v1/auth/login", {"username": username, "password": password})


def test_rotation_chain_reuse_and_logout_over_http(server):
    first = login(server)
    assert first.status_code == 200, first.text
    assert first.headers["Cache-Control"] == "no-store"
    chain = [first.json()]
    for _ in range(3):
        response = post(
            server, "/api/v1/auth/refresh", {"refresh_token": chain[-1]["refresh_token"]}
        )
        assert response.status_code == 200, response.text
        chain.append(response.json())
    me = requests.get(
        server.url + "/api/v1/me",
        headers={"Authorization": f"Bearer {chain[-1]['access_token']}"},
        timeout=10,
    )
    assert me.status_code == 200
    assert me.json()["username"] == "alice"

    replay = post(server, "/api/v1/auth/refresh", {"refresh_token": chain[1]["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_grant"
    newest = post(server, "/api/v1/auth/refresh", {"refresh_token": chain[-1]["refresh_token"]})
    assert newest.status_code == 401
    session = Session.objects.get()
    assert session.revoke_reason == "reuse_detected"
    assert session.refresh_digest is None  # no token of it can be spent any more
    kinds = list(
        AuthEvent.objects.filter(session_id=session.id).values_list("event_type", flat=True)
    )
    # Routine rotations are counted on the session, not audited (issue 15.2); reuse is.
    assert session.rotations == 3
    assert kinds == ["token.reuse_detected"]

    other = login(server).json()
    assert (
        post(server, "/api/v1/auth/logout", {"refresh_token": other["refresh_token"]}).status_code
        == 204
    )
    assert (
        post(server, "/api/v1/auth/refresh", {"refresh_token": other["refresh_token"]}).status_code
        == 401
    )
    a, b = login(server).json(), login(server).json()
    assert post(server, "/api/v1/auth/logout-all", None, token=a["access_token"]).status_code == 204
    for pair in (a, b):
        assert (
            post(
                server, "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}
            ).status_code
            == 401
        )


def test_twenty_parallel_refreshes_give_one_success_and_no_500(server):
    pair = login(server).json()
    responses = json_posts_at_once(
        server.url + "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}, 20
    )
    statuses = [status for status, _ in responses]
    assert statuses.count(200) == 1, statuses
    assert all(status == 401 for status in statuses if status != 200), statuses
    session = Session.objects.get()
    assert session.rotations == 1  # never a double spend
    live = int(session.refresh_digest is not None)
    # Requests that reached the application before the token was spent lost a race and revoke
    # nothing (proven deterministically with 20 threads in tests/sessions/test_refresh_race.py).
    # Over HTTP, a request the operating system schedules after the winner's commit *is* a
    # presentation of a spent token, and revokes the session by design. Either way the family
    # is consistent: one live token, or none in a session revoked for reuse.
    if session.revoked_at is None:
        assert live == 1
    else:
        assert (session.revoke_reason, live) == ("reuse_detected", 0)


def test_unknown_user_wrong_password_and_locked_account_look_the_same(server):
    wrong = login(server, password="wrong password 1")
    unknown = login(server, username="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    varying = {"Date", "X-Request-ID"}  # per response by design, equal for every outcome
    assert {k: v for k, v in wrong.headers.items() if k not in varying} == {
        k: v for k, v in unknown.headers.items() if k not in varying
    }
    assert wrong.headers.keys() == unknown.headers.keys()


def test_lockout_holds_across_gunicorn_workers(server, settings):
    # Two workers, fresh connections per request: attempts land on both, the lockout still holds.
    threshold = settings.AUTHSERVER_LOCKOUT_THRESHOLD
    for attempt in range(threshold):
        response = requests.post(
            server.url + "/api/v1/auth/login",
            json={"username": "alice", "password": f"wrong {attempt}"},
            headers={"Connection": "close"},
            timeout=10,
        )
        assert response.status_code in (401, 429)
    locked = login(server)  # the right password, while locked
    assert locked.status_code in (401, 429)
    assert AuthEvent.objects.filter(event_type="account.locked").exists()
    pids = {line for line in server.output().splitlines() if "Booting worker" in line}
    assert len(pids) == 2
