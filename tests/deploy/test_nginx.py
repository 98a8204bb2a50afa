"""deploy/nginx.conf for real: nginx terminating TLS on loopback in front of two gunicorn
instances (the compose layout, with loopback ports and a throwaway certificate)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time

import pytest
import requests

from tests.deploy.validate import validate_deploy as vd
from tests.live import free_port
from tests.scale.cluster import two_instances

pytestmark = pytest.mark.slow


@pytest.fixture
def nginx_in_front(child_env, tmp_path):
    nginx = shutil.which("nginx")
    if nginx is None or shutil.which("openssl") is None:
        pytest.skip("nginx or openssl is not installed (apt-get install nginx)")
    env = {
        **child_env,
        # nginx is on loopback, like the client here: the instances trust it for X-Forwarded-*.
        "AUTHSERVER_TRUSTED_PROXIES": "127.0.0.1",
        "AUTHSERVER_SSL_REDIRECT": "true",
        "AUTHSERVER_LOG_FORMAT": "json",
    }
    with contextlib.ExitStack() as stack:
        a, b = stack.enter_context(two_instances(env, tmp_path))
        vd.make_test_certificate(tmp_path / "tls")
        http_port, https_port = free_port(), free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            vd.nginx_local_config(
                (vd.DEPLOY / "nginx.conf").read_text(),
                upstreams=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
                http_port=http_port,
                https_port=https_port,
                tls_dir=tmp_path / "tls",
            )
        )
        globals_ = f"pid {tmp_path}/nginx.pid; daemon off;"
        proc = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(conf), "-g", globals_],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

        stack.callback(stop)
        base = f"https://localhost:{https_port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                requests.get(
                    base + "/healthz", verify=str(tmp_path / "tls/fullchain.pem"), timeout=2
                )
                break
            except requests.RequestException:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield {
            "https": base,
            "http": f"http://localhost:{http_port}",
            "ca": str(tmp_path / "tls/fullchain.pem"),
            "instances": (a, b),
        }


def test_tls_termination_balancing_and_forwarded_headers(nginx_in_front):
    base, ca = nginx_in_front["https"], nginx_in_front["ca"]
    a, b = nginx_in_front["instances"]

    redirect = requests.get(
        nginx_in_front["http"] + "/login?x=1", allow_redirects=False, timeout=10
    )
    assert redirect.status_code == 308
    assert redirect.headers["Location"].startswith("https://localhost/login?x=1")

    ids = []
    for _ in range(8):
        response = requests.get(base + "/.well-known/jwks.json", verify=ca, timeout=10)
        assert response.status_code == 200, response.text
        ids.append(response.headers["X-Request-ID"])
    # Served as HTTPS (authserver redirects plain HTTP): X-Forwarded-Proto from nginx was
    # believed because nginx is a trusted proxy.
    me = requests.get(base + "/api/v1/me", verify=ca, timeout=10, allow_redirects=False)
    assert me.status_code == 401
    assert me.json()["error"] == "invalid_token"

    # The public proxy never exposes /metrics or /readyz (issue 14.7).
    assert requests.get(base + "/metrics", verify=ca, timeout=10).status_code == 404
    assert requests.get(base + "/readyz", verify=ca, timeout=10).status_code == 404

    # An inbound trace id goes through to the instance and back.
    traced = requests.get(
        base + "/healthz", headers={"X-Request-ID": "trace-from-edge"}, verify=ca, timeout=10
    )
    assert traced.headers["X-Request-ID"] == "trace-from-edge"

    time.sleep(0.3)
    served = {"A": 0, "B": 0}
    for name, instance in (("A", a), ("B", b)):
        for line in instance.output().splitlines():
            if '"gunicorn.access"' in line:
                entry = json.loads(line)
                if entry["request_id"] in ids:
                    served[name] += 1
                    assert entry["http"]["scheme"] == "https"
    assert served["A"] > 0 and served["B"] > 0, served  # both instances took requests
    assert served["A"] + served["B"] == len(ids)
