"""The first-party API against its own OpenAPI schema: schemathesis generates valid and invalid
requests for every operation of `/api/schema/` and sends them to authserver under gunicorn on
PostgreSQL, with a real bearer token from a real login, so authenticated operations are
exercised beyond their 401. Required: no 5xx, and every answer (status, content type, headers,
body) is one the schema documents. The schema is what client generators and API gateways are
built from, so an undocumented answer is a bug as much as a 500 is.

Bounded and repeatable: `--generation-deterministic`, a fixed `--seed`, a few examples per
operation, no shrinking (a failure prints the reproducing curl command instead), one worker.
The API docs must be served for this: the test sets AUTHSERVER_API_DOCS=public (the switch that
keeps them off in production) and runs in development mode.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.security.battery import serve

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Checks that judge authserver against its schema and the HTTP rules. Left out:
# - use_after_free / ensure_resource_availability / object_level_authorization: stateful
#   heuristics that assume REST resources created by POST and read back by GET; the session
#   rules they approximate are proven precisely in test_cve_2025_29928_authentik.py;
# - positive_data_acceptance: a schema-valid login with random credentials is rightly a 401.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "ignored_auth",
    ]
)


def _command(server, *, budget: int = 10) -> list[str]:
    """schemathesis on the live schema; `budget`: seconds of generation at most (the machine's
    load decides how many examples fit, the seed decides which come first)."""
    return [
        str(SCHEMATHESIS),
        "run",
        server.url + "/api/schema/",
        "--checks",
        CHECKS,
        "--max-examples",
        "6",
        "--seed",
        "20261204",
        "--generation-deterministic",  # implies no example database
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "15",
        "--max-time",
        str(budget),
        "--max-failures",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--warnings",
        "off",
    ]


def _run(server, token: str, *extra: str, budget: int = 10) -> subprocess.CompletedProcess[str]:
    """schemathesis with a bearer token (the first-party API's)."""
    return subprocess.run(
        [*_command(server, budget=budget), "--header", f"Authorization: Bearer {token}", *extra],
        # schemathesis keeps a .schemathesis/ folder in its working directory: not the checkout
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


LIMITS = {
    "AUTHSERVER_MODE": "development",
    "AUTHSERVER_API_DOCS": "public",
    # Fuzzed logins must not lock the fuzzing user out or throttle the run.
    "AUTHSERVER_LOGIN_THROTTLE_PER_IP": "100000",
    "AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN": "100000",
    "AUTHSERVER_LOCKOUT_THRESHOLD": "100000",
}
SESSION_DELETE = "DELETE /api/v1/sessions/{session_id}"
LOGOUT_ALL = "POST /api/v1/auth/logout-all"


def _passed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_first_party_api_conforms_to_its_schema_under_fuzzing(child_env, settings):
    """OpenAPI 3 conformance (issue 13 item 3): every operation of /api/schema/, fuzzed with a
    valid bearer token, answers without 5xx and as the schema documents. logout-all ends the
    session the token belongs to, so it runs last with a token of its own; DELETE
    /sessions/{id} runs here without the content-type check (see the xfail below)."""
    with serve(child_env, settings, **LIMITS) as server:
        schema = server.api("GET", "/api/schema/")
        assert schema.status_code == 200, schema.text[:300]
        token = server.tokens()["access_token"]
        _passed(
            _run(
                server,
                token,
                "--exclude-name",
                SESSION_DELETE,
                "--exclude-name",
                LOGOUT_ALL,
                budget=40,
            )
        )
        _passed(
            _run(
                server,
                token,
                "--include-name",
                SESSION_DELETE,
                "--exclude-checks",
                "content_type_conformance",
            )
        )
        _passed(_run(server, server.tokens()["access_token"], "--include-name", LOGOUT_ALL))


def test_session_delete_answers_json_for_any_path_value(child_env, settings):
    """OpenAPI 3 conformance, ST105: DELETE /api/v1/sessions/{session_id} answers with a
    documented content type (JSON) for any path value schemathesis sends."""
    with serve(child_env, settings, **LIMITS) as server:
        _passed(_run(server, server.tokens()["access_token"], "--include-name", SESSION_DELETE))


def test_oauth_endpoints_conform_to_the_schema_with_a_real_client(child_env, settings):
    """Issue 18.5: the OAuth back channel (token, revocation, introspection: form bodies) is in
    the schema and answers as it documents when a real confidential client authenticates with
    HTTP Basic, so schemathesis gets past client authentication to the grants' own checks."""
    import base64

    from oauth.clients import client_create

    with serve(child_env, settings, **LIMITS) as server:
        created = client_create(
            name="Fuzzed",
            client_type="confidential",
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
            redirect_uris=["https://app.example.com/callback"],
            scopes=["openid", "orders:read"],
            is_resource_server=True,
        )
        raw = f"{created.client.client_id}:{created.secret}".encode()
        basic = "Basic " + base64.b64encode(raw).decode()
        # With the client's credentials.
        command_header = ["--header", f"Authorization: {basic}"]
        result = subprocess.run(
            [*_command(server, budget=30), *command_header, "--include-tag", "OAuth 2.0"],
            cwd=tempfile.gettempdir(),
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        _passed(result)
        assert "3 selected" in result.stdout, result.stdout[-2000:]
