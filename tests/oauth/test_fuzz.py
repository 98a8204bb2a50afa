"""Malformed input never produces a 500: each endpoint answers in its protocol's error format."""

from __future__ import annotations

import base64
import random
import string
from urllib.parse import quote, urlencode

import pytest
from django.test import Client as BrowserClient

from tests.oauth.conftest import REDIRECT_URI, authorize_params

pytestmark = pytest.mark.django_db

NASTY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "%00",
    "\r\nSet-Cookie: x=1",
    "é" * 50,
    "\ud7ff\ue000",
    "😀",
    "'\"<script>alert(1)</script>",
    "../../etc/passwd",
    "${jndi:ldap://x}",
    "a" * 5000,
    "[]",
    "{}",
    "null",
    "-1",
    "99999999999999999999",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "a.b.c",
    "Basic",
    "%ZZ",
]
FIELDS = [
    "grant_type",
    "code",
    "redirect_uri",
    "client_id",
    "client_secret",
    "code_verifier",
    "refresh_token",
    "scope",
    "token",
    "token_type_hint",
]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "application/json",
    "text/plain",
    "multipart/form-data; boundary=x",
]
GRANTS = ["authorization_code", "refresh_token", "client_credentials", "password", ""]


def random_value(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(NASTY)
    alphabet = string.printable + "é\u2028\x7f"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))


def raw_form(fields: dict[str, str]) -> bytes:
    return "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in fields.items()).encode()


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_back_channel_endpoints_never_500(endpoint, machine, confidential):
    http = BrowserClient()
    rng = random.Random(endpoint)
    headers_pool = [
        None,
        machine.basic(),
        confidential.basic(),
        "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
        "Basic " + "=" * 10,
        "Bearer x",
        "Basic " + "A" * 3000,
    ]
    for _ in range(120):
        fields = {name: random_value(rng) for name in rng.sample(FIELDS, rng.randint(0, 6))}
        if rng.random() < 0.7:
            fields["grant_type"] = rng.choice(GRANTS)
        header = rng.choice(headers_pool)
        extra = {"HTTP_AUTHORIZATION": header} if header else {}
        content_type = rng.choice(CONTENT_TYPES)
        response = http.post(endpoint, raw_form(fields), content_type=content_type, **extra)
        assert response.status_code < 500, (fields, response.content)
        assert response["Content-Type"] == "application/json"
        assert response["Cache-Control"] == "no-store"


def test_raw_invalid_bytes_never_500(confidential):
    http = BrowserClient()
    for body in [b"\xff\xfe\xfd=\x80", b"grant_type=%FF%FE", b"=&=&&==", b"a" * 300_000]:
        response = http.post(
            "/oauth/token",
            body,
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=confidential.basic(),
        )
        assert response.status_code in (400, 401, 413), response.content


def test_authorization_endpoint_never_500(browser, confidential, public):
    rng = random.Random("authorize")
    names = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "prompt",
        "max_age",
        "code_challenge",
        "code_challenge_method",
        "response_mode",
        "login_ticket",
        "request",
        "claims",
        "id_token_hint",
    ]
    for _ in range(150):
        registered = rng.choice([confidential, public])
        params = authorize_params(registered)
        for name in rng.sample(names, rng.randint(1, 4)):
            params[name] = random_value(rng)
        query = urlencode(params)
        if rng.random() < 0.2:
            query += "&" + quote(random_value(rng)) + "=" + quote(random_value(rng))
        response = browser.get("/oauth/authorize?" + query)
        assert response.status_code < 500, (params, response.content[:300])
        if response.status_code == 302:
            location = response["Location"]
            assert location.startswith((REDIRECT_URI + "?", "/login?")), location
            assert "\r" not in location and "\n" not in location


def test_end_session_and_userinfo_never_500(browser):
    rng = random.Random("end-session")
    for _ in range(60):
        params = {
            name: random_value(rng)
            for name in rng.sample(
                ["id_token_hint", "client_id", "post_logout_redirect_uri", "state"], 2
            )
        }
        assert browser.get("/oauth/end-session?" + urlencode(params)).status_code < 500
        assert browser.post("/oauth/end-session/confirm", params).status_code < 500
        header = "Bearer " + random_value(rng)
        assert browser.get("/oauth/userinfo", HTTP_AUTHORIZATION=header).status_code < 500
