"""Issue 14.3 (no secret from a query string in any log line; every line names its request) and
14.5 (deeply nested JSON is a 400 in the protocol's format, never a 500), against gunicorn in
production mode, reading the server's real stdout and stderr."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
import requests

from authserver.parsers import MAX_JSON_DEPTH, json_depth_within, json_loads_bounded
from tests.security.production_server import PROXY_HEADERS, production_gunicorn

TIMEOUT = 20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: object, payload: object) -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(b"sig")]
    )


# What a careless client puts in a URL. Every value is unique, so finding it anywhere in the
# server's output means it was logged.
EMAIL = "alice.private-4f1e@example.com"
NAME = "Alicia Secretname-9d2c"
ID_TOKEN_HINT = _jwt(
    {"alg": "RS256", "kid": "kid-4f1e", "typ": "JWT"},
    {"iss": "https://id.example.com", "sub": "u-4f1e", "email": EMAIL, "name": NAME},
)
SECRETS = {
    "client_secret": "CLIENTSECRET-7c1d9a",
    "access_token": "ACCESSTOKEN-2b8e41",
    "refresh_token": "REFRESHTOKEN-93fa0c",
    "code": "AUTHCODE-5d7e22",
    "code_verifier": "CODEVERIFIER-a61b3f",
    "password": "PASSWORD-0e4c88",
    "token": "TOKEN-c3d519",
    "state": "STATE-77ab20",
    "login_hint": EMAIL,
}
QUERY = "&".join(f"{name}={value}" for name, value in SECRETS.items())
# The header of a JWT nested past the interpreter's recursion limit: PyJWT's json.loads raised
# RecursionError, which escaped as a 500 with the full URL in the log.
NESTED_JWT = _b64(b"[" * 1500) + "." + _b64(b"{}") + "." + _b64(b"sig")

# (method, path with query, extra request arguments, expected status)
REQUESTS = [
    ("POST", f"/oauth/token?{QUERY}", {"data": {"grant_type": "authorization_code"}}, 400),
    ("GET", f"/oauth/token?{QUERY}", {}, 405),
    ("POST", f"/oauth/introspect?{QUERY}", {"data": {"token": "x"}}, 400),
    ("POST", f"/oauth/revoke?{QUERY}", {"data": {"token": "x"}}, 400),
    ("GET", f"/oauth/userinfo?{QUERY}", {}, 401),
    (
        "GET",
        f"/oauth/userinfo?{QUERY}",
        {"headers": {"Authorization": f"Bearer {NESTED_JWT}"}},
        401,
    ),
    ("GET", f"/oauth/authorize?response_type=code&client_id=nope&{QUERY}", {}, 400),
    ("GET", f"/oauth/end-session?id_token_hint={ID_TOKEN_HINT}&{QUERY}", {}, 400),
    ("GET", f"/no/such/path?{QUERY}", {}, 404),
    ("DELETE", f"/.well-known/jwks.json?{QUERY}", {}, 405),
    ("POST", f"/api/v1/auth/login?{QUERY}", {"data": "not json", "json_type": True}, 400),
    ("POST", f"/api/v1/auth/refresh?{QUERY}", {"json": {"refresh_token": "A" * 43}}, 401),
]


def _send(url: str, method: str, path: str, extra: dict, request_id: str) -> requests.Response:
    extra = dict(extra)
    headers = {**PROXY_HEADERS, "X-Request-ID": request_id, **extra.pop("headers", {})}
    if extra.pop("json_type", False):
        headers["Content-Type"] = "application/json"
    return requests.request(
        method, url + path, headers=headers, timeout=TIMEOUT, allow_redirects=False, **extra
    )


def _raw(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _json_lines(output: str) -> list[dict]:
    # Other lines are Python's warnings at start-up (no staticfiles/ in this checkout).
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_no_query_string_secret_reaches_any_log_and_every_line_names_its_request(
    child_env, tmp_path, level
):
    """Issue 14.3: Django's request logger put str(request), the full URL, on every 4xx/5xx line
    (client_secret, tokens, an id_token_hint with the user's email and name) with request_id
    null; gunicorn's error log quotes request lines verbatim. Both at the production log level
    and at DEBUG."""
    sent = {}
    with production_gunicorn(child_env, tmp_path, AUTHSERVER_LOG_LEVEL=level) as server:
        for number, (method, path, extra, status) in enumerate(REQUESTS):
            request_id = f"probe-{number}"
            response = _send(server.url, method, path, extra, request_id)
            assert response.status_code == status, (method, path, response.text[:300])
            assert response.headers["X-Request-ID"] == request_id
            sent[request_id] = (method, path.split("?")[0], status)
        # Outside Django: the Host check, and a request line gunicorn itself refuses.
        disallowed = _send(
            server.url, "GET", f"/login?{QUERY}", {"headers": {"Host": "evil.example"}}, "probe-h"
        )
        assert disallowed.status_code == 400
        sent["probe-h"] = ("GET", "/login", 400)
        refused = _raw(
            server.url,
            # Not printable ASCII in the target: gunicorn quotes the whole request line.
            f"GET /oauth/token?{QUERY}&x=\xe9 HTTP/1.1\r\nHost: id.example.com\r\n\r\n".encode(
                "latin-1"
            ),
        )
        assert refused.startswith(b"HTTP/1.1 400")
        time.sleep(0.5)  # access lines are written after the response
        output = server.output()

    for name, value in SECRETS.items():
        assert value not in output, f"{name} reached the log"
    for value in (ID_TOKEN_HINT, ID_TOKEN_HINT.split(".")[1], EMAIL, NAME, NESTED_JWT[:40]):
        assert value not in output
    assert "RecursionError" not in output and '"status":500' not in output

    lines = _json_lines(output)
    gunicorn_own = {"gunicorn.error", "gunicorn.access"}
    app_lines = [line for line in lines if line["logger"] not in gunicorn_own]
    # Every line logged while serving a request names it: no null request id.
    assert app_lines and all(line["request_id"] for line in app_lines), [
        line for line in app_lines if not line["request_id"]
    ]
    by_request = {}
    for line in lines:
        by_request.setdefault(line.get("request_id"), []).append(line)
    for request_id, (method, path, status) in sent.items():
        entries = by_request.get(request_id, [])
        access = [line for line in entries if line["logger"] == "gunicorn.access"]
        assert access and access[0]["http"]["path"] == path
        assert access[0]["http"]["status"] == status
        django_lines = [line for line in entries if line["logger"].startswith("django.")]
        # Django's per-4xx warnings are off (issue 14.4: the access line already has the
        # status, a second line per bad request is an unbounded stream); any Django line that
        # is written (5xx) carries the path and the method, never the URL.
        for line in django_lines:
            if "request" in line:
                assert line["request"] == {"method": method, "path": path}
    refused_lines = [line for line in lines if "Invalid HTTP request line" in line["message"]]
    assert refused_lines and "/oauth/token?[redacted]" in refused_lines[0]["message"]


# --- 14.5: deeply nested JSON -------------------------------------------------------------

NESTED_BODIES = {
    "arrays": b"[" * 50_000,
    "objects": b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    "balanced": b"[" * 5_000 + b"]" * 5_000,
    "inside a field": b'{"username": "x", "password": ' + b"[" * 3_000 + b"]" * 3_000 + b"}",
}
JSON_ENDPOINTS = ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"]


def test_deeply_nested_json_is_400_invalid_request_on_every_json_endpoint(child_env, tmp_path):
    """Issue 14.5: `[` x 50,000 made DRF's JSONParser raise RecursionError: 500 with a
    traceback in the log. Every JSON body is parsed by BoundedJSONParser now."""
    with production_gunicorn(child_env, tmp_path) as server:
        for path in JSON_ENDPOINTS:
            for kind, body in NESTED_BODIES.items():
                response = requests.post(
                    server.url + path,
                    data=body,
                    headers={**PROXY_HEADERS, "Content-Type": "application/json"},
                    timeout=TIMEOUT,
                )
                assert response.status_code == 400, (path, kind, response.text[:200])
                assert response.json()["error"] == "invalid_request", (path, kind)
                assert response.headers["Cache-Control"] == "no-store"
        # userinfo accepts form and JSON bodies; a nested bearer token (JSON inside the JWT)
        # and a nested body are both refused without a 500.
        for headers in ({}, {"Authorization": f"Bearer {NESTED_JWT}"}):
            response = requests.post(
                server.url + "/oauth/userinfo",
                data=b"[" * 50_000,
                headers={**PROXY_HEADERS, "Content-Type": "application/json", **headers},
                timeout=TIMEOUT,
            )
            assert response.status_code == 401, response.text[:200]
            assert response.json()["error"] == "invalid_token"
        # The JSON inside JWTs at the back channel: introspection answers inactive.
        response = requests.post(
            server.url + "/oauth/introspect",
            data={"token": NESTED_JWT},
            headers=PROXY_HEADERS,
            auth=("no-such-client", "x"),
            timeout=TIMEOUT,
        )
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
        time.sleep(0.3)
        output = server.output()
    assert "Traceback" not in output and "RecursionError" not in output
    assert '"status":500' not in output


def test_json_body_over_the_size_limit_is_413(child_env, tmp_path):
    """Issue 14.5: DRF read the request stream whole, past DATA_UPLOAD_MAX_MEMORY_SIZE."""
    with production_gunicorn(child_env, tmp_path) as server:
        body = json.dumps({"username": "x", "password": "p" * (300 * 1024)})
        response = requests.post(
            server.url + "/api/v1/auth/login",
            data=body,
            headers={**PROXY_HEADERS, "Content-Type": "application/json"},
            timeout=TIMEOUT,
        )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "\\"[[[", {"k[": "]]]]"}]', 2),
        ("[[],[[]],[]]", 3),
    ],
)
def test_depth_is_measured_outside_strings(text, depth):
    """Issue 14.5: brackets inside strings do not count; siblings do not add up."""
    assert json_depth_within(text, depth)
    assert depth == 0 or not json_depth_within(text, depth - 1)


def test_bounded_loads_refuses_with_value_error():
    """Issue 14.5: callers catch ValueError; RecursionError never escapes."""
    assert json_loads_bounded(b'{"a": [1]}') == {"a": [1]}
    for text in ("[" * 50_000, "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), '["\\'):
        with pytest.raises(ValueError):
            json_loads_bounded(text)
    assert json_loads_bounded("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None


def test_depth_check_is_linear_on_hostile_input():
    """Issue 14.5: the check itself must not be the denial of service (unterminated strings
    full of escapes, deep runs, many siblings), on bodies at the 256 KiB limit."""
    hostile = [
        '"\\"' * 85_000,
        '"\\' * 128_000,
        "[" * 256_000,
        "[[]" * 85_000,
        "[]" * 128_000,
    ]
    for text in hostile:
        started = time.perf_counter()
        json_depth_within(text)
        assert time.perf_counter() - started < 0.5


def test_runserver_request_lines_lose_their_query_string(caplog):
    """Issue 14.3: `make run` serves with runserver, whose django.server logger writes each
    request line verbatim; settings.LOGGING puts the redactor on it."""
    import logging

    # settings.LOGGING was applied by django.setup().
    with caplog.at_level(logging.INFO, logger="django.server"):
        logging.getLogger("django.server").info(
            '"%s" %s %s', f"GET /oauth/token?{QUERY} HTTP/1.1", "405", "59"
        )
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "/oauth/token?[redacted]" in text
    for value in SECRETS.values():
        assert value not in text


@pytest.mark.parametrize(
    "message",
    [
        "Invalid HTTP request line: 'GET /oauth/token?client_secret=SECRET-1 HTTP/1.1'",
        'Invalid HTTP request line: "GET /x?a=b\'SECRET-1\\xe9 HTTP/1.1"',
        "Error handling request GET /oauth/end-session?id_token_hint=a.SECRET-1.c",
        "Invalid HTTP request line: 'GET http://h/p?x=\"SECRET-1\" HTTP/1.1'",
    ],
)
def test_gunicorn_messages_lose_every_query_string(message):
    """Issue 14.3: quotes inside a query string do not end the redaction early."""
    import logging

    from authserver.logs import QueryStringRedactor

    record = logging.LogRecord(
        "gunicorn.error", logging.WARNING, __file__, 1, "%s", (message,), None
    )
    QueryStringRedactor().filter(record)
    assert "SECRET-1" not in record.getMessage()
    assert "?[redacted]" in record.getMessage()
