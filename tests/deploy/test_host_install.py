"""The host install of README "Host install", followed as far as this machine allows (issue 19.4).

deploy/install.sh puts a release into a temporary prefix (--no-user: no account is created), with
an environment file made from deploy/env.example with its REQUIRED lines filled in. Then the
systemd units' command lines are parsed and run the way systemd runs them: in their
WorkingDirectory, with only the variables of their EnvironmentFile= and Environment= lines.
What it shows: migrations go to the PostgreSQL database the environment file names (never a
SQLite file, never generated secrets in the release), the instance unit serves the collected
static files and answers /readyz, every scheduled job runs, and `current` switches atomically
between releases (the rollback step). systemd itself (User=, the sandbox) is not run here.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from tests.deploy.validate import validate_deploy as vd
from tests.live import ROOT, free_port

pytestmark = pytest.mark.slow

INSTALL = ROOT / "deploy" / "install.sh"


def _server_url(database: str) -> str:
    from django.conf import settings

    params = settings.DATABASES["default"]
    auth = params["USER"] or ""
    if params.get("PASSWORD"):
        auth += ":" + params["PASSWORD"]
    host, port = params.get("HOST") or "127.0.0.1", params.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{database}"


@pytest.fixture
def empty_database():
    name = f"hostinstall_{uuid.uuid4().hex[:10]}"
    admin = _server_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _server_url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_file_from_example(database_url: str) -> str:
    """deploy/env.example with its REQUIRED values filled in and this machine's services."""
    values = {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "AUTHSERVER_KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ["REDIS_URL"],
        "AUTHSERVER_CACHE_KEY_PREFIX": f"authserver-install-{uuid.uuid4().hex}",
        "AUTHSERVER_WORKERS": "1",
        "AUTHSERVER_THREADS": "2",
    }
    lines = []
    for line in (ROOT / "deploy" / "env.example").read_text().splitlines():
        name = line.partition("=")[0]
        lines.append(f"{name}={values.pop(name)}" if name in values else line)
    assert not values, f"env.example no longer has {sorted(values)}"
    return "\n".join(lines) + "\n"


