"""The API guides' snippets, run as the docs show them (only the issuer address replaced) against
authserver under gunicorn on PostgreSQL (issue 18.1): docs/guides/protect-fastapi-api.md (FastAPI +
PyJWT) and docs/guides/protect-express-api.md (Express + jose under Node). A token authserver
issued passes; a token signed by another key, for another audience or issuer, tampered, unsigned,
HS256 with the public key, an ID-token-typed JWT, a malformed header, and no token at all are
refused with 401 and `WWW-Authenticate: Bearer error="invalid_token"`.

The DRF (simplejwt, PyJWT) and jose snippets are run by test_downstream_verification.py, the DRF
role permission by test_claims_for_apps.py, from the same pages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import jwt
import pytest
import requests
from django.utils import timezone

from tests.flows.test_downstream_verification import (
    ISSUER,
    attacks,
    authserver,  # noqa: F401 - the fixture: authserver under gunicorn, with a first key
    docs_snippet,
    issue,
    localised,
)
from tests.live import ROOT
from tokens import keys

pytestmark = pytest.mark.slow


def refused_requests() -> dict[str, dict[str, str]]:
    """Request headers each guide's API must answer with 401: every attack token, and more."""
    private_key = keys.active_signing_key().backend.signing_key
    now = int(timezone.now().timestamp())
    id_token_typed = jwt.encode(
        {
            "iss": ISSUER,
            "sub": "user-1",
            "aud": "https://api.example.com",
            "exp": now + 300,
            "iat": now,
            "jti": "x",
        },
        private_key,
        algorithm="RS256",
        headers={"kid": keys.active_signing_key().kid, "typ": "JWT"},
    )
    cases = {
        name: {"Authorization": f"Bearer {token}"} for name, token in attacks(private_key).items()
    }
    cases["typ JWT (an ID token, not an access token)"] = {
        "Authorization": f"Bearer {id_token_typed}"
    }
    cases["not a JWT"] = {"Authorization": "Bearer not-a-token"}
    cases["Basic, not Bearer"] = {"Authorization": "Basic dXNlcjpwYXNz"}
    cases["no token"] = {}
    return cases


def test_fastapi_guide_snippet_accepts_real_tokens_and_refuses_the_rest(authserver):  # noqa: F811
    from fastapi.testclient import TestClient

    namespace: dict = {}
    exec(localised(docs_snippet("fastapi"), authserver), namespace)  # noqa: S102 - our own docs
    client = TestClient(namespace["app"])
    token = issue(scope="orders:read")
    response = client.get("/orders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"user": "user-1", "scope": "orders:read"}
    for name, headers in refused_requests().items():
        response = client.get("/orders", headers=headers)
        assert response.status_code == 401, (name, response.text)
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', name
        assert "Traceback" not in response.text


RUN_EXPRESS = """\
import { app } from "./app.mjs";
const server = app.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
"""


def test_express_guide_snippet_accepts_real_tokens_and_refuses_the_rest(authserver):  # noqa: F811
    modules = Path(os.environ.get("AUTHSERVER_TEST_NODE_MODULES", str(ROOT / "node_modules")))
    node = shutil.which("node")
    if node is None or not (modules / "express").is_dir() or not (modules / "jose").is_dir():
        pytest.skip("node and the express and jose packages are needed (npm ci; make test does it)")
    token = issue(scope="orders:read")
    refused = refused_requests()
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "node_modules").symlink_to(modules)
        Path(folder, "app.mjs").write_text(localised(docs_snippet("express"), authserver))
        Path(folder, "run.mjs").write_text(RUN_EXPRESS)
        process = subprocess.Popen(
            [node, "run.mjs"], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            line = process.stdout.readline()
            assert line, process.stderr.read()
            url = f"http://127.0.0.1:{json.loads(line)['port']}/orders"
            response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert response.status_code == 200, response.text
            assert response.json() == {"user": "user-1", "scope": "orders:read"}
            for name, headers in refused.items():
                response = requests.get(url, headers=headers, timeout=10)
                assert response.status_code == 401, (name, response.text)
                assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', name
                assert response.json() == {"error": "invalid_token"}, name
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
