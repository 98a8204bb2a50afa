"""Run authserver as a real process (gunicorn, manage.py) for black-box tests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
GUNICORN_BACKLOG = 2048  # gunicorn's default: it does not listen() again on a listening socket


def window_with_room(window_seconds: float, needed_seconds: float) -> None:
    """Wait for the next fixed window if the current one ends within `needed_seconds`.

    The throttles count in fixed windows aligned to the epoch (authserver.counters.window_at):
    every count restarts at a boundary, so a test that counts N attempts and expects the next
    one refused fails when a boundary falls between them (a 401 where a 429 was due, seen in
    CI). TOTP codes change at 30 s steps aligned the same way. Call it right before the counted
    attempts (or the code's use), with room for all of them on a loaded machine; it sleeps at
    most `needed_seconds`, and only that close to a boundary."""
    left = window_seconds - time.time() % window_seconds
    if left < needed_seconds:
        time.sleep(left + 0.5)


def free_port() -> int:
    """A loopback port free now. Another process may take it before it is used: a server the
    tests start themselves gets its port from `bound_socket` instead (ServerProcess)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bound_socket(port: int = 0, wait: float = 5.0) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:`port` (0: any free one), inheritable. Listening,
    because a socket only bound does not stop another one with SO_REUSEADDR (gunicorn's) from
    binding the same port; a connection made before the server starts waits in the backlog.

    Bound here and handed to gunicorn as fd://N, the port is this server's from the start. With
    free_port() and a later `--bind`, two test workers could draw the same port within the second
    a gunicorn takes to import the app: the later one failed to bind and retried, while its
    readiness check got 200 from the other worker's server, and its test then ran against a
    server that stopped under it (connection refused). A port given on purpose (a restart on the
    same port) is retried for `wait` seconds while the previous process lets it go, as gunicorn
    itself does."""
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            if port == 0 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        sock.listen(GUNICORN_BACKLOG)
        sock.set_inheritable(True)
        return sock


def base_env(**overrides: str) -> dict[str, str]:
    """The environment of a child authserver process: the test run's, minus test-only values."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "PYTEST_CURRENT_TEST", "PYTEST_VERSION"}
    }
    env["DJANGO_SETTINGS_MODULE"] = "authserver.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def run_python(
    *args: str, env: Mapping[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """This interpreter on `args` (a script of the checkout, `-c CODE`, ...) from the checkout's
    root, output captured as text; the caller checks the return code."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def manage(
    *args: str, env: Mapping[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return run_python("manage.py", *args, env=env, stdin=stdin, timeout=timeout)


def foreign_env(**settings: str) -> dict[str, str]:
    """Environment for a process that is not authserver (an example app): nothing of
    authserver's or the test run's configuration leaks into it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "AUTHSERVER_", "PYTEST_", "DATABASE_", "REDIS_"))
        and key != "SECRET_KEY"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


class ServerProcess:
    """A WSGI app under gunicorn on a free loopback port, as a context manager.

    Subclasses give the command line (`arguments`) and the path polled until the server answers
    (`ready_path`, with `ready` deciding what counts as an answer).
    """

    name = "server"
    ready_path = "/"
    host = "127.0.0.1"

    def __init__(self, env: Mapping[str, str], port: int = 0, cwd: Path = ROOT):
        self.env = dict(env)
        # Held until the server starts (__enter__), so no other process can take the port.
        self._reserved: socket.socket | None = bound_socket(port)
        self.port = self._reserved.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self.cwd = cwd
        self.log = tempfile.NamedTemporaryFile(prefix=f"{self.name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def ready(self, response: requests.Response) -> bool:
        return True

    def listener(self) -> socket.socket:
        """The bound socket for self.port: the one reserved at construction, or, when a caller
        set another port since (a restart on an instance's fixed port), a new one."""
        reserved, self._reserved = self._reserved, None
        if reserved is not None and reserved.getsockname()[1] == self.port:
            return reserved
        if reserved is not None:
            reserved.close()
        return bound_socket(self.port)

    def __enter__(self):
        listener = self.listener()
        try:
            self.proc = subprocess.Popen(
                [str(BIN / "gunicorn"), *self.arguments(), "--bind", f"fd://{listener.fileno()}"],
                cwd=self.cwd,
                env=self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(listener.fileno(),),
            )
        finally:
            # gunicorn holds it now; a copy kept here would queue connections after it stopped.
            listener.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.output()}")
            try:
                if self.ready(requests.get(self.url + self.ready_path, timeout=1)):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(
            f"{self.name} did not answer {self.ready_path} in 30 s:\n{self.output()}"
        )

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self._reserved is not None:  # never started
            self._reserved.close()
            self._reserved = None
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Gunicorn(ServerProcess):
    """authserver under gunicorn with the production configuration (deploy/gunicorn.conf.py:
    JSON access log, proxy policy, preload, metrics); the flags override the bind address, the
    worker count and the timeouts."""

    name = "gunicorn"
    ready_path = "/healthz"

    def __init__(
        self,
        env: Mapping[str, str],
        workers: int = 2,
        extra: tuple[str, ...] = (),
        root: Path = ROOT,
        app: str = "authserver.wsgi",
    ):
        """`root`: the checkout to serve, with its own deploy/gunicorn.conf.py (bench/compare.py
        runs another one beside this). `app`: another WSGI app under the same configuration
        (bench/run.py's floors)."""
        super().__init__(env, cwd=root)
        self.workers = workers
        self.extra = extra
        self.app = app

    def arguments(self) -> list[str]:
        return [
            "--config",
            str(self.cwd / GUNICORN_CONF.relative_to(ROOT)),
            self.app,
            "--workers",
            str(self.workers),
            "--timeout",
            "30",
            "--graceful-timeout",
            "5",
            *self.extra,
        ]

    def ready(self, response: requests.Response) -> bool:
        return response.status_code == 200


def json_response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the response on `sock` (http.client handles chunked bodies)."""
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        body = response.read()
    finally:
        sock.close()
    return response.status, json.loads(body) if body else {}


def json_posts_at_once(url: str, body: dict, count: int) -> list[tuple[int, dict]]:
    """POST `body` as JSON `count` times with every request in flight together: the connections
    are opened first, then the requests sent back to back (a thread per `requests` call would
    spread them over milliseconds). (status, JSON body) of each, in sending order."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    sockets = [
        socket.create_connection((parts.hostname, parts.port), timeout=30) for _ in range(count)
    ]
    for sock in sockets:
        sock.sendall(request)
    results: list = [None] * count

    def read(i: int, sock: socket.socket) -> None:
        results[i] = json_response(sock)

    readers = [threading.Thread(target=read, args=(i, s)) for i, s in enumerate(sockets)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=60)
    return results
