"""Password hashing under a bounded concurrency per process (issue 19.2, accounts/hash_gate.py).

When the slots and the short queue are full, sign-in answers 503 with Retry-After at once: in
the API's JSON format, and as a readable page on the hosted login page. Over HTTP against
gunicorn: a burst of wrong-password sign-ins leaves threads for the health probe and the JWKS.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from accounts.hash_gate import HASH_NICE_INCREMENT, HashGate, HashGateFull, hash_gate
from authserver import settings as app_settings
from tests.accounts.test_login_page import login_post
from tests.live import Gunicorn

LOGIN = "/api/v1/auth/login"


def test_defaults_leave_at_least_half_the_threads():
    for threads in (1, 2, 4, 8, 16, 64):
        slots = max(1, threads // 4)
        queue = max(0, threads // 2 - slots)
        assert slots >= 1
        assert slots + queue <= max(1, threads // 2)
    assert (
        max(1, app_settings.AUTHSERVER_THREADS // 2)
        >= app_settings.AUTHSERVER_PASSWORD_HASH_CONCURRENCY
        + app_settings.AUTHSERVER_PASSWORD_HASH_QUEUE
    )


def test_gate_admits_the_slots_queues_the_queue_and_refuses_the_rest_at_once():
    gate = HashGate(slots=2, queue=1)
    gate.acquire()
    gate.acquire()
    waited = threading.Event()

    def queued() -> None:
        gate.acquire(wait=5)
        waited.set()
        gate.release()

    waiter = threading.Thread(target=queued)
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(HashGateFull):
        gate.acquire()  # two busy, one queued: refused without waiting
    assert time.monotonic() - started < 0.05
    assert not waited.is_set()
    gate.release()  # the queued one gets the slot
    waiter.join(timeout=5)
    assert waited.is_set()
    gate.release()
    assert gate.busy == 0


def test_a_queued_sign_in_gives_up_after_its_wait():
    gate = HashGate(slots=1, queue=1)
    gate.acquire()
    started = time.monotonic()
    with pytest.raises(HashGateFull):
        gate.acquire(wait=0.2)
    assert 0.15 < time.monotonic() - started < 1.0
    gate.release()


def test_hashes_run_on_lower_priority_threads():
    """The Argon2id lanes inherit the hashing thread's nice value: while sign-ins hash, the
    serving threads get the CPU first."""

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    caller = niceness()
    gate = HashGate(slots=1, queue=0)
    gate.acquire()
    try:
        assert gate.run(niceness) == min(19, caller + HASH_NICE_INCREMENT)
        assert gate.run(threading.current_thread).name.startswith("password-hash")
    finally:
        gate.release()
    assert niceness() == caller  # the serving thread itself keeps its priority


@pytest.fixture
def gate_full(settings):
    settings.AUTHSERVER_PASSWORD_HASH_CONCURRENCY = 1
    settings.AUTHSERVER_PASSWORD_HASH_QUEUE = 0
    gate = hash_gate()
    gate.acquire()
    yield
    gate.release()


@pytest.mark.django_db
def test_api_sign_in_answers_503_with_retry_after_when_the_gate_is_full(
    client, make_user, gate_full
):
    make_user(username="dora")
    started = time.monotonic()
    response = client.post(
        LOGIN,
        {"username": "dora", "password": "whatever it is"},
        content_type="application/json",
    )
    assert time.monotonic() - started < 1.0
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response["Retry-After"]) >= 1


@pytest.mark.django_db
def test_hosted_login_page_answers_a_readable_503_when_the_gate_is_full(
    client, make_user, gate_full
):
    make_user(username="emil")
    response = login_post(client, "emil", "whatever it is")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) >= 1
    assert b"Sign-in is busy right now." in response.content
    assert b'name="username"' in response.content  # the form is still there to try again


@pytest.mark.slow
def test_a_sign_in_burst_leaves_threads_for_probes_and_jwks(child_env, settings):
    """One worker, four threads: the default gate lets one sign-in hash and one wait. Forty
    wrong-password sign-ins at once (unknown names: each costs a real Argon2id hash) get 401 or
    503 + Retry-After, never 500, and /healthz and the JWKS keep answering quickly meanwhile."""
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    env = {**child_env, "AUTHSERVER_THREADS": "4"}
    with Gunicorn(env, workers=1) as server:
        requests.get(server.url + "/.well-known/jwks.json", timeout=10)
        warm = requests.post(
            server.url + LOGIN, json={"username": "warm", "password": "up up up up"}, timeout=30
        )
        assert warm.status_code == 401

        def sign_in(i: int) -> requests.Response:
            return requests.post(
                server.url + LOGIN,
                json={"username": f"nobody-{i}", "password": "not the password"},
                timeout=30,
            )

        probes: list[float] = []
        with ThreadPoolExecutor(40) as pool:
            futures = [pool.submit(sign_in, i) for i in range(40)]
            time.sleep(0.05)
            while not all(f.done() for f in futures):
                for path in ("/healthz", "/.well-known/jwks.json"):
                    started = time.monotonic()
                    assert requests.get(server.url + path, timeout=10).status_code == 200
                    probes.append(time.monotonic() - started)
                time.sleep(0.02)
            responses = [f.result() for f in futures]
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {401, 503}, statuses
    busy = [r for r in responses if r.status_code == 503]
    assert busy, "no sign-in was refused: the gate did not bound the burst"
    for response in busy:
        assert response.json()["error"] == "temporarily_unavailable"
        assert response.headers["Retry-After"]
    assert probes
    assert max(probes) < 1.0, f"a probe waited {max(probes):.2f} s behind the sign-ins"


@pytest.mark.django_db
def test_busy_refusals_write_no_error_line_each(client, gate_full, caplog):
    """A flood's refusals are counted (metric, access log), not logged as one ERROR line each
    by django.request: that was half of each refusal's cost, and a way to flood the log."""
    caplog.set_level(logging.INFO, logger="django.request")
    for _ in range(3):
        response = client.post(
            LOGIN, {"username": "x", "password": "y"}, content_type="application/json"
        )
        assert response.status_code == 503
    assert [r for r in caplog.records if r.name == "django.request"] == []
