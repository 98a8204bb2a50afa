"""bench/run.py --crosscheck (the table against wrk) and what keeps its accounting honest: every
PostgreSQL backend pinned to the server core as soon as it appears, and a wrk refresh chain
that never runs out of live tokens. Nothing here depends on timing."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
from types import SimpleNamespace

import psycopg
import pytest

from bench import cpu, load
from bench.crosscheck import wrk_errors
from bench.run import SERVER_APP_NAME, Server
from tests.bench import bench_smoke

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:40000/api/v1/auth/refresh
  1 threads and 8 connections
  812 requests in 2.00s, 1.02MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:    405.90
refresh chain: 4 failed responses
"""


def test_wrk_errors_count_failed_answers_and_socket_errors():
    assert wrk_errors(WRK_OUTPUT) == 5 + 3
    assert wrk_errors("Requests/sec: 100\npost: 0 failed responses\n") == 0
    # A script's own count (which includes non-2xx) is used when it is the larger.
    assert wrk_errors("login: 7 failed responses\n  Non-2xx or 3xx responses: 2\n") == 7


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_the_generator_calls_tick_while_its_virtual_users_run():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    ticks = []
    try:
        result = load.run(
            httpd.server_address[1], load.healthz(), [None, None], 0.4, tick=lambda: ticks.append(1)
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.errors == 0 and result.served > 0
    assert len(ticks) >= 4  # every load.TICK_SECONDS (0.05 s) over 0.4 s


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two cores")
def test_a_backend_that_appears_during_a_run_is_pinned_to_the_server_core(django_db_blocker):
    from tests.conftest import _test_database_url

    with django_db_blocker.unblock():
        url = _test_database_url()
    cores = sorted(os.sched_getaffinity(0))
    plan = cpu.CorePlan(server=frozenset(cores[:1]), client=frozenset(cores[1:2]))
    gunicorn = SimpleNamespace(port=0, proc=SimpleNamespace(pid=os.getpid()))
    server = Server(gunicorn, url, plan)
    try:
        # A gunicorn thread's first query opens a connection: PostgreSQL forks a backend for it.
        with psycopg.connect(url, application_name=SERVER_APP_NAME) as backend_connection:
            pid = backend_connection.info.backend_pid
            assert os.sched_getaffinity(pid) != plan.server
            server.pin_backends()  # what load.run's tick and the wrk runs call
            assert os.sched_getaffinity(pid) == plan.server
    finally:
        server.close()


NO_WRK = "wrk is not installed (apt-get install wrk)"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason=NO_WRK)
def test_crosscheck_smoke_run_has_no_errors_with_either_generator(child_env, tmp_path):
    """The refresh chain under wrk has more live tokens than connections (wrk builds one request
    more than it sends; with a token per connection one connection sends a dead token, answered
    401, and the run exits 1)."""
    out = tmp_path / "crosscheck.json"
    result = bench_smoke(
        child_env, "--scenarios", "refresh,introspection", "--crosscheck", str(out)
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "wrk/ours" in result.stdout
    pairs = json.loads(out.read_text())
    assert {(p["scenario"], p["concurrency"]) for p in pairs} == {
        (name, level) for name in ("refresh", "introspection") for level in (1, 2)
    }
    for pair in pairs:
        assert pair["ours_errors"] == pair["wrk_errors"] == 0, pair
        assert pair["ours_ms"] > 0 and pair["wrk_ms"] > 0, pair
