"""SIGTERM (a deploy, a rolling restart) never loses a response: gunicorn stops accepting, and
the requests in flight finish within AUTHSERVER_GRACEFUL_TIMEOUT (deploy/gunicorn.conf.py).

Slow-ish requests: sign-ins with the production hasher (Argon2id, a few hundred milliseconds
each on this machine), all in flight when the master gets SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from accounts.services import user_create
from authserver import settings as app_settings
from tests.conftest import PASSWORD
from tests.live import Gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.timing]

IN_FLIGHT = 4


def test_sigterm_lets_every_in_flight_request_finish(child_env, settings):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    names = [f"graceful-{i}" for i in range(IN_FLIGHT)]
    for name in names:
        user_create(username=name, email=f"{name}@example.com", password=PASSWORD)
    env = {
        **child_env,
        "AUTHSERVER_THREADS": str(IN_FLIGHT),
        # Every sign-in hashes at once here: the point is requests in flight, not the gate.
        "AUTHSERVER_PASSWORD_HASH_CONCURRENCY": str(IN_FLIGHT),
        "AUTHSERVER_PASSWORD_HASH_QUEUE": "0",
    }
    server = Gunicorn(env, workers=1)
    with server:
        warm = requests.post(
            server.url + "/api/v1/auth/login",
            json={"username": names[0], "password": PASSWORD},
            timeout=30,
        )
        assert warm.status_code == 200, warm.text

        def sign_in(name: str) -> requests.Response:
            return requests.post(
                server.url + "/api/v1/auth/login",
                json={"username": name, "password": PASSWORD},
                timeout=30,
            )

        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            futures = [pool.submit(sign_in, name) for name in names]
            time.sleep(0.1)  # every request reached the worker; each is still hashing
            assert not any(f.done() for f in futures), "the requests were not slow enough"
            os.kill(server.proc.pid, signal.SIGTERM)
            responses = [f.result() for f in futures]
        assert server.proc.wait(timeout=30) == 0
    for response in responses:
        assert response.status_code == 200, response.text
        body = response.json()  # complete: the whole JSON document arrived
        assert body["access_token"] and body["refresh_token"]
    log = server.output()
    assert "Handling signal: term" in log or "Shutting down" in log, log[-2000:]


def test_sigterm_stops_listening_at_once_so_no_new_connection_is_lost(child_env):
    """After SIGTERM, while a request is still in flight (here: its body arrives slowly), a new
    connection is either refused (the proxy then retries another instance, even a POST) or
    answered; never accepted by the kernel into the backlog and then reset unanswered when the
    worker finally exits, which the proxy cannot retry for a POST (deploy/gunicorn.conf.py,
    post_worker_init)."""
    server = Gunicorn({**child_env, "AUTHSERVER_THREADS": "2"}, workers=1)
    with server:
        held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        held.sendall(
            b"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 18\r\n\r\n"
            b"grant_type"
        )
        time.sleep(0.5)  # the worker is reading its body
        os.kill(server.proc.pid, signal.SIGTERM)
        time.sleep(0.5)  # the master and the worker have handled the signal
        outcome = "refused"
        try:
            probe = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        except ConnectionRefusedError:
            probe = None
        if probe is not None:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        held.sendall(b"=client_credentials")  # the held request completes; the worker exits
        assert held.recv(65536).startswith(b"HTTP/1.1 ")
        held.close()
        if probe is not None:
            try:
                answer = probe.recv(65536)
                outcome = "answered" if answer.startswith(b"HTTP/1.1 ") else "closed unanswered"
            except ConnectionResetError:
                outcome = "reset unanswered"
            finally:
                probe.close()
        assert server.proc.wait(timeout=30) == 0
    assert outcome in ("refused", "answered"), outcome
