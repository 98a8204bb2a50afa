"""The production shape for fault injection, started by the test itself: nginx with TLS in front
of two authserver gunicorn instances, on a throwaway PostgreSQL cluster (initdb) and a throwaway
redis-server, so that the test may SIGKILL, SIGSTOP and restart any of them without touching the
machine's shared servers (tests/scale/services.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests

from tests.deploy.validate import validate_deploy as vd
from tests.live import Gunicorn, base_env, free_port, run_python
from tests.scale.services import ThrowawayPostgres, ThrowawayRedis

USERS_AND_CLIENT = """
import json, os
import django
django.setup()
from accounts.services import user_create
from oauth.clients import client_create
names = os.environ["RESILIENCE_USERS"].split(",")
for name in names:
    user_create(username=name, email=name + "@example.com", password=os.environ["RESILIENCE_PW"])
created = client_create(
    name="resilience", client_type="confidential", grant_types=["client_credentials"],
    is_resource_server=True,
)
print(json.dumps({"client_id": created.client.client_id, "client_secret": created.secret}))
"""


def _ecdsa_certificate(directory: Path) -> None:
    """A throwaway P-256 certificate for localhost: its handshakes cost a fraction of an RSA
    one's, so the flood measures authserver rather than TLS on a two-core machine."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


class Instance:
    """One authserver gunicorn instance on a fixed port (nginx's upstream), restartable."""

    def __init__(self, name: str, env: dict[str, str], tmp: Path, workers: int) -> None:
        self.name = name
        self.port = free_port()
        self.env = env
        self.tmp = tmp
        self.workers = workers
        self.server: Gunicorn | None = None
        self.logs: list[str] = []
        self.started_at = 0.0  # time.monotonic() when it last answered /healthz after a start

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **overrides: str) -> None:
        self.env = {**self.env, **overrides}
        env = {**self.env, "AUTHSERVER_METRICS_DIR": str(self.tmp / f"metrics-{self.name}")}
        server = Gunicorn(env, workers=self.workers)
        server.port = self.port
        server.url = self.url
        server.__enter__()
        self.server = server
        self.started_at = time.monotonic()

    def kill(self) -> None:
        """SIGKILL the master and its workers at once: in-flight requests get no answer."""
        assert self.server is not None and self.server.proc is not None
        os.killpg(self.server.proc.pid, signal.SIGKILL)
        self.server.proc.wait()
        self.logs.append(self.server.output())
        self.server = None

    def terminate(self) -> None:
        """SIGTERM, as a deploy does: in-flight requests finish (graceful timeout)."""
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.logs.append(self.server.output())
            self.server = None


class PostgresControl(ThrowawayPostgres):
    def pids(self) -> list[int]:
        """The postmaster and its children (backends, background workers)."""
        master = int((self.data / "postmaster.pid").read_text().split()[0])
        found = [master]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == master:
                found.append(int(entry.name))
        return found

    def pause(self) -> list[int]:
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return pids

    def resume(self, pids: list[int]) -> None:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def restart(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")
        self.start()


class Cluster:
    def __init__(self, tmp: Path, *, users: list[str], password: str, workers: int = 1) -> None:
        self.tmp = tmp
        self.stack = contextlib.ExitStack()
        self.postgres = PostgresControl()
        self.stack.callback(self.postgres.remove)
        self.redis = ThrowawayRedis()
        self.stack.callback(self.redis.remove)
        self.env = base_env(
            DATABASE_URL=self.postgres.url,
            REDIS_URL=self.redis.url,
            AUTHSERVER_CACHE_KEY_PREFIX="resilience",
            AUTHSERVER_TRUSTED_PROXIES="127.0.0.1",
            AUTHSERVER_SSL_REDIRECT="true",
            AUTHSERVER_LOG_FORMAT="json",
            AUTHSERVER_ISSUER="https://localhost",
            ALLOWED_HOSTS="localhost,127.0.0.1",
            AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS="0",
        )
        migrated = run_python("manage.py", "migrate", "--noinput", env=self.env, timeout=180)
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        made = run_python(
            "-c",
            USERS_AND_CLIENT,
            env={**self.env, "RESILIENCE_USERS": ",".join(users), "RESILIENCE_PW": password},
            timeout=120,
        )
        assert made.returncode == 0, made.stderr[-2000:]
        self.client = json.loads(made.stdout.strip().splitlines()[-1])
        self.instances = [Instance(n, self.env, tmp, workers) for n in ("a", "b")]
        for instance in self.instances:
            instance.start()
            self.stack.callback(instance.terminate)
        self._nginx()

    def _nginx(self) -> None:
        nginx = shutil.which("nginx")
        assert nginx is not None, "nginx is not installed (apt-get install nginx)"
        _ecdsa_certificate(self.tmp / "tls")
        https_port = free_port()
        conf = self.tmp / "nginx.conf"
        conf.write_text(
            vd.nginx_local_config(
                (vd.DEPLOY / "nginx.conf").read_text(),
                upstreams=[f"127.0.0.1:{i.port}" for i in self.instances],
                http_port=free_port(),
                https_port=https_port,
                tls_dir=self.tmp / "tls",
            )
        )
        proc = subprocess.Popen(
            [
                nginx,
                "-p",
                str(self.tmp),
                "-c",
                str(conf),
                "-g",
                f"pid {self.tmp}/nginx.pid; daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stop() -> None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

        self.stack.callback(stop)
        self.base = f"https://localhost:{https_port}"
        self.ca = str(self.tmp / "tls" / "fullchain.pem")
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(self.base + "/healthz", verify=self.ca, timeout=2)
                return
            except requests.RequestException:
                assert proc.poll() is None, "nginx exited"
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)

    def sql(self, query: str) -> str:
        """One value from the throwaway database (psql as the superuser)."""
        import psycopg

        with psycopg.connect(self.postgres.url, connect_timeout=5) as conn:
            row = conn.execute(query).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.stack.close()
