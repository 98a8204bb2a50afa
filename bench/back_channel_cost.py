#!/usr/bin/env python3
"""Where a client_credentials token, an introspection and a userinfo call spend their CPU, layer
by layer, in-process (no gunicorn, no sockets): CPU microseconds per call, median of trials.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/back_channel_cost.py [--calls 2000] [--trials 5]

Each row is one function of the request path called on its own, with the same arguments the
request gives it, so the rows of an endpoint show what the stack costs around the view and what
each step of the view costs (bench/README.md, "The back channel at the framework floor").
Creates (and afterwards drops) a scratch database and uses its own Redis key prefix (deleted at
the end). The server figures, gunicorn and PostgreSQL included, come from `make bench`.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.request_costs import FORM  # noqa: E402
from bench.scratch import scratch_database  # noqa: E402


def cpu_us(call: Callable[[], object], calls: int, trials: int) -> float:
    """Median over `trials` of the process CPU microseconds per call (after a warm-up)."""
    for _ in range(min(calls, 200)):
        call()
    results = []
    for _ in range(trials):
        started = time.process_time()
        for _ in range(calls):
            call()
        results.append((time.process_time() - started) * 1e6 / calls)
    return statistics.median(results)


def environ(method: str, path: str, body: bytes = b"", authorization: str = "") -> dict:
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if body:
        env.update(CONTENT_TYPE=FORM, CONTENT_LENGTH=str(len(body)))
    if authorization:
        env["HTTP_AUTHORIZATION"] = authorization
    return env


def rows() -> list[tuple[str, Callable[[], object]]]:
    """(label, call) of every layer; setting up what the calls need on the way."""
    from urllib.parse import urlencode

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from django.core.handlers.wsgi import WSGIRequest
    from django.core.wsgi import get_wsgi_application

    from accounts.models import User
    from authserver.conf import get_config
    from oauth.client_auth import client_authenticate
    from oauth.clients import client_create, client_get
    from oauth.endpoints.introspect import introspection_endpoint, introspection_payload
    from oauth.endpoints.token import token_endpoint
    from oauth.issuance import client_tokens_issue
    from oauth.protocol import form_parameters, json_response
    from sessions.apis import FIRST_PARTY_CLIENT_ID
    from sessions.services import session_get, session_start
    from tokens.jws import parse
    from tokens.keys import active_signing_key
    from tokens.verification import ANY_AUDIENCE, access_token_verify

    key = active_signing_key()
    cc = client_create(
        name="cc", client_type="confidential", grant_types=["client_credentials"], scopes=["x"]
    )
    rs = client_create(
        name="rs",
        client_type="confidential",
        grant_types=["client_credentials"],
        is_resource_server=True,
    )
    app = client_create(
        name="app",
        client_type="confidential",
        grant_types=["authorization_code"],
        redirect_uris=["https://app.bench.invalid/cb"],
        scopes=["openid", "profile", "email"],
    )
    user = User.objects.create(username="cost", email="cost@bench.invalid")
    first_party = session_start(
        user=user, client_id=FIRST_PARTY_CLIENT_ID, audience=[get_config().default_audience]
    )
    grant = session_start(
        user=user, client_id=app.client.client_id, audience=[app.client.client_id], scope="openid"
    )

    def basic(client_id: str, secret: str) -> str:
        return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()

    wsgi = get_wsgi_application()

    def serve(env_args: tuple) -> Callable[[], object]:
        def call() -> bytes:
            return b"".join(wsgi(environ(*env_args), lambda status, headers, exc=None: None))

        return call

    cc_request = ("POST", "/oauth/token", b"grant_type=client_credentials")
    cc_request += (basic(cc.client.client_id, cc.secret),)
    token = first_party.access_token
    intro_request = ("POST", "/oauth/introspect", urlencode({"token": token}).encode())
    intro_request += (basic(rs.client.client_id, rs.secret),)
    cc_form = form_parameters(WSGIRequest(environ(*cc_request)))
    cc_client = client_get(client_id=cc.client.client_id)
    rs_client = client_get(client_id=rs.client.client_id)
    signing_input = token.rsplit(".", 1)[0].encode()
    signature = parse(token).signature
    rsa = padding.PKCS1v15()
    userinfo_request = ("GET", "/oauth/userinfo", b"", f"Bearer {grant.access_token}")

    def sign() -> bytes:
        return key.backend.signing_key.sign(signing_input, rsa, hashes.SHA256())

    def verify() -> None:
        key.backend.verifying_key.verify(signature, signing_input, rsa, hashes.SHA256())

    def authenticate() -> object:
        methods = ("client_secret_basic",)
        return client_authenticate(cc_form, cc_request[3], methods=methods, endpoint="token")

    return [
        ("floor: GET /healthz, whole stack", serve(("GET", "/healthz"))),
        ("floor: RS256 signature", sign),
        ("floor: RS256 verification", verify),
        ("client_credentials: whole stack", serve(cc_request)),
        ("  the view", lambda: token_endpoint(WSGIRequest(environ(*cc_request)))),
        ("    request + form parsing", lambda: form_parameters(WSGIRequest(environ(*cc_request)))),
        ("    client authentication", authenticate),
        (
            "    token (signature included)",
            lambda: client_tokens_issue(client=cc_client, scopes=[]),
        ),
        ("    JSON response", lambda: json_response({"access_token": token, "scope": "x"})),
        ("introspection: whole stack", serve(intro_request)),
        ("  the view", lambda: introspection_endpoint(WSGIRequest(environ(*intro_request)))),
        ("    answer (verify, session, rules)", lambda: introspection_payload(token, rs_client)),
        ("      token verification", lambda: access_token_verify(token, audience=ANY_AUDIENCE)),
        ("      session with its user", lambda: session_get(sid=first_party.session.id)),
        ("userinfo: whole stack", serve(userinfo_request)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    prefix = f"backchannel{os.getpid()}"
    with scratch_database(base, prefix="authserver_back_channel") as url:
        os.environ.update(
            DATABASE_URL=url,
            REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            DJANGO_SETTINGS_MODULE="authserver.settings",
            AUTHSERVER_MODE="production",
            SECRET_KEY=secrets.token_urlsafe(64),
            AUTHSERVER_KEY_ENCRYPTION_KEY=secrets.token_urlsafe(32),
            AUTHSERVER_ISSUER="https://auth.bench.invalid",
            AUTHSERVER_SSL_REDIRECT="false",
            ALLOWED_HOSTS="127.0.0.1",
            AUTHSERVER_CACHE_KEY_PREFIX=prefix,
            AUTHSERVER_LOG_LEVEL="WARNING",
        )
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        try:
            print(f"CPU us per call, median of {args.trials} x {args.calls} calls, in-process")
            for label, call in rows():
                print(f"{label:44} {cpu_us(call, args.calls, args.trials):9.1f}", flush=True)
        finally:
            from django.db import connections

            connections.close_all()
            import redis

            client = redis.Redis.from_url(os.environ["REDIS_URL"])
            for name in client.scan_iter(f"{prefix}*"):
                client.delete(name)


if __name__ == "__main__":
    main()
