"""Downstream verification, for real: authserver under gunicorn on PostgreSQL, and
examples/downstream_api (stock simplejwt, configured only with the JWKS URL, issuer and
audience) as a second process. Every token is also checked with PyJWT's PyJWKClient.

Tokens are issued by the issuance service in this process, which shares authserver's database;
key changes are made with `manage.py rotate_signing_keys`, as an operator would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone

from tests.live import ROOT, Gunicorn, ServerProcess, foreign_env, manage
from tests.tokens.conftest import b64, unsigned
from tokens import keys
from tokens.issuance import access_token_issue
from tokens.jwk import public_jwk
from tokens.models import SigningKey

AUDIENCE = "https://api.example.com"
ISSUER = "http://testserver"  # child_env's AUTHSERVER_ISSUER

pytestmark = pytest.mark.slow


class Downstream(ServerProcess):
    """examples/downstream_api under gunicorn; a fresh process has an empty JWKS cache."""

    name = "downstream"
    ready_path = "/hello"

    def __init__(self, jwks_url: str, workers: int = 1):
        env = foreign_env(
            DJANGO_SETTINGS_MODULE="downstream.settings",
            AUTHSERVER_JWKS_URL=jwks_url,
            AUTHSERVER_ISSUER=ISSUER,
            DOWNSTREAM_AUDIENCE=AUDIENCE,
        )
        super().__init__(env, cwd=ROOT / "examples" / "downstream_api")
        self.workers = workers

    def arguments(self) -> list[str]:
        return ["downstream.wsgi", "--workers", str(self.workers)]

    def status(self, token: str) -> int:
        response = requests.get(
            self.url + "/hello", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        if response.status_code == 401:
            assert response.headers["Content-Type"] == "application/json", response.text
            assert response.json()["code"] in {"token_not_valid", "bad_authorization_header"}
        return response.status_code


def pyjwt_accepts(client: jwt.PyJWKClient, token: str) -> bool:
    try:
        key = client.get_signing_key_from_jwt(token)
        jwt.decode(token, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)
    except (jwt.PyJWKClientError, jwt.InvalidTokenError):
        return False
    return True


def issue(**kwargs) -> str:
    kwargs.setdefault("audience", AUDIENCE)
    return access_token_issue(subject="user-1", client_id="app", **kwargs).token


def rotate(env, *args: str) -> str:
    result = manage("rotate_signing_keys", *args, env=env)
    assert result.returncode == 0, result.stderr
    keys.keyring_reset()  # this process, too, re-reads the keys at once
    return result.stdout


def served_kids(server: Gunicorn) -> set[str]:
    document = requests.get(server.url + "/.well-known/jwks.json", timeout=5).json()
    return {jwk["kid"] for jwk in document["keys"]}


def wait_until_every_worker_serves(server: Gunicorn, condition, bound: float = 5.0) -> float:
    """Seconds until 20 JWKS responses in a row satisfy `condition` (any worker may answer)."""
    started = time.monotonic()
    streak = 0
    while time.monotonic() - started < bound:
        streak = streak + 1 if condition(served_kids(server)) else 0
        if streak >= 20:
            return time.monotonic() - started
    raise AssertionError("gunicorn workers did not pick up the key change in time")


@pytest.fixture
def authserver(child_env):
    assert manage("rotate_signing_keys", "--check", env=child_env).returncode == 0  # first key
    with Gunicorn(child_env, workers=2) as server:
        yield server


def attacks(private_key) -> dict[str, str]:
    """Tokens that must fail, each named after the attack."""
    active = keys.active_signing_key()
    now = int(timezone.now().timestamp())
    claims = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": "attack",
        "client_id": "app",
        "scope": "",
    }
    header = {"kid": active.kid, "typ": "at+jwt"}
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = {**public_jwk(attacker), "kid": "attacker", "alg": "RS256", "use": "sig"}
    good = jwt.encode(claims, private_key, algorithm="RS256", headers=header)
    head, _payload, signature = good.split(".")
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_input = b64(json.dumps({"alg": "HS256", **header}).encode()) + "." + good.split(".")[1]
    hs_mac = hmac.new(pem, hs_input.encode(), hashlib.sha256).digest()
    past = timezone.now() - timedelta(hours=2)
    return {
        "expired": issue(now=past, lifetime=600),
        "wrong aud": issue(audience="https://other-api.example.com"),
        "wrong iss": jwt.encode(
            {**claims, "iss": "https://evil.example"}, private_key, "RS256", headers=header
        ),
        "tampered payload": head
        + "."
        + b64(json.dumps({**claims, "sub": "admin"}).encode())
        + "."
        + signature,
        "alg none": unsigned({"alg": "none", **header}, claims),
        "HS256 with the public key as secret": hs_input + "." + b64(hs_mac),
        "unknown kid": jwt.encode(claims, attacker, "RS256", headers={"kid": "unknown"}),
        "jku elsewhere": jwt.encode(
            claims,
            attacker,
            "RS256",
            headers={"kid": "attacker", "jku": "http://127.0.0.1:9/jwks.json"},
        ),
        "x5u elsewhere": jwt.encode(
            claims,
            attacker,
            "RS256",
            headers={"kid": "attacker", "x5u": "http://127.0.0.1:9/cert.pem"},
        ),
        "embedded jwk": jwt.encode(
            claims, attacker, "RS256", headers={"kid": "attacker", "jwk": attacker_jwk}
        ),
        "embedded jwk with a real kid": jwt.encode(
            claims, attacker, "RS256", headers={"kid": active.kid, "jwk": attacker_jwk}
        ),
    }


MALFORMED = [
    "",
    "garbage",
    "a.b.c",
    "a.b",
    "....",
    "eyJhbGciOiJSUzI1NiJ9.e30.",
    "e30.e30.e30",
    b64(b"[1]") + ".e30.x",
    b64(b'{"alg":"RS256","kid":42}') + ".e30.x",
    "x" * 5000,
]


def test_downstream_accepts_fresh_tokens_and_rejects_every_attack(authserver):
    jwks_url = authserver.url + "/.well-known/jwks.json"
    pyjwt = jwt.PyJWKClient(jwks_url)
    with Downstream(jwks_url) as downstream:
        fresh = issue(scope="read")
        assert downstream.status(fresh) == 200
        body = requests.get(
            downstream.url + "/hello", headers={"Authorization": f"Bearer {fresh}"}, timeout=5
        ).json()
        assert body == {"sub": "user-1", "client_id": "app", "scope": "read"}
        assert pyjwt_accepts(pyjwt, fresh)

        private_key = keys.active_signing_key().backend.signing_key
        for name, token in attacks(private_key).items():
            assert downstream.status(token) == 401, name
            assert not pyjwt_accepts(jwt.PyJWKClient(jwks_url), token), name

        for token in MALFORMED:
            assert downstream.status(token) in {401}, token
        no_token = requests.get(downstream.url + "/hello", timeout=5)
        assert no_token.status_code == 401
        assert "Traceback" not in downstream.output()
        assert "Internal Server Error" not in downstream.output()
    # The downstream service never saw key material: its environment names only URLs.
    assert not any("KEY" in name and "SECRET" not in name for name in downstream.env)


def test_rotation_under_load_and_revocation(authserver, child_env):
    jwks_url = authserver.url + "/.well-known/jwks.json"
    old_kid = keys.active_signing_key().kid
    old_token = issue()
    with Downstream(jwks_url) as first:
        assert first.status(old_token) == 200

    # 1. Publish the next key. Every authserver worker serves it within about a second.
    output = rotate(child_env)
    new_kid = SigningKey.objects.get(state=SigningKey.State.NEXT).kid
    assert f"published {new_kid}" in output
    elapsed = wait_until_every_worker_serves(authserver, lambda kids: {old_kid, new_kid} <= kids)
    assert elapsed < 3
    assert keys.active_signing_key().kid == old_kid  # published, not signing yet

    # 2. Verifiers refresh their JWKS within the activation delay. A fresh downstream process
    #    stands for "its cache expired during the delay" (stock simplejwt keeps one for 300 s;
    #    production waits AUTHSERVER_KEY_ACTIVATION_DELAY, at least the JWKS max-age, before the
    #    new key signs).
    with Downstream(jwks_url, workers=2) as downstream:
        pyjwt = jwt.PyJWKClient(jwks_url)
        results: Counter[tuple[str, int]] = Counter()
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                token = issue()
                kid = jwt.get_unverified_header(token)["kid"]
                status = downstream.status(token)
                results[(kid, status)] += 1
                if status != 200 or not pyjwt_accepts(pyjwt, token):
                    failures.append(f"{kid}: {status}")
                if downstream.status(old_token) != 200:
                    failures.append("old token rejected")

        worker = threading.Thread(target=load)
        worker.start()
        try:
            time.sleep(1.0)  # verifications with the old key under way
            # 3. The new key starts signing while verifications run.
            output = rotate(child_env, "--activate-now")
            assert f"activated {new_kid}" in output and f"retired {old_kid}" in output
            time.sleep(1.5)
        finally:
            stop.set()
            worker.join(timeout=30)
        assert failures == []
        assert results[(old_kid, 200)] > 0 and results[(new_kid, 200)] > 0
        # After the rotation, a token of the retired key and a new token both pass.
        new_token = issue()
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        assert downstream.status(old_token) == 200
        assert downstream.status(new_token) == 200
        assert "Traceback" not in downstream.output()

    # 4. Emergency revocation of the old key: it leaves the JWKS at once (every worker within a
    #    second); verifiers fetching the JWKS from then on reject its tokens.
    rotate(child_env, f"--revoke={old_kid}")  # a kid may start with "-"
    wait_until_every_worker_serves(authserver, lambda kids: old_kid not in kids)
    with Downstream(jwks_url) as after_revocation:
        assert after_revocation.status(old_token) == 401
        assert after_revocation.status(new_token) == 200
    assert not pyjwt_accepts(jwt.PyJWKClient(jwks_url), old_token)
    assert pyjwt_accepts(jwt.PyJWKClient(jwks_url), new_token)
    assert "Traceback" not in authserver.output()


def docs_snippet(name: str) -> str:
    """The code block after `<!-- snippet: NAME -->` in the documentation pages (docs/), exactly
    one of which carries that marker."""
    marker = f"<!-- snippet: {name} -->"
    pages = [page for page in sorted((ROOT / "docs").rglob("*.md")) if marker in page.read_text()]
    assert len(pages) == 1, f"{marker} in {pages}"
    after = pages[0].read_text().split(marker, 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def localised(snippet: str, server: Gunicorn) -> str:
    return snippet.replace(
        "https://id.example.com/.well-known/jwks.json", server.url + "/.well-known/jwks.json"
    ).replace("https://id.example.com", ISSUER)


def test_docs_simplejwt_snippet_is_the_example_configuration(monkeypatch):
    import runpy

    namespace: dict = {}
    exec(docs_snippet("simplejwt"), namespace)  # noqa: S102 - our own docs
    monkeypatch.setenv("AUTHSERVER_JWKS_URL", "https://id.example.com/.well-known/jwks.json")
    monkeypatch.setenv("AUTHSERVER_ISSUER", "https://id.example.com")
    monkeypatch.setenv("DOWNSTREAM_AUDIENCE", "https://api.example.com")
    example = runpy.run_path(str(ROOT / "examples/downstream_api/downstream/settings.py"))
    assert namespace["SIMPLE_JWT"] == example["SIMPLE_JWT"]
    assert (
        namespace["REST_FRAMEWORK"]["DEFAULT_AUTHENTICATION_CLASSES"]
        == (example["REST_FRAMEWORK"]["DEFAULT_AUTHENTICATION_CLASSES"])
    )


def test_docs_pyjwt_and_jose_snippets_verify_real_tokens(authserver):
    fresh = issue()
    private_key = keys.active_signing_key().backend.signing_key
    bad = attacks(private_key)
    namespace: dict = {}
    exec(localised(docs_snippet("pyjwt"), authserver), namespace)  # noqa: S102
    verify = namespace["verify_access_token"]
    assert verify(fresh)["sub"] == "user-1"
    for name, token in bad.items():
        with pytest.raises(jwt.PyJWTError):
            verify(token)
        assert name

    modules = os.environ.get("AUTHSERVER_TEST_NODE_MODULES", str(ROOT / "node_modules"))
    node = shutil.which("node")
    if node is None or not (Path(modules) / "jose").is_dir():
        pytest.skip("node and the jose package are needed (set AUTHSERVER_TEST_NODE_MODULES)")
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "node_modules").symlink_to(modules)
        Path(folder, "verify.mjs").write_text(localised(docs_snippet("jose"), authserver))
        Path(folder, "run.mjs").write_text(
            'import { verifyAccessToken } from "./verify.mjs";\n'
            "const results = [];\n"
            "for (const token of process.argv.slice(2)) {\n"
            "  try { results.push((await verifyAccessToken(token)).sub); }\n"
            '  catch (e) { results.push("rejected"); }\n'
            "}\n"
            "console.log(JSON.stringify(results));\n"
        )
        result = subprocess.run(
            [node, "run.mjs", fresh, *bad.values()],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["user-1"] + ["rejected"] * len(bad)
