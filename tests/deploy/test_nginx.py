"""deploy/nginx.conf for real: nginx terminating TLS on loopback in front of two gunicorn
instances (the compose layout, with loopback ports and a throwaway certificate)."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

from tests.deploy.validate import validate_deploy as vd
from tests.live import Gunicorn, free_port
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
            "conf": conf,
            # `systemctl reload nginx`: new workers with the new configuration, the old ones
            # finish what they are serving.
            "reload": lambda: proc.send_signal(signal.SIGHUP),
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
    assert '"path":"/oauth/token"' in output and '"path":"/login"' in output
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


def signin_cap() -> int:
    """deploy/nginx.conf's cap on password sign-ins in flight to the instances."""
    text = (vd.DEPLOY / "nginx.conf").read_text()
    return int(re.search(r"limit_conn authserver_signin (\d+);", text).group(1))


def test_sign_ins_beyond_the_cap_in_flight_are_refused_at_nginx_at_once(tmp_path):
    """Issue 19.2: a sign-in flood is shed at the proxy. With the cap's worth of sign-ins in
    flight (here to an instance that never answers), every further sign-in POST is answered
    503 with Retry-After by nginx at once, whichever path (API or hosted form); the first ones,
    all from one address, were passed on (no per-address limit: one office behind a NAT). Other
    requests, and sign-in pages fetched with GET, are not counted."""
    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(256)
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    cap = signin_cap()
    held: list[http.client.HTTPSConnection] = []
    try:
        with nginx_running(
            tmp_path,
            [address, address],
            edit=lambda text: text.replace(
                "proxy_read_timeout 35s;", "proxy_read_timeout 5s;"
            ).replace("max_fails=2", "max_fails=0"),
        ) as front:
            base, ca = front["https"], front["ca"]
            context = ssl.create_default_context(cafile=ca)
            port = front["https_port"]
            body = json.dumps({"username": "someone", "password": "a guess"})
            for _ in range(cap):
                connection = http.client.HTTPSConnection("localhost", port, context=context)
                connection.request(
                    "POST",
                    "/api/v1/auth/login",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                held.append(connection)
            time.sleep(0.5)  # every one reached nginx and was passed on
            started = time.monotonic()
            api = requests.post(
                base + "/api/v1/auth/login",
                json={"username": "someone", "password": "a guess"},
                verify=ca,
                timeout=30,
            )
            form = requests.post(
                base + "/login", data={"username": "someone", "password": "a guess"},
                verify=ca, timeout=30,
            )  # fmt: skip
            signup = requests.post(base + "/signup", data={}, verify=ca, timeout=30)
            took = time.monotonic() - started
            # Not counted: a page view, and another POST path (both wait on the silent
            # instance until the read timeout, 504).
            page = requests.get(base + "/login", verify=ca, timeout=30)
            token = requests.post(
                base + "/oauth/token", data={"grant_type": "x"}, verify=ca, timeout=30
            )
            held_answered = []
            for connection in held:
                connection.sock.settimeout(10)
                held_answered.append(connection.getresponse().status)
    finally:
        for connection in held:
            connection.close()
        silent.close()
    assert took < 1.0, took
    assert api.status_code == 503, api.text
    assert api.headers["Content-Type"] == "application/json"
    assert api.json()["error"] == "temporarily_unavailable"
    assert api.headers["Retry-After"] == "5"
    for response in (form, signup):
        assert response.status_code == 503
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.headers["Retry-After"] == "5"
    assert page.status_code == 504 and token.status_code == 504
    # The held sign-ins were passed on, not refused: they waited for the instance (504).
    assert held_answered == [504] * cap


def restart(instance: Gunicorn) -> Gunicorn:
    """SIGTERM `instance` (gunicorn finishes its in-flight requests) and start a new one on the
    same port once it has exited: `systemctl restart authserver@PORT`."""
    instance.__exit__(None, None, None)
    fresh = Gunicorn(instance.env, instance.workers)
    fresh.port, fresh.url = instance.port, instance.url
    return fresh.__enter__()


def fail_timeout() -> float:
    """nginx's fail_timeout for the instances: how long a refusing instance stays out."""
    text = (vd.DEPLOY / "nginx.conf").read_text()
    return float(re.search(r"fail_timeout=(\d+)s", text).group(1))


def drained(front, instance: Gunicorn, down: bool) -> None:
    """Mark `instance` down (or up again) in nginx's upstream and reload nginx."""
    conf = front["conf"]
    address = f"server 127.0.0.1:{instance.port} "
    text = conf.read_text()
    marked = text.replace(address + "max_fails", address + "down max_fails")
    conf.write_text(
        marked if down else text.replace(address + "down max_fails", address + "max_fails")
    )
    front["reload"]()
    time.sleep(1.5)


def test_rolling_restart_behind_nginx_loses_no_request(nginx_in_front):
    """README "Host install", upgrade without downtime, under steady GET and POST load through
    nginx: for each instance in turn, drain it in nginx (`down`, reload), restart it, wait for
    /readyz, put it back. No request fails or gets a 5xx. Then the same without the drain (only
    nginx's retries): no GET fails, but a POST the restarting instance had accepted and not yet
    read can fail, as nginx never resends a POST; that count is reported."""
    base, ca = nginx_in_front["https"], nginx_in_front["ca"]
    a, b = nginx_in_front["instances"]

    def under_load(steps) -> tuple[dict[str, list[int]], list[str]]:
        stop = threading.Event()
        statuses: dict[str, list[int]] = {"GET": [], "POST": []}
        failures: list[str] = []

        def load() -> None:
            # A connection per request: reloading nginx closes idle client keep-alive
            # connections, and a request sent on one just then is lost on the client's side
            # (HTTP clients retry those when idempotent); this test is about the instances.
            while not stop.is_set():
                try:
                    got = requests.get(base + "/.well-known/jwks.json", verify=ca, timeout=30)
                    statuses["GET"].append(got.status_code)
                    posted = requests.post(
                        base + "/oauth/token", data={"grant_type": "x"}, verify=ca, timeout=30
                    )
                    statuses["POST"].append(posted.status_code)
                except requests.RequestException as exc:
                    failures.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1)
            steps()
            time.sleep(1)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        return statuses, failures

    def restart_ready(instance: Gunicorn) -> Gunicorn:
        fresh = restart(instance)  # returns once /healthz answers
        assert requests.get(fresh.url + "/readyz", timeout=30).status_code == 200
        return fresh

    def drained_restarts() -> None:
        nonlocal a, b
        drained(nginx_in_front, a, down=True)
        a = restart_ready(a)
        drained(nginx_in_front, a, down=False)
        drained(nginx_in_front, b, down=True)
        b = restart_ready(b)
        drained(nginx_in_front, b, down=False)

    def plain_restarts() -> None:
        nonlocal a, b
        a = restart_ready(a)
        time.sleep(fail_timeout() + 0.5)  # nginx takes it back after fail_timeout
        b = restart_ready(b)

    try:
        statuses, failures = under_load(drained_restarts)
        assert failures == []
        assert len(statuses["POST"]) > 100
        assert set(statuses["GET"]) == {200} and set(statuses["POST"]) == {400}
        plain, plain_failures = under_load(plain_restarts)
    finally:
        for instance in (a, b):
            instance.__exit__(None, None, None)
    posts_failed = sum(1 for status in plain["POST"] if status >= 500)
    print(
        f"rolling restart, drained: {len(statuses['GET'])} GET + {len(statuses['POST'])} POST, "
        f"none failed; not drained: {len(plain['GET'])} GET (none failed) + "
        f"{len(plain['POST'])} POST, {posts_failed} answered 5xx"
    )
    assert plain_failures == []
    assert set(plain["GET"]) == {200}
    # Never both instances out at once, thanks to the wait for fail_timeout: nginx names the
    # upstream group instead of an address when no instance was left to try.
    assert '"upstream":"authserver"' not in nginx_in_front["output"]()