def read_env_file(path: Path) -> dict[str, str]:
    """EnvironmentFile= as systemd reads it (the subset env.example uses)."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value.strip().strip('"')
    return env


class Unit:
    """One unit of deploy/systemd, its /opt, /etc and /run paths moved into `root` and `%i`
    replaced: its command line, working directory and environment as systemd would give them."""

    def __init__(self, name: str, root: Path, instance: str = ""):
        text = (vd.SYSTEMD / name).read_text().replace("%i", instance)
        for path in ("/opt/authserver", "/etc/authserver", "/run/"):
            text = text.replace(path, f"{root}{path}")
        self.directives = vd.unit_directives(text)
        self.root = root

    def one(self, key: str) -> str:
        (value,) = self.directives[key]
        return value

    def env(self) -> dict[str, str]:
        # systemd: Environment= first, EnvironmentFile= over it; nothing of the caller's.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root), "LANG": "C.UTF-8"}
        for assignment in self.directives.get("Environment", []):
            key, _, value = assignment.partition("=")
            env[key] = value
        for path in self.directives.get("EnvironmentFile", []):
            env.update(read_env_file(Path(path)))
        for directory in self.directives.get("RuntimeDirectory", []):
            (self.root / "run" / directory).mkdir(parents=True, exist_ok=True)
        return env

    def argv(self) -> list[str]:
        return shlex.split(self.one("ExecStart"))

    def run(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(),
            cwd=self.one("WorkingDirectory"),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def applied_migrations(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('django_migrations')").fetchone()[0] is None:
            return set()
        return set(conn.execute("SELECT app, name FROM django_migrations").fetchall())


def sh(argv: list[str], **options) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **options)


def test_host_install_migrates_postgres_from_the_env_file_and_serves(empty_database, tmp_path):
    prefix, env_file = (
        tmp_path / "opt" / "authserver",
        tmp_path / "etc" / "authserver" / "authserver.env",
    )
    install = [
        "bash", str(INSTALL), "--prefix", str(prefix), "--env-file", str(env_file),
        "--no-user", "--python", sys.executable,
    ]  # fmt: skip
    # First run: no environment file yet. It writes one from env.example and stops.
    first = sh([*install, "--version", "1.0.0"])
    assert first.returncode == 1
    assert "fill in the REQUIRED values" in first.stderr
    assert env_file.read_text() == (ROOT / "deploy" / "env.example").read_text()
    assert not (prefix / "releases" / "1.0.0").exists()

    env_file.write_text(env_file_from_example(empty_database))
    done = sh([*install, "--version", "1.0.0"], timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    release = prefix / "releases" / "1.0.0"
    assert (release / ".venv" / "bin" / "gunicorn").exists()
    assert (release / "staticfiles" / "admin" / "css" / "base.css").exists()  # collectstatic
    assert "systemctl start authserver-migrate@1.0.0" in done.stdout
    assert applied_migrations(empty_database) == set()  # install never migrates

    # The migration unit, run as systemd runs it: PostgreSQL from the environment file.
    migrate = Unit("authserver-migrate@.service", tmp_path, instance="1.0.0")
    assert migrate.directives["EnvironmentFile"] == [str(env_file)]
    assert migrate.argv()[1:] == ["manage.py", "migrate", "--noinput"]
    result = migrate.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("tokens", "0006_restore_marker") in applied_migrations(empty_database)
    # Nothing of development mode: no SQLite file, no generated secret_key / KEK files.
    assert not (release / "var").exists()

    activate = sh([*install, "--activate", "1.0.0"])
    assert activate.returncode == 0, activate.stderr
    assert os.readlink(prefix / "current") == "releases/1.0.0"

    # Every scheduled job's service, run the same way, works against that database.
    for service, timer in vd.scheduled_job_units():
        assert timer is not None
        job = Unit(service.name, tmp_path)
        ran = job.run()
        assert ran.returncode == 0, f"{service.name}: {ran.stdout}{ran.stderr}"
    assert not (release / "var").exists()

    # manage.py of the current release with the environment file (README "Backup and
    # restore"); rotate_signing_keys --if-due above made the first key.
    keys = sh([*install, "--manage", "rotate_signing_keys", "--check"])
    assert keys.returncode == 0 and "signing keys:" in keys.stdout, keys.stderr
    restore = sh([*install, "--manage", "after_restore"])
    assert restore.returncode == 0, restore.stderr
    assert "nothing done: this database was never restored from a dump" in restore.stdout

    # The email worker's unit, once (--once: deliver what is due, here nothing, and exit).
    worker = Unit("authserver-mail-worker.service", tmp_path)
    once = sh([*worker.argv(), "--once"], cwd=worker.one("WorkingDirectory"), env=worker.env())
    assert once.returncode == 0, once.stdout + once.stderr
    assert not (release / "var").exists()

    # The instance unit: gunicorn from `current`, this instance's port and metrics folder.
    port = free_port()
    instance = Unit("authserver@.service", tmp_path, instance=str(port))
    env = instance.env()
    assert env["AUTHSERVER_BIND"] == f"127.0.0.1:{port}"
    assert Path(env["AUTHSERVER_METRICS_DIR"]).parent.is_dir()  # the RuntimeDirectory
    proc = subprocess.Popen(
        instance.argv(),
        cwd=instance.one("WorkingDirectory"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            try:
                ready = requests.get(base + "/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the instance did not become ready"
            time.sleep(0.2)
        # Through the proxy (trusted 127.0.0.1, as in env.example): the collected static files.
        proxied = {"Host": "id.example.com", "X-Forwarded-Proto": "https"}
        css = requests.get(base + "/static/admin/css/base.css", headers=proxied, timeout=10)
        assert css.status_code == 200
        jwks = requests.get(base + "/.well-known/jwks.json", headers=proxied, timeout=10)
        assert jwks.status_code == 200 and jwks.json()["keys"]
        # Production settings: plain HTTP is redirected with 308.
        plain = requests.get(
            base + "/login", headers={"Host": "id.example.com"}, allow_redirects=False, timeout=10
        )
        assert plain.status_code == 308
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    # Rollback is activating the previous release; a release that is not installed is refused
    # and `current` stays as it was.
    (prefix / "releases" / "0.9.0" / ".venv" / "bin").mkdir(parents=True)
    os.symlink(release / ".venv" / "bin" / "gunicorn", prefix / "releases/0.9.0/.venv/bin/gunicorn")
    back = sh([*install, "--activate", "0.9.0"])
    assert back.returncode == 0 and "releases/1.0.0 -> releases/0.9.0" in back.stdout
    assert os.readlink(prefix / "current") == "releases/0.9.0"
    missing = sh([*install, "--activate", "2.0.0"])
    assert missing.returncode == 1 and "no installed release 2.0.0" in missing.stderr
    assert os.readlink(prefix / "current") == "releases/0.9.0"
    listed = sh([*install, "--list"]).stdout
    assert listed.split("\n")[:2] == ["0.9.0 (current)", "1.0.0"]

    # What the unit's EnvironmentFile= prevents: the same command line without it runs in
    # development mode, on a SQLite file with generated secrets inside the release.
    bare = {**migrate.env()}
    bare = {key: bare[key] for key in ("PATH", "HOME", "LANG")}
    unguarded = sh(migrate.argv(), cwd=migrate.one("WorkingDirectory"), env=bare, timeout=300)
    assert unguarded.returncode == 0, unguarded.stderr
    assert (release / "var" / "db.sqlite3").exists()
