#!/usr/bin/env python3
"""`make test`: find (or start) PostgreSQL and Redis, then lint and run the whole suite.

PostgreSQL, in this order: $DATABASE_URL; the local server on 127.0.0.1:5432; a throwaway cluster
made from the PostgreSQL server binaries (initdb) when they are installed. Redis likewise:
$REDIS_URL; 127.0.0.1:6379; a throwaway redis-server. With neither, stop with one line saying
what to install. Without arguments the suite runs on two pytest-xdist workers more than cores (3
to 6), then the tests marked `timing` (tests/resilience, the side-channel probes) alone; extra
arguments go to one plain pytest run (`make test ARGS="-k jwks"`).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(f"make test: {message}", flush=True)


def die(message: str) -> None:
    print(f"make test: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_answers(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return port_open("127.0.0.1", 5432)
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


def start_throwaway_postgres() -> str | None:
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    initdb = next((p for p in reversed(initdbs) if p), None)
    if not initdb:
        return None
    bindir = Path(initdb).parent
    workdir = Path(tempfile.mkdtemp(prefix="authserver-pg-"))
    data = workdir / "data"
    port = free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            die("PostgreSQL binaries found but no 'postgres' user to run them as")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    say(f"starting a throwaway PostgreSQL cluster on 127.0.0.1:{port}")
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(workdir / "log"),
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )

    def stop() -> None:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(stop)
    return f"postgres://postgres@127.0.0.1:{port}/postgres"


def find_postgres() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        if not url.startswith(("postgres://", "postgresql://")):
            die(f"DATABASE_URL must be a postgres:// URL for the tests, got {url.split(':')[0]}://")
        return url
    local = "postgres://postgres@127.0.0.1:5432/postgres"
    if os.environ.get("AUTHSERVER_TEST_THROWAWAY_PG") != "1" and postgres_answers(local):
        return local
    url = start_throwaway_postgres()
    if url:
        return url
    die(
        "no PostgreSQL: set DATABASE_URL, run one on 127.0.0.1:5432, "
        "or install the server (apt-get install postgresql)"
    )
    raise AssertionError  # unreachable


def find_redis() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    if port_open("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/15"
    server = shutil.which("redis-server")
    if not server:
        die(
            "no Redis: set REDIS_URL, run one on 127.0.0.1:6379, "
            "or install it (apt-get install redis-server)"
        )
    port = free_port()
    say(f"starting a throwaway Redis on 127.0.0.1:{port}")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    atexit.register(proc.terminate)
    for _ in range(50):
        if port_open("127.0.0.1", port):
            break
        time.sleep(0.1)
    return f"redis://127.0.0.1:{port}/15"


def install_node_clients() -> None:
    """The interop tests drive authserver with node's jose/openid-client (package.json)."""
    npm = shutil.which("npm")
    if not npm:
        say("npm not found: the node interop tests will be skipped (apt-get install npm)")
        return
    lock = ROOT / "package-lock.json"
    installed = ROOT / "node_modules" / ".package-lock.json"
    if installed.exists() and lock.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    say("installing node test clients (npm ci)")
    command = [npm, "ci" if lock.exists() else "install", "--no-audit", "--no-fund"]
    if subprocess.run(command, cwd=ROOT, check=False, stdout=subprocess.DEVNULL).returncode:
        say("npm could not install the node test clients: the node interop tests will be skipped")


def step(title: str, command: list[str], env: dict[str, str]) -> None:
    say(title)
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        say(f"FAILED: {title} (exit {result.returncode})")
        raise SystemExit(result.returncode)


def main() -> None:
    env = dict(os.environ)
    env["DATABASE_URL"] = find_postgres()
    env["REDIS_URL"] = find_redis()
    env.pop("AUTHSERVER_MODE", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    say(f"PostgreSQL {env['DATABASE_URL'].split('@')[-1]}, Redis {env['REDIS_URL'].split('@')[-1]}")
    install_node_clients()
    step("ruff check", [str(BIN / "ruff"), "check", "."], env)
    step("ruff format --check", [str(BIN / "ruff"), "format", "--check", "."], env)
    step(
        "migrations match the models",
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        {**env, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    # pytest exits 5 when it collects no test: that is a failure here too.
    if sys.argv[1:]:  # `make test ARGS=...`, `make resilience`: exactly what was asked, one process
        step("pytest", [sys.executable, "-m", "pytest", *sys.argv[1:]], env)
        return
    # The whole suite on pytest-xdist workers (AUTHSERVER_TEST_WORKERS overrides), then the tests
    # that measure time alone (marker `timing`: the side-channel probes, and tests/resilience,
    # which measures latency under faults): they need the machine quiet.
    # Two more workers than cores (3 to 6): the slow tests spend much of their time waiting for
    # the processes they start (gunicorn, Chromium, pip), and the extra workers fill that time.
    # On two cores (2026-12-06, an AMD EPYC VM) the parallel part took 13:33 on three workers and
    # 12:40 on four, both cores then busy 98 % of the time. Work stealing evens out the end
    # (tests/conftest.py puts the slow tests first).
    workers = os.environ.get("AUTHSERVER_TEST_WORKERS") or str(
        max(3, min((os.cpu_count() or 2) + 2, 6))
    )
    step(
        f"pytest on {workers} workers (all but the timing tests)",
        [sys.executable, "-m", "pytest", "-n", workers, "--dist", "worksteal", "-m", "not timing"],
        env,
    )
    step(
        "pytest, the timing tests alone (tests/resilience and the side-channel probes)",
        [sys.executable, "-m", "pytest", "-m", "timing", "-s"],
        env,
    )


if __name__ == "__main__":
    main()
