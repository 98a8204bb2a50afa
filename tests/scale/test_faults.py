"""Fault tolerance under gunicorn, against throwaway PostgreSQL and Redis servers that the test
stops and starts (never the machine's shared ones).

- PostgreSQL stopped: login and refresh answer 503 `temporarily_unavailable` JSON within a few
  seconds (no hang, no HTML 500); /readyz says why; the JWKS is still served from memory; when
  the database is back, the same processes serve again by themselves.
- Redis stopped: login fails closed (503) because the throttle and lockout cannot be enforced;
  refresh, the JWKS, bearer APIs and logout do not need the cache and keep working; /readyz
  reports the cache as unavailable but stays 200 ("degraded"); login recovers when Redis returns.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
import requests

from tests.conftest import PASSWORD
from tests.live import Gunicorn, base_env, manage
from tests.scale.client import bearer_get, login, refresh
from tests.scale.services import ThrowawayPostgres, ThrowawayRedis, postgres_bindir

pytestmark = pytest.mark.slow

# A stopped server refuses connections at once; DATABASE_CONNECT_TIMEOUT (5 s) and the Redis
# socket timeouts (2 s) bound the unreachable-host case. Either way: well under this.
ANSWER_WITHIN_SECONDS = 6.0
RECOVER_WITHIN_SECONDS = 20.0


def assert_unavailable(response: requests.Response, elapsed: float) -> None:
    assert elapsed < ANSWER_WITHIN_SECONDS, f"answered after {elapsed:.1f} s"
    assert response.status_code == 503, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"]


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def until_ok(call, within: float = RECOVER_WITHIN_SECONDS) -> requests.Response:
    deadline = time.monotonic() + within
    while True:
        try:
            response = call()
            if response.status_code == 200:
                return response
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "did not recover by itself"
        time.sleep(0.25)


def readyz_until(url: str, status_code: int, within: float = 3.0) -> requests.Response:
    """/readyz once it answers `status_code`: each process memoises its checks for
    READINESS_CACHE_SECONDS (authserver/health.py), so a change shows within that."""
    deadline = time.monotonic() + within
    while True:
        response = requests.get(url + "/readyz", timeout=10)
        if response.status_code == status_code or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.fixture
def throwaway_postgres():
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb) are not installed")
    server = ThrowawayPostgres()
    yield server
    server.remove()


@pytest.fixture
def throwaway_redis():
    try:
        server = ThrowawayRedis()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield server
    server.remove()


def test_postgres_stopped_token_endpoints_503_then_recover(throwaway_postgres, tmp_path):
    env = base_env(
        DATABASE_URL=throwaway_postgres.url,
        AUTHSERVER_CACHE_KEY_PREFIX=f"authserver-fault-{uuid.uuid4().hex}",
        AUTHSERVER_LOG_FORMAT="json",
        AUTHSERVER_METRICS_DIR=str(tmp_path / "metrics"),
        ALICE_PASSWORD=PASSWORD,
    )
    migrated = manage("migrate", "--noinput", env=env, timeout=180)
    assert migrated.returncode == 0, migrated.stderr
    created = manage(
        "create_user", "alice", "--email", "a@example.com", "--password-env", "ALICE_PASSWORD",
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr

    with Gunicorn(env, workers=1) as server:
        first = login(server.url, "alice")
        assert first.status_code == 200, first.text
        token = first.json()["refresh_token"]
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200

        browser = requests.Session()
        page = browser.get(server.url + "/login", timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

        throwaway_postgres.stop()
        assert_unavailable(*timed(lambda: login(server.url, "alice")))
        # A person signing in on the hosted page gets a readable page in their language, not
        # JSON and not a 500.
        hosted = browser.post(
            server.url + "/login",
            data={"csrfmiddlewaretoken": csrf, "username": "alice", "password": PASSWORD},
            headers={"Accept": "text/html", "Accept-Language": "de", "Referer": server.url},
            allow_redirects=False,
            timeout=10,
        )
        assert hosted.status_code == 503 and hosted.headers["Retry-After"]
        assert "text/html" in hosted.headers["Content-Type"]
        assert "<h1>Vorübergehend nicht verfügbar</h1>" in hosted.text
        assert 'lang="de"' in hosted.text and "authserver" in hosted.text
        assert_unavailable(*timed(lambda: refresh(server.url, token)))
        ready = readyz_until(server.url, 503)
        assert ready.status_code == 503
        assert ready.json()["reason"] == "database: database unreachable"
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
        # Verifiers keep getting the public keys from the in-memory key ring.
        assert requests.get(server.url + "/.well-known/jwks.json", timeout=10).status_code == 200

        throwaway_postgres.start()
        # The refresh that failed did not spend the token: it still works, on the same process.
        recovered = until_ok(lambda: refresh(server.url, token))
        assert recovered.json()["refresh_token"] != token
        assert login(server.url, "alice").status_code == 200
        assert readyz_until(server.url, 200).status_code == 200
    output = server.output()
    assert "Traceback" not in output
    assert '"status":500' not in output


def test_redis_stopped_login_fails_closed_refresh_and_jwks_keep_working(
    child_env, make_account, throwaway_redis, tmp_path
):
    make_account("alice")
    env = {
        **child_env,
        "REDIS_URL": throwaway_redis.url,
        "AUTHSERVER_METRICS_DIR": str(tmp_path / "metrics"),
    }
    with Gunicorn(env, workers=1) as server:
        first = login(server.url, "alice")
        assert first.status_code == 200, first.text

        throwaway_redis.stop()
        assert_unavailable(*timed(lambda: login(server.url, "alice")))
        # Fail closed means closed for a wrong password too: no unthrottled guessing.
        assert_unavailable(*timed(lambda: login(server.url, "alice", "wrong password!")))

        rotated, elapsed = timed(lambda: refresh(server.url, first.json()["refresh_token"]))
        assert rotated.status_code == 200, rotated.text
        assert elapsed < ANSWER_WITHIN_SECONDS
        pair = rotated.json()
        assert bearer_get(server.url, "/api/v1/me", pair["access_token"]).status_code == 200
        assert requests.get(server.url + "/.well-known/jwks.json", timeout=10).status_code == 200
        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["cache"].startswith("unavailable")
        logout = requests.post(
            server.url + "/api/v1/auth/logout",
            json={"refresh_token": pair["refresh_token"]},
            timeout=10,
        )
        assert logout.status_code == 204

        throwaway_redis.start()  # same port, empty: counters start over
        until_ok(lambda: login(server.url, "alice"))
        deadline = time.monotonic() + 3
        while (status := requests.get(server.url + "/readyz", timeout=10).json()["status"]) != (
            "ready"
        ) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == "ready"
    assert "Traceback" not in server.output()
