"""deploy/gunicorn.conf.py: values from the settings module, one-line refusal of bad
configuration, JSON access log without query strings, proxy trust tied to the rate limiter's."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests

from tests.live import BIN, GUNICORN_CONF, ROOT, Gunicorn, base_env, run_python

pytestmark = pytest.mark.slow

READ_CONF = """
import json, os, runpy, sys
if len(sys.argv) > 1:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: int(sys.argv[1])])
conf = runpy.run_path(CONF_PATH)
print(json.dumps({k: conf[k] for k in (
    "bind", "workers", "threads", "worker_class", "timeout", "graceful_timeout", "keepalive",
    "preload_app", "forwarded_allow_ips", "secure_scheme_headers", "forwarder_headers",
    "accesslog", "control_socket_disable", "wsgi_app", "max_requests",
)}))
""".replace("CONF_PATH", repr(str(GUNICORN_CONF)))


def read_conf(env: dict[str, str], *, cpus: int | None = None) -> dict:
    """deploy/gunicorn.conf.py's values, read in a process limited to the first `cpus` CPUs."""
    result = run_python("-c", READ_CONF, *([str(cpus)] if cpus else []), env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_values_come_from_the_settings_module():
    conf = read_conf(
        base_env(
            AUTHSERVER_TRUSTED_PROXIES="10.1.2.3/8,127.0.0.1,::1,unix",
            AUTHSERVER_WORKERS="3",
            AUTHSERVER_THREADS="6",
            AUTHSERVER_BIND="0.0.0.0:8000,unix:/run/authserver.sock",
            AUTHSERVER_GRACEFUL_TIMEOUT="20",
        )
    )
    # Exact networks, as gunicorn requires (the settings accept host bits, as ipaddress does);
    # "unix" is not for gunicorn, which trusts a Unix-socket peer anyway.
    assert conf["forwarded_allow_ips"] == "10.0.0.0/8,127.0.0.1/32,::1/128"
    assert conf["workers"] == 3 and conf["threads"] == 6 and conf["worker_class"] == "gthread"
    assert conf["bind"] == ["0.0.0.0:8000", "unix:/run/authserver.sock"]
    assert conf["graceful_timeout"] == 20 and conf["timeout"] == 30
    assert conf["preload_app"] is True
    assert conf["secure_scheme_headers"] == {"X-FORWARDED-PROTO": "https"}
    assert conf["forwarder_headers"] == ""
    assert conf["accesslog"] == "-"
    assert conf["control_socket_disable"] is True
    assert conf["wsgi_app"] == "authserver.wsgi:application"


PRE_FORK = """
import gc, runpy
conf = runpy.run_path(CONF_PATH)
before = gc.get_freeze_count()
conf["pre_fork"](None, None)
print(before, gc.get_freeze_count())
""".replace("CONF_PATH", repr(str(GUNICORN_CONF)))


def test_pre_fork_freezes_the_preloaded_objects():
    result = run_python("-c", PRE_FORK, env=base_env())
    assert result.returncode == 0, result.stderr
    before, after = map(int, result.stdout.split()[-2:])
    assert before == 0 and after > 10_000  # settings, Django and the app, imported by the conf


def test_no_trusted_proxy_means_no_forwarded_header_is_believed():
    conf = read_conf(base_env(AUTHSERVER_TRUSTED_PROXIES=""))
    assert conf["forwarded_allow_ips"] == ""  # not gunicorn's default of 127.0.0.1,::1


def test_workers_default_to_the_cpus_this_process_may_use():
    env = base_env()
    env.pop("AUTHSERVER_WORKERS", None)
    assert read_conf(env, cpus=1)["workers"] == 1  # one process per CPU
    if len(os.sched_getaffinity(0)) >= 2:
        assert read_conf(env, cpus=2)["workers"] == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHSERVER_WORKERS", "many"),
        ("AUTHSERVER_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("AUTHSERVER_BIND", "localhost"),
        ("SECRET_KEY", "<unset>"),
    ],
)
def test_configuration_error_stops_the_master_with_one_line(variable, value):
    env = base_env(
        AUTHSERVER_MODE="production",
        SECRET_KEY="x" * 20 + "yz" * 20 + "0123456789",
        ALLOWED_HOSTS="id.example.com",
        AUTHSERVER_ISSUER="https://id.example.com",
        AUTHSERVER_BIND="127.0.0.1:0",
    )
    env[variable] = value
    if value == "<unset>":
        del env[variable]
    result = subprocess.run(
        [str(BIN / "gunicorn"), "--config", str(GUNICORN_CONF)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"authserver: configuration error: {variable} ")
    assert "Traceback" not in result.stderr


def access_lines(output: str) -> list[dict]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{") and '"gunicorn.access"' in line:
            lines.append(json.loads(line))
    return lines


def test_access_log_is_json_with_request_id_and_without_query_string(child_env, tmp_path):
    env = {**child_env, "AUTHSERVER_LOG_FORMAT": "json", "AUTHSERVER_METRICS_DIR": str(tmp_path)}
    with Gunicorn(env, workers=2) as server:
        response = requests.get(
            server.url + "/readyz?code=SECRET-CODE-123&state=STATE-456",
            headers={"X-Request-ID": "trace-abc.123"},
            timeout=30,
        )
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == "trace-abc.123"
        generated = requests.get(server.url + "/healthz?token=SECRET-TOKEN", timeout=10)
        time.sleep(0.3)  # the access line is written after the response
        output = server.output()
    assert "SECRET-CODE-123" not in output and "SECRET-TOKEN" not in output
    assert "STATE-456" not in output
    entries = {entry["request_id"]: entry for entry in access_lines(output)}
    first = entries["trace-abc.123"]["http"]
    assert first["path"] == "/readyz" and first["status"] == 200 and first["method"] == "GET"
    assert first["duration_ms"] > 0
    assert entries[generated.headers["X-Request-ID"]]["http"]["path"] == "/healthz"
    # Application lines are JSON too and carry the id of the request they were logged in: the
    # first /readyz created the first signing key and logged it.
    app_lines = [json.loads(line) for line in output.splitlines() if '"logger":"authserver' in line]
    key_lines = [line for line in app_lines if line["logger"] == "authserver.keys"]
    assert key_lines and all(line["request_id"] == "trace-abc.123" for line in key_lines)
    audit = [line for line in app_lines if line["logger"] == "authserver.audit"]
    assert audit and audit[0]["data"]["event"] == "key.rotated"


def test_forwarded_proto_is_believed_only_from_trusted_proxies(child_env, tmp_path):
    headers = {"X-Forwarded-Proto": "https"}
    base = {**child_env, "AUTHSERVER_SSL_REDIRECT": "true", "AUTHSERVER_METRICS_DIR": str(tmp_path)}
    with Gunicorn({**base, "AUTHSERVER_TRUSTED_PROXIES": ""}, workers=1) as server:
        spoofed = requests.get(
            server.url + "/api/v1/me", headers=headers, allow_redirects=False, timeout=10
        )
        assert spoofed.status_code == 308  # still plain HTTP: the header was ignored
        # Probes and scrapes are answered over plain HTTP, without the redirect.
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    with Gunicorn({**base, "AUTHSERVER_TRUSTED_PROXIES": "127.0.0.1"}, workers=1) as server:
        proxied = requests.get(
            server.url + "/api/v1/me", headers=headers, allow_redirects=False, timeout=10
        )
        assert proxied.status_code == 401  # served as HTTPS: on to authentication


def healthz_count(url: str) -> float:
    body = requests.get(url + "/metrics", timeout=10).text
    for line in body.splitlines():
        if line.startswith("authserver_http_request_duration_seconds_count") and (
            'route="healthz"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_sum_every_worker(child_env, tmp_path):
    env = {**child_env, "AUTHSERVER_METRICS_DIR": str(tmp_path / "metrics")}
    with Gunicorn(env, workers=2) as server:
        before = healthz_count(server.url)
        for _ in range(30):
            requests.get(server.url + "/healthz", timeout=10)
        # Whichever worker answers the scrape, it reports the instance's total.
        totals = {healthz_count(server.url) for _ in range(10)}
        assert totals == {before + 30}
        pids = {path.stem.rsplit("_", 1)[1] for path in (tmp_path / "metrics").glob("*.db")}
        assert len(pids) >= 2  # both workers wrote values


def test_production_instance_answers_probes_by_address_only(child_env, tmp_path):
    """What an orchestrator sees: production settings (HTTPS redirect, ALLOWED_HOSTS), probed
    over plain HTTP at the instance's own address."""
    env = {
        **child_env,
        "AUTHSERVER_MODE": "production",
        "ALLOWED_HOSTS": "id.example.com",
        "AUTHSERVER_ISSUER": "https://id.example.com",
        "AUTHSERVER_METRICS_DIR": str(tmp_path),
    }
    with Gunicorn(env, workers=1) as server:  # Host: 127.0.0.1:<port>
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
        ready = requests.get(server.url + "/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 200
        page = requests.get(
            server.url + "/.well-known/jwks.json", timeout=10, allow_redirects=False
        )
        assert page.status_code in (308, 400)  # everything else: HTTPS and a known host only
        proxied = requests.get(
            server.url + "/.well-known/jwks.json",
            headers={"Host": "id.example.com"},
            timeout=10,
            allow_redirects=False,
        )
        assert proxied.status_code == 308  # the method and body are kept
        assert proxied.headers["Location"] == "https://id.example.com/.well-known/jwks.json"
