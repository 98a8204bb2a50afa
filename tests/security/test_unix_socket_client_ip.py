"""Issue 13, finding 6: authserver behind a proxy on a Unix socket.

A Unix-socket peer has no address (gunicorn gives REMOTE_ADDR ""), so every client used to land
in one login throttle bucket (one attacker blocked sign-in for everyone) and audit rows lost
their IP. Now "unix" in AUTHSERVER_TRUSTED_PROXIES says the socket's peer is the proxy, whose
X-Forwarded-For (rightmost entry) names the client; without it authserver refuses to listen on a
Unix socket, with one line.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from django.contrib.auth.hashers import make_password
from django.test import RequestFactory

from accounts.models import User
from accounts.network import client_ip
from audit.models import AuthEvent
from tests.conftest import PASSWORD
from tests.live import BIN, GUNICORN_CONF, ROOT, base_env, manage, window_with_room

WRONG = "not the password at all"  # test-only credential


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket, as a proxy in front of authserver speaks it."""

    def __init__(self, path: str):
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def request(path: str, method: str, url: str, body: dict | None = None, headers=None):
    connection = UnixHTTPConnection(path)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, url, body=payload, headers=sent)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def socket_dir():
    # Short path: a Unix socket's path is limited to 107 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="as-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def gunicorn(env, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", str(GUNICORN_CONF), "authserver.wsgi", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def unix_server(child_env, socket_dir):
    """authserver under gunicorn listening on a Unix socket only, its peer a trusted proxy. The
    child runs the test settings for their fast hasher; budgets are small to keep this short."""
    path = str(socket_dir / "gunicorn.sock")
    env = {
        **child_env,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "AUTHSERVER_BIND": f"unix:{path}",
        "AUTHSERVER_TRUSTED_PROXIES": "unix",
        "AUTHSERVER_LOGIN_THROTTLE_PER_IP": "3",
        "AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN": "1000",
    }
    proc = gunicorn(env, "--workers", "2")
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{proc.communicate()[1]}")
            try:
                if request(path, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer on its Unix socket in 30 s")
            time.sleep(0.1)
        yield path
    finally:
        stop(proc)


def login(path: str, username: str, password: str, forwarded: str) -> int:
    status, _ = request(
        path,
        "POST",
        "/api/v1/auth/login",
        {"username": username, "password": password},
        {"X-Forwarded-For": forwarded},
    )
    return status


@pytest.mark.slow
def test_clients_behind_a_unix_socket_proxy_have_their_own_address(unix_server):
    """Issue 13.6: behind a trusted proxy on a Unix socket, each client has its own throttle
    budget and its own address in the audit trail; only the rightmost X-Forwarded-For entry
    (the one the proxy appended) is believed."""
    User.objects.create(
        username="alice", email="alice@example.com", password=make_password(PASSWORD)
    )
    attacker, neighbour = "198.51.100.66", "203.0.113.9"
    # The attacker spends its budget of 3 failures, writing a fake address of its own first.
    window_with_room(300, 60)  # the login throttle's window (the default)
    statuses = [login(unix_server, "alice", WRONG, f"192.0.2.1, {attacker}") for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    # Everyone else still signs in: the attacker's budget is not theirs.
    assert login(unix_server, "alice", PASSWORD, neighbour) == 200
    assert login(unix_server, "alice", PASSWORD, f"{attacker}, 2001:db8::7") == 200
    assert login(unix_server, "alice", PASSWORD, attacker) == 429

    assert (
        list(AuthEvent.objects.filter(event_type="login.failed").values_list("ip", flat=True))
        == [attacker] * 3
    )
    succeeded = AuthEvent.objects.filter(event_type="login.succeeded").order_by("id")
    assert list(succeeded.values_list("ip", flat=True)) == [neighbour, "2001:db8::7"]
    (throttled,) = AuthEvent.objects.filter(event_type="login.throttled")
    assert (throttled.ip, throttled.details["scope"]) == (attacker, "ip")


def unix_request(*forwarded: str):
    meta = {"REMOTE_ADDR": ""}  # what gunicorn gives for a Unix-socket peer
    if forwarded:
        meta["HTTP_X_FORWARDED_FOR"] = ",".join(forwarded)
    return RequestFactory().get("/", **meta)


def test_client_ip_of_a_unix_socket_peer(settings):
    """Issue 13.6: the Unix-socket peer is asked who the client is only when "unix" is
    trusted; then X-Forwarded-For is walked right to left past the other trusted proxies."""
    settings.AUTHSERVER_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_ip(unix_request("203.0.113.1")) == ""
    settings.AUTHSERVER_TRUSTED_PROXIES = ["unix"]
    assert client_ip(unix_request("203.0.113.1")) == "203.0.113.1"
    assert client_ip(unix_request("1.2.3.4, 203.0.113.1")) == "203.0.113.1"
    assert client_ip(unix_request()) == ""  # a proxy that sent no header: no address
    assert client_ip(unix_request("not-an-address")) == ""
    settings.AUTHSERVER_TRUSTED_PROXIES = ["UNIX", "10.0.0.0/8"]
    assert client_ip(unix_request("1.2.3.4, 203.0.113.1, 10.1.1.1")) == "203.0.113.1"
    # A TCP peer is still judged by its address.
    tcp = RequestFactory().get("/", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.1")
    assert client_ip(tcp) == "198.51.100.7"


def assert_one_line_refusal(returncode: int, stderr: str, *needles: str) -> None:
    assert returncode != 0
    ours = [line for line in stderr.splitlines() if line.startswith("authserver: ")]
    assert len(ours) == 1, stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in ours[0]


@pytest.mark.parametrize("trusted", ["", "127.0.0.1,10.0.0.0/8"])
def test_unix_bind_without_a_trusted_unix_peer_is_refused(trusted, socket_dir):
    """Issue 13.6: AUTHSERVER_BIND=unix:... without "unix" in AUTHSERVER_TRUSTED_PROXIES
    refuses to start, with one line naming the variables."""
    env = base_env(
        AUTHSERVER_BIND=f"127.0.0.1:8000,unix:{socket_dir}/gunicorn.sock",
        AUTHSERVER_TRUSTED_PROXIES=trusted,
    )
    result = manage("check", env=env)
    assert_one_line_refusal(result.returncode, result.stderr, "AUTHSERVER_BIND", "unix")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_gunicorn_refuses_a_unix_socket_without_a_trusted_unix_peer(socket_dir):
    """Issue 13.6: gunicorn refuses before opening any socket, whether the Unix socket comes from
    AUTHSERVER_BIND or from a --bind flag, and exits 2 (a configuration error, which systemd
    does not restart)."""
    path = socket_dir / "gunicorn.sock"
    from_env = gunicorn(base_env(AUTHSERVER_BIND=f"unix:{path}"))
    from_flag = gunicorn(base_env(AUTHSERVER_BIND="127.0.0.1:0"), "--bind", f"unix:{path}")
    for proc, variable in [(from_env, "AUTHSERVER_BIND"), (from_flag, "AUTHSERVER_TRUSTED")]:
        try:
            _, stderr = proc.communicate(timeout=60)
        finally:
            stop(proc)
        assert proc.returncode == 2, stderr
        assert_one_line_refusal(proc.returncode, stderr, variable, f"unix:{path}")
    assert not path.exists()


@pytest.mark.slow
def test_gunicorn_refuses_an_inherited_unix_socket_without_a_trusted_unix_peer(socket_dir):
    """Issue 13.6: an fd:// socket that is a Unix socket is refused the same way."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_dir / "inherited.sock"))
    listener.listen()
    fd = listener.fileno()
    try:
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "--config", str(GUNICORN_CONF), "authserver.wsgi"],
            cwd=ROOT,
            env=base_env(AUTHSERVER_BIND=f"fd://{fd}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            pass_fds=(fd,),
        )
        try:
            _, stderr = proc.communicate(timeout=60)
        finally:
            stop(proc)
    finally:
        listener.close()
    assert proc.returncode == 2, stderr
    assert_one_line_refusal(proc.returncode, stderr, "AUTHSERVER_TRUSTED_PROXIES", f"fd://{fd}")
