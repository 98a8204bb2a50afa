"""deploy/nginx.conf for real: nginx terminating TLS on loopback in front of two gunicorn
instances (the compose layout, with loopback ports and a throwaway certificate)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests

from tests.deploy.validate import validate_deploy as vd
from tests.live import free_port
from tests.scale.cluster import two_instances

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def nginx_running(tmp_path, upstreams: list[str], edit=lambda text: text):
    """deploy/nginx.conf (passed through `edit`) on loopback ports in front of `upstreams`.
    Yields the URLs, the CA file and a function returning nginx's output (error and access log)
    so far."""
    nginx = shutil.which("nginx")
    if nginx is None or shutil.which("openssl") is None:
        pytest.skip("nginx or openssl is not installed (apt-get install nginx)")
    vd.make_test_certificate(tmp_path / "tls")
    http_port, https_port = free_port(), free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        edit(
            vd.nginx_local_config(
                (vd.DEPLOY / "nginx.conf").read_text(),
                upstreams=upstreams,
                http_port=http_port,
                https_port=https_port,
                tls_dir=tmp_path / "tls",
            )
        )
    )
    log = tmp_path / "nginx.out"
    globals_ = f"pid {tmp_path}/nginx.pid; daemon off;"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(conf), "-g", globals_],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"https://localhost:{https_port}"
        ca = str(tmp_path / "tls/fullchain.pem")
        deadline = time.monotonic() + 10
        while True:
            try:
                # nginx's own answer (404), whatever the upstreams do.
                requests.get(base + "/metrics", verify=ca, timeout=2)
                break
            except requests.RequestException:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield {
            "https": base,
            "http": f"http://localhost:{http_port}",
            "http_port": http_port,
            "https_port": https_port,
            "ca": ca,
            "output": lambda: log.read_text(errors="replace"),
        }
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def nginx_in_front(child_env, tmp_path):
    env = {
        **child_env,
        # nginx is on loopback, like the client here: the instances trust it for X-Forwarded-*.
        "AUTHSERVER_TRUSTED_PROXIES": "127.0.0.1",
        "AUTHSERVER_SSL_REDIRECT": "true",
        "AUTHSERVER_LOG_FORMAT": "json",
        # authserver's own HSTS header (nginx adds its own only where authserver sent none).
        "AUTHSERVER_HSTS_SECONDS": "600",
    }
    with contextlib.ExitStack() as stack:
        a, b = stack.enter_context(two_instances(env, tmp_path))
        front = stack.enter_context(
            nginx_running(tmp_path, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
        )
        yield {**front, "instances": (a, b)}


def test_tls_termination_balancing_and_forwarded_headers(nginx_in_front):
    base, ca = nginx_in_front["https"], nginx_in_front["ca"]
    a, b = nginx_in_front["instances"]

    redirect = requests.get(
        nginx_in_front["http"] + "/login?x=1", allow_redirects=False, timeout=10
    )
    assert redirect.status_code == 308
    # The host and the published HTTPS port that pairs with the HTTP port used.
    https_port = nginx_in_front["https_port"]
    assert redirect.headers["Location"] == f"https://localhost:{https_port}/login?x=1"

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


NGINX_HSTS = "max-age=31536000; includeSubDomains"


def headers_named(response: requests.Response, name: str) -> list[str]:
    return response.raw.headers.getlist(name)


def test_redirect_keeps_the_method_the_host_and_the_port(nginx_in_front):
    http, https_port = nginx_in_front["http"], nginx_in_front["https_port"]
    posted = requests.post(
        http + "/oauth/token", data={"grant_type": "x"}, allow_redirects=False, timeout=10
    )
    assert posted.status_code == 308  # a POST stays a POST
    assert posted.headers["Location"] == f"https://localhost:{https_port}/oauth/token"
    # A Host without a port (the standard port 80) goes to the standard HTTPS port.
    plain = requests.get(
        http + "/login?next=/x", headers={"Host": "id.example.com"}, allow_redirects=False,
        timeout=10,
    )  # fmt: skip
    assert plain.status_code == 308
    assert plain.headers["Location"] == "https://id.example.com/login?next=/x"


def test_hsts_on_every_response_and_permissions_policy_on_pages(nginx_in_front):
    base, ca = nginx_in_front["https"], nginx_in_front["ca"]
    jwks = requests.get(base + "/.well-known/jwks.json", verify=ca, timeout=10)
    assert jwks.status_code == 200
    # authserver's own header, and only that one.
    assert headers_named(jwks, "Strict-Transport-Security") == ["max-age=600"]
    assert headers_named(jwks, "Permissions-Policy") == []  # JSON, not a page
    # nginx's own answers carry nginx's.
    hidden = requests.get(base + "/metrics", verify=ca, timeout=10)
    assert hidden.status_code == 404
    assert headers_named(hidden, "Strict-Transport-Security") == [NGINX_HSTS]
    page = requests.get(base + "/login", verify=ca, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert headers_named(page, "Strict-Transport-Security") == ["max-age=600"]
    (policy,) = headers_named(page, "Permissions-Policy")
    assert "camera=()" in policy and "geolocation=()" in policy
    # The app's own HTTPS redirect (a plain-HTTP request straight to an instance) is 308 too.
    a, _ = nginx_in_front["instances"]
    direct = requests.post(a.url + "/oauth/token", allow_redirects=False, timeout=10)
    assert direct.status_code == 308
    assert direct.headers["Location"].startswith("https://")


SECRET = "Zq8pSECRETcode"


def check_unavailable_answers(front, status: int) -> None:
    base, ca = front["https"], front["ca"]
    token = requests.post(
        base + f"/oauth/token?code={SECRET}", data={"grant_type": "authorization_code"},
        verify=ca, timeout=30,
    )  # fmt: skip
    api = requests.get(base + f"/api/v1/me?access_token={SECRET}", verify=ca, timeout=30)
    for response in (token, api):
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == "temporarily_unavailable"
        assert response.headers["Cache-Control"] == "no-store"
        assert headers_named(response, "Strict-Transport-Security") == [NGINX_HSTS]
        assert response.headers["X-Request-ID"]
        assert headers_named(response, "Permissions-Policy") == []
        if status != 504:
            assert response.headers["Retry-After"] == "5"
    page = requests.get(base + f"/login?next={SECRET}", verify=ca, timeout=30)
    assert page.status_code == status
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    assert headers_named(page, "Strict-Transport-Security") == [NGINX_HSTS]
    assert "camera=()" in page.headers["Permissions-Policy"]
    # A client asking for the error page itself gets nothing special.
    direct = requests.get(base + f"/_authserver/{status}.json", verify=ca, timeout=30)
    assert direct.status_code == 404


def test_no_instance_answering_is_a_json_502_and_the_error_log_has_no_query(tmp_path):
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]  # nothing listens
    with nginx_running(tmp_path / "crit", dead) as front:
        check_unavailable_answers(front, 502)
        time.sleep(0.3)
        output = front["output"]()
    assert '"status":502' in output  # the access log has the failure, by path
    assert SECRET not in output
    # The check can fail: at nginx's usual level the error log quotes the query string.
    with nginx_running(
        tmp_path / "warn",
        dead,
        edit=lambda text: text.replace(
            "error_log /dev/stderr crit;", "error_log /dev/stderr warn;"
        ),
    ) as front:
        requests.get(front["https"] + f"/login?next={SECRET}", verify=front["ca"], timeout=30)
        time.sleep(0.3)
        assert SECRET in front["output"]()


def test_an_instance_that_does_not_answer_in_time_is_a_json_504(tmp_path):
    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        with nginx_running(
            tmp_path,
            [address, address],
            # A short read timeout; and never "no live upstreams" (502) after the timeouts.
            edit=lambda text: text.replace(
                "proxy_read_timeout 35s;", "proxy_read_timeout 1s;"
            ).replace("max_fails=2", "max_fails=0"),
        ) as front:
            check_unavailable_answers(front, 504)
            assert SECRET not in front["output"]()
    finally:
        silent.close()
