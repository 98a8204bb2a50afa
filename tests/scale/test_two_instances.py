"""Two authserver instances (separate gunicorn masters, different ports) sharing one PostgreSQL
and one Redis: whatever one instance does, the other sees.

Run alone, with the load figures printed: `make test ARGS="tests/scale -k kill -s"`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import jwt
import pytest
import requests

from audit.models import AuthEvent
from sessions.models import Session
from tests.scale.client import (
    admin_rotate,
    admin_session,
    bearer_get,
    jwks_kids,
    jwt_part,
    login,
    refresh,
)
from tests.scale.cluster import readyz_at_once, two_instances
from tokens.models import SigningKey

pytestmark = pytest.mark.slow

JWKS_MAX_AGE = 5


@pytest.fixture
def cluster_env(child_env):
    # One env for both instances: same database, same Redis and cache prefix, same secrets.
    return {
        **child_env,
        "AUTHSERVER_JWKS_MAX_AGE": str(JWKS_MAX_AGE),
        "AUTHSERVER_KEY_ACTIVATION_DELAY": str(JWKS_MAX_AGE + 60),
        "AUTHSERVER_LOCKOUT_THRESHOLD": "3",
        "AUTHSERVER_LOGIN_THROTTLE_PER_IP": "1000",
        "AUTHSERVER_LOG_FORMAT": "json",
    }


def test_first_key_once_then_tokens_move_freely_and_revocation_is_shared(
    cluster_env, make_account, tmp_path
):
    make_account("alice")
    with two_instances(cluster_env, tmp_path) as (a, b):
        # Both instances see an empty key store and race to create the first key.
        probes = readyz_at_once([a.url, b.url, a.url, b.url])
        assert [p.status_code for p in probes] == [200] * 4, [p.text for p in probes]
        assert SigningKey.objects.count() == 1
        assert AuthEvent.objects.filter(event_type="key.rotated").count() == 1

        first = login(a.url, "alice")
        assert first.status_code == 200, first.text
        # A token issued by A refreshes on B, and B's tokens work on A.
        second = refresh(b.url, first.json()["refresh_token"])
        assert second.status_code == 200, second.text
        pair = second.json()
        assert bearer_get(a.url, "/api/v1/me", pair["access_token"]).status_code == 200

        # A session revoked on B is dead on A: no refresh, and A's own APIs refuse its token.
        sid = jwt_part(pair["access_token"], 1)["sid"]
        ended = requests.delete(
            f"{b.url}/api/v1/sessions/{sid}",
            headers={"Authorization": f"Bearer {pair['access_token']}"},
            timeout=20,
        )
        assert ended.status_code == 204, ended.text
        assert refresh(a.url, pair["refresh_token"]).status_code == 401
        assert bearer_get(a.url, "/api/v1/me", pair["access_token"]).status_code == 401
        assert Session.objects.get(pk=sid).revoke_reason == "user_ended"


def test_lockout_triggered_on_a_holds_on_b(cluster_env, make_account, tmp_path):
    user = make_account("bob")
    with two_instances(cluster_env, tmp_path) as (a, b):
        for _ in range(3):  # AUTHSERVER_LOCKOUT_THRESHOLD
            assert login(a.url, "bob", "wrong password!").status_code == 401
        locked = login(b.url, "bob")  # the right password, on the other instance
        assert locked.status_code == 401
        assert locked.json()["error"] == "invalid_grant"
    reasons = list(
        AuthEvent.objects.filter(user=user, event_type="login.failed")
        .order_by("id")
        .values_list("details__reason", flat=True)
    )
    assert reasons == ["bad_credentials"] * 3 + ["locked"]
    assert AuthEvent.objects.filter(user=user, event_type="account.locked").count() == 1


def test_key_rotated_on_a_is_served_by_b_within_its_cache_lifetime(
    cluster_env, make_account, tmp_path
):
    make_account("root", is_staff=True, is_superuser=True)
    make_account("carol")
    with two_instances(cluster_env, tmp_path) as (a, b):
        assert readyz_at_once([a.url, b.url])[1].status_code == 200
        (old_kid,) = jwks_kids(b.url)
        jwks = requests.get(b.url + "/.well-known/jwks.json", timeout=20)
        assert jwks.headers["Cache-Control"] == f"public, max-age={JWKS_MAX_AGE}"
        admin = admin_session(a.url, "root")

        admin_rotate(admin, a.url, immediate=False)  # publish the next key, on A
        rotated_at = time.monotonic()
        new_kid = SigningKey.objects.get(state="next").kid
        while new_kid not in jwks_kids(b.url):
            assert time.monotonic() - rotated_at < JWKS_MAX_AGE, "B still serves the old JWKS"
            time.sleep(0.05)
        assert set(jwks_kids(b.url)) == {old_kid, new_kid}

        # "Activate now" on A: B signs with the new key within the same bound, and the
        # tokens B signs verify with A's JWKS.
        pair = login(b.url, "carol").json()
        admin_rotate(admin, a.url, immediate=True)
        activated_at = time.monotonic()
        while jwt_part(pair["access_token"], 0)["kid"] != new_kid:
            assert time.monotonic() - activated_at < JWKS_MAX_AGE, "B still signs with the old key"
            time.sleep(0.2)
            pair = refresh(b.url, pair["refresh_token"]).json()
        keys = jwt.PyJWKSet.from_dict(
            requests.get(a.url + "/.well-known/jwks.json", timeout=20).json()
        )
        claims = jwt.decode(
            pair["access_token"],
            keys[new_kid].key,
            algorithms=["RS256"],
            audience=cluster_env["AUTHSERVER_ISSUER"] + "/api",
            issuer=cluster_env["AUTHSERVER_ISSUER"],
        )
        assert claims["sub"]


# --- Kill one instance mid-load ---------------------------------------------------------------

LOAD_SECONDS = 4.0
KILL_AFTER_SECONDS = 1.5
CLIENTS = 6
MAX_REQUESTS_PER_CLIENT = 2000  # a bound, far above what 4 s allow on this machine


@dataclass
class LoadTally:
    served: Counter = field(default_factory=Counter)  # instance -> 200s
    served_after_kill: Counter = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (instance, what)
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # non-200 answers
    retried: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def test_killing_one_instance_mid_load_loses_no_session(
    cluster_env, make_account, tmp_path, capsys
):
    """Refresh-token rotation in a bounded loop from several clients, spread over A and B by a
    client-side balancer that fails over on a connection error (as a load balancer would).
    A is SIGKILLed (master and workers) mid-load. B keeps serving; a request in flight on A may
    fail at the client and is retried on B with the same token; the grace window covers a
    rotation A committed but could not answer. Afterwards every session is alive with exactly
    one live refresh token."""
    env = {**cluster_env, "AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS": "30"}
    for n in range(CLIENTS):
        make_account(f"load{n}")
    tally = LoadTally()
    dead: set[str] = set()
    final_tokens: dict[int, str] = {}

    with two_instances(env, tmp_path) as (a, b):
        names = {a.url: "A", b.url: "B"}
        tokens = []
        for n in range(CLIENTS):
            response = login((a.url, b.url)[n % 2], f"load{n}")
            assert response.status_code == 200, response.text
            tokens.append(response.json()["refresh_token"])
        start = time.monotonic()
        killed_at: list[float] = []

        def client(n: int) -> None:
            token = tokens[n]
            sessions = {url: requests.Session() for url in (a.url, b.url)}
            for i in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() - start > LOAD_SECONDS:
                    break
                live = [url for url in (a.url, b.url) if url not in dead]
                url = live[(i + n) % len(live)]
                sent_at = time.monotonic()
                try:
                    response = refresh(url, token, sessions[url])
                except requests.RequestException as exc:
                    with tally.lock:
                        tally.errors.append((names[url], exc.__class__.__name__))
                        dead.add(url)  # the balancer takes it out of rotation
                        tally.retried += 1
                    url = b.url if url == a.url else a.url
                    try:
                        response = refresh(url, token, sessions[url])
                    except requests.RequestException as again:
                        with tally.lock:
                            tally.errors.append((names[url], again.__class__.__name__))
                        break
                if response.status_code != 200:
                    with tally.lock:
                        tally.refused.append((names[url], response.status_code, response.text))
                    break
                token = response.json()["refresh_token"]
                with tally.lock:
                    tally.served[names[url]] += 1
                    if killed_at and sent_at > killed_at[0]:
                        tally.served_after_kill[names[url]] += 1
            final_tokens[n] = token

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(KILL_AFTER_SECONDS)
        os.killpg(a.proc.pid, signal.SIGKILL)  # the master and every worker, no goodbye
        killed_at.append(time.monotonic())
        a.proc.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.monotonic() - start

        # Every client can go on with the token it holds, on the surviving instance.
        for n in range(CLIENTS):
            still = refresh(b.url, final_tokens[n])
            assert still.status_code == 200, (n, still.text)

    assert not tally.refused, tally.refused
    assert all(instance == "A" for instance, _ in tally.errors), tally.errors
    assert len(tally.errors) <= CLIENTS, "more failures than requests in flight at the kill"
    assert tally.served_after_kill["B"] > 0 and tally.served_after_kill["A"] == 0
    sessions = Session.objects.filter(user__username__startswith="load")
    assert sessions.count() == CLIENTS  # none duplicated
    assert not sessions.filter(revoked_at__isnull=False).exists()  # none lost
    # Each session holds exactly one live token (its current digest), in its own row.
    assert not sessions.filter(refresh_digest__isnull=True).exists()
    grace = AuthEvent.objects.filter(event_type="token.refreshed", details__grace=True).count()
    with capsys.disabled():
        print(
            f"\nscale: killed instance A after {KILL_AFTER_SECONDS} s of a {elapsed:.1f} s "
            f"refresh loop ({CLIENTS} clients): {sum(tally.served.values())} rotations served "
            f"(A {tally.served['A']}, B {tally.served['B']}; B after the kill "
            f"{tally.served_after_kill['B']}), client errors {len(tally.errors)} (in flight on A), "
            f"retried on B {tally.retried} (via grace window {grace}), sessions lost 0, "
            f"duplicated 0"
        )
