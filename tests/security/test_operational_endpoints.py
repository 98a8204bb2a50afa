"""Issue 14.6 (API schema and docs off in production, fixed versions, nothing reflected into
headers), 14.7 (/readyz details for allowed callers only, no key store reload per call) and
14.10 (CSP on Django's error pages and the CSRF failure page; no `Server: gunicorn`), against
gunicorn in production mode where the rule is reachable over HTTP."""

from __future__ import annotations

import secrets
import socket
import threading
import time

import pytest
import requests
from django.db import connection, transaction
from django.test import RequestFactory
from django.urls import get_resolver

from accounts.models import User
from authserver import api_docs, pages
from authserver.pages import CONTENT_SECURITY_POLICY
from tests.conftest import PASSWORD
from tests.live import base_env, run_python
from tests.security.production_server import HOST, ISSUER, PROXY_HEADERS, production_gunicorn
from tokens.models import SigningKey

TIMEOUT = 20
METRICS_TOKEN = "m" * 20 + secrets.token_hex(16)


def _get(url: str, path: str, **kw) -> requests.Response:
    headers = {**PROXY_HEADERS, **kw.pop("headers", {})}
    return requests.get(url + path, headers=headers, timeout=TIMEOUT, allow_redirects=False, **kw)


def _raw_get(url: str, target: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: id.example.com\r\n"
            b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _staff_session(url: str) -> requests.Session:
    """A staff account signed in through the admin's login form (production cookies are
    Secure and __Host-: requests sends them back over plain HTTP to 127.0.0.1 only if told to,
    so the cookies are copied by hand)."""
    session = requests.Session()
    session.headers.update(PROXY_HEADERS)
    form = session.get(url + "/admin/login/", timeout=TIMEOUT)
    assert form.status_code == 200, form.text[:200]
    csrf = form.cookies["__Host-authserver-csrf"]
    response = session.post(
        url + "/admin/login/?next=/admin/",
        data={"username": "root", "password": PASSWORD, "csrfmiddlewaretoken": csrf},
        headers={"Referer": "https://id.example.com/admin/login/"},
        cookies={"__Host-authserver-csrf": csrf},
        timeout=TIMEOUT,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:300]
    session.cookies.clear()
    session.headers["Cookie"] = (
        f"__Host-authserver-session={response.cookies['__Host-authserver-session']}"
    )
    return session


@pytest.fixture
def staff(transactional_db, settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    User.objects.create_user("plain", "plain@example.com", PASSWORD)


# --- 14.6: API schema and docs ---------------------------------------------------------------


def test_api_schema_and_docs_are_off_in_production_by_default(child_env, tmp_path):
    """Issue 14.6: /api/schema/ and /api/docs/ were public in production."""
    with production_gunicorn(child_env, tmp_path) as server:
        for path in ("/api/schema/", "/api/docs/", "/api/schema/?format=json"):
            response = _get(server.url, path)
            assert response.status_code == 404, (path, response.text[:200])
            assert response.json()["error"] == "not_found"
            assert "openapi" not in response.text.lower()


def test_api_docs_staff_mode_admits_staff_only(child_env, tmp_path, staff):
    """Issue 14.6: AUTHSERVER_API_DOCS=on in production means staff only."""
    with production_gunicorn(child_env, tmp_path, AUTHSERVER_API_DOCS="on") as server:
        anonymous = _get(server.url, "/api/schema/")
        assert anonymous.status_code == 403 and anonymous.json()["error"] == "access_denied"
        assert _get(server.url, "/api/docs/").status_code == 403
        session = _staff_session(server.url)
        schema = session.get(server.url + "/api/schema/?format=json", timeout=TIMEOUT)
        assert schema.status_code == 200, schema.text[:300]
        assert "/api/v1/auth/login" in schema.json()["paths"]
        docs = session.get(server.url + "/api/docs/", timeout=TIMEOUT)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()


@pytest.mark.parametrize(
    "version",
    [b"1%0d%0aSet-Cookie:%20x=1", b"1%0aX:%20y", b'1"%3b%20filename="evil.html', b"2", b"%00"],
)
def test_api_schema_versions_are_a_fixed_set_never_reflected(child_env, tmp_path, version):
    """Issue 14.6: `?version=` went into Content-Disposition: CR/LF gave a 500, a quote broke the
    header. Unknown versions are a JSON 404 now and nothing of them reaches a header."""
    with production_gunicorn(child_env, tmp_path, AUTHSERVER_API_DOCS="public") as server:
        raw = _raw_get(server.url, b"/api/schema/?version=" + version)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404"), raw[:300]
        assert b'"error": "not_found"' in body or b'"error":"not_found"' in body
        lowered = head.lower()
        assert b"set-cookie: x=1" not in lowered and b"\r\nx: y" not in lowered
        assert b"evil" not in head and b"content-disposition" not in lowered
        good = _get(server.url, "/api/schema/?version=1")
        assert good.status_code == 200
        assert good.headers["Content-Disposition"] == 'inline; filename="authserver-api-v1.yaml"'


def test_api_schema_is_generated_once_per_process(settings, db):
    """Issue 14.6: each call generated the whole schema again (~13 x /healthz)."""
    settings.AUTHSERVER_API_DOCS = "public"
    api_docs.api_schema_document.cache_clear()
    request = RequestFactory().get("/api/schema/", {"format": "json"})
    request.user = None
    first = api_docs.api_schema(request)
    assert first.status_code == 200
    started = time.perf_counter()
    for _ in range(20):
        assert api_docs.api_schema(request).content == first.content
    assert api_docs.api_schema_document.cache_info().misses == 1
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("value", "production", "expected"),
    [
        (None, False, "public"),
        (None, True, "off"),
        ("on", True, "staff"),
        ("on", False, "public"),
        ("staff", True, "staff"),
        ("public", True, "public"),
    ],
)
def test_api_docs_setting(value, production, expected):
    """Issue 14.6: the default follows the mode; "on" in production is staff only."""
    env = {"AUTHSERVER_MODE": "development"}
    if production:
        env = {"AUTHSERVER_MODE": "production", "ALLOWED_HOSTS": HOST, "AUTHSERVER_ISSUER": ISSUER}
    if value is not None:
        env["AUTHSERVER_API_DOCS"] = value
    result = run_python(
        "-c",
        "import authserver.settings as s; print(s.AUTHSERVER_API_DOCS)",
        env=base_env(**env),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_api_docs_setting_refuses_unknown_values():
    result = run_python(
        "-c", "import authserver.settings", env=base_env(AUTHSERVER_API_DOCS="sometimes")
    )
    assert result.returncode == 2
    assert "AUTHSERVER_API_DOCS must be off, staff, public or on" in result.stderr


# --- 14.7: /readyz ---------------------------------------------------------------------------


def test_readyz_details_only_for_callers_allowed_to_read_metrics(child_env, tmp_path):
    """Issue 14.7: /readyz told anyone the kid, the cache state and pending migrations. The
    rule is /metrics's: AUTHSERVER_METRICS_ALLOWED_IPS (client address under the proxy policy)
    or the bearer token."""
    with production_gunicorn(child_env, tmp_path, AUTHSERVER_METRICS_TOKEN=METRICS_TOKEN) as server:
        # Through the proxy, from outside: the real client address is not allowed.
        outside = _get(server.url, "/readyz", headers={"X-Forwarded-For": "203.0.113.9"})
        assert outside.status_code == 200
        assert outside.json() == {"status": "ok"}
        assert outside.headers["Cache-Control"].startswith("max-age=0")
        # The same outside client with the scrape token, and the proxy's own address.
        for headers in (
            {"X-Forwarded-For": "203.0.113.9", "Authorization": f"Bearer {METRICS_TOKEN}"},
            {},
        ):
            detailed = _get(server.url, "/readyz", headers=headers).json()
            assert detailed["status"] == "ready"
            assert detailed["checks"]["signing_keys"].startswith("ok (active kid ")
            assert detailed["checks"]["cache"] == "ok"
        wrong = _get(
            server.url,
            "/readyz",
            headers={"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer " + "x" * 40},
        )
        assert wrong.json() == {"status": "ok"}


def test_readyz_failure_reason_is_not_public(child_env, tmp_path):
    """Issue 14.7: a KEK mismatch ("different key-encryption key") was readable by anyone."""
    with production_gunicorn(child_env, tmp_path) as server:
        assert _get(server.url, "/readyz").status_code == 200  # creates the first key
    other_kek = secrets.token_urlsafe(32)
    with production_gunicorn(
        child_env,
        tmp_path,
        AUTHSERVER_KEY_ENCRYPTION_KEY=other_kek,
        AUTHSERVER_METRICS_TOKEN=METRICS_TOKEN,
    ) as server:
        outside = _get(server.url, "/readyz", headers={"X-Forwarded-For": "203.0.113.9"})
        assert outside.status_code == 503
        assert outside.json() == {"status": "unavailable"}
        detailed = _get(server.url, "/readyz", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert detailed.status_code == 503
        assert "key-encryption key" in detailed.json()["reason"]


def test_readyz_does_not_reload_the_key_store_on_every_call(child_env, tmp_path):
    """Issue 14.7: every /readyz reloaded the key store from the database under the key ring's
    global lock. With the signing-key table locked by another transaction, a probe that
    reloaded would hang; the memoised answer comes at once, for every caller."""
    with production_gunicorn(child_env, tmp_path) as server:
        assert _get(server.url, "/readyz").status_code == 200  # first key, first check
        time.sleep(1.2)  # past the one-second memo of the whole answer
        table = SigningKey._meta.db_table
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            answers = []

            def probe(headers):
                answers.append(
                    requests.get(
                        server.url + "/readyz", headers={**PROXY_HEADERS, **headers}, timeout=4
                    )
                )

            threads = [
                threading.Thread(target=probe, args=({"X-Forwarded-For": f"203.0.113.{i}"},))
                for i in range(10)
            ] + [threading.Thread(target=probe, args=({},))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
        assert [answer.status_code for answer in answers] == [200] * 11
        assert elapsed < 3


@pytest.mark.django_db
def test_readyz_memo_runs_no_query_for_repeated_probes(client, django_assert_num_queries):
    """Issue 14.7: repeated probes within a second share one run of the checks."""
    assert client.get("/readyz").status_code == 200
    with django_assert_num_queries(0):
        for _ in range(5):
            assert client.get("/readyz", REMOTE_ADDR="203.0.113.5").json() == {"status": "ok"}


# --- 14.10: error pages and the Server header -----------------------------------------------


def test_error_pages_carry_the_csp_and_no_server_header(child_env, tmp_path):
    """Issue 14.10: Django's 404/400 pages and the CSRF failure page had no
    Content-Security-Policy, and gunicorn sent `Server: gunicorn` on every response."""
    with production_gunicorn(child_env, tmp_path) as server:
        not_found = _get(server.url, "/no/such/page")
        assert not_found.status_code == 404
        bad_host = _get(server.url, "/login", headers={"Host": "evil.example"})
        assert bad_host.status_code == 400
        csrf = requests.post(
            server.url + "/login",
            data={"username": "x", "password": "y"},
            headers=PROXY_HEADERS,
            timeout=TIMEOUT,
            allow_redirects=False,
        )
        assert csrf.status_code == 403
        assert "This form has expired" in csrf.text
        for response in (not_found, bad_host, csrf):
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert "no-store" in response.headers["Cache-Control"]
        others = [
            not_found,
            bad_host,
            csrf,
            _get(server.url, "/healthz"),
            _get(server.url, "/.well-known/jwks.json"),
            _get(server.url, "/login"),
        ]
        for response in others:
            assert "Server" not in response.headers, response.url
        raw = _raw_get(server.url, b"/healthz")
        assert b"\r\nserver:" not in raw.lower()


@pytest.mark.parametrize(
    ("code", "view"),
    [
        (400, pages.bad_request),
        (403, pages.permission_denied),
        (404, pages.page_not_found),
        (500, pages.server_error),
    ],
)
@pytest.mark.django_db  # the error pages print the brand (branding.selectors, cache then row)
def test_every_django_error_handler_sets_the_csp(code, view):
    """Issue 14.10: a 500 or 403 page cannot be provoked over HTTP on purpose; the URLconf's
    handlers are ours and each sets the policy."""
    assert get_resolver().resolve_error_handler(code) is view
    request = RequestFactory().get("/x")
    response = view(request) if code == 500 else view(request, Exception("x"))
    assert response.status_code == code
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_database_outage_page_carries_the_csp():
    """Issue 14.10: the HTML 503 page of a database outage is an error page too."""
    from django.db import OperationalError

    from authserver.middleware import DatabaseUnavailableMiddleware

    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    request = RequestFactory().get("/login", HTTP_ACCEPT="text/html")
    page = middleware.process_exception(request, OperationalError("down"))
    assert page.status_code == 503
    assert page["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
