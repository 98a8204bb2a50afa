"""Database timeouts (issue 19.3): serving processes get a statement_timeout and a lock_timeout,
management commands their own (none by default), and a bad value stops the start with one line.
The stalled-database behaviour itself (503 within about 2 s, JWKS and /healthz unaffected,
/readyz reporting it) is driven by tests/resilience/test_resilience.py (PostgreSQL paused)."""

from __future__ import annotations

import subprocess

import pytest

from tests.live import BIN, GUNICORN_CONF, ROOT, base_env, manage, run_python

SHOW = (
    "import django; django.setup()\n"
    "from django.db import connection\n"
    "with connection.cursor() as c:\n"
    "    c.execute('SHOW statement_timeout'); s = c.fetchone()[0]\n"
    "    c.execute('SHOW lock_timeout'); l = c.fetchone()[0]\n"
    "print(s, l)\n"
)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("AUTHSERVER_DB_STATEMENT_TIMEOUT_MS", "0", "must be at least 1"),
        ("AUTHSERVER_DB_STATEMENT_TIMEOUT_MS", "-5", "must be at least 1"),
        ("AUTHSERVER_DB_LOCK_TIMEOUT_MS", "0", "must be at least 1"),
        ("AUTHSERVER_DB_STATEMENT_TIMEOUT_MS", "30000", "below AUTHSERVER_WORKER_TIMEOUT"),
        ("AUTHSERVER_DB_LOCK_TIMEOUT_MS", "45000", "below AUTHSERVER_WORKER_TIMEOUT"),
        ("AUTHSERVER_DB_STATEMENT_TIMEOUT_MS", "soon", "must be an integer"),
        ("DATABASE_CONNECT_TIMEOUT", "30", "below AUTHSERVER_WORKER_TIMEOUT"),
        ("AUTHSERVER_PASSWORD_HASH_CONCURRENCY", "0", "must be at least 1"),
    ],
)
def test_a_bad_timeout_stops_manage_py_check_with_one_line(variable, value, says):
    result = manage("check", env=base_env(**{variable: value}))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"authserver: configuration error: {variable} ")
    assert says in lines[0]


def test_a_bad_timeout_stops_gunicorn_before_it_listens():
    env = base_env(AUTHSERVER_DB_STATEMENT_TIMEOUT_MS="0")
    result = subprocess.run(
        [str(BIN / "gunicorn"), "--config", str(GUNICORN_CONF), "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert (
        "authserver: configuration error: AUTHSERVER_DB_STATEMENT_TIMEOUT_MS must be at least 1"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_serving_connections_get_the_timeouts_and_commands_their_own(db):
    # Not a management command: what gunicorn's workers get.
    served = run_python("-c", SHOW, env=base_env())
    assert served.returncode == 0, served.stderr
    assert served.stdout.split() == ["1500ms", "1s"]
    tuned = run_python(
        "-c",
        SHOW,
        env=base_env(AUTHSERVER_DB_STATEMENT_TIMEOUT_MS="800", AUTHSERVER_DB_LOCK_TIMEOUT_MS="300"),
    )
    assert tuned.stdout.split() == ["800ms", "300ms"], tuned.stderr
    # manage.py commands (migrate, the purges): none by default, or their own values.
    command = manage("shell", "-c", SHOW.split("\n", 1)[1], env=base_env())
    assert command.returncode == 0, command.stderr
    assert command.stdout.split()[-2:] == ["0", "0"]
    tuned = manage(
        "shell",
        "-c",
        SHOW.split("\n", 1)[1],
        env=base_env(AUTHSERVER_DB_COMMAND_STATEMENT_TIMEOUT_MS="600000"),
    )
    assert tuned.stdout.split()[-2:] == ["10min", "0"], tuned.stderr
