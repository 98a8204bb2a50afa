"""Two-step sign-in over HTTP against gunicorn on PostgreSQL: TOTP enrolment on the account
pages (secret read off the page, codes computed with pyotp), the hosted login's second step,
the first-party API's mfa_token, step-up at /oauth/authorize (acr_values, max_age=0) and the
amr/acr the tokens carry (ID token verified with PyJWT against the published JWKS)."""

from __future__ import annotations

import html
import itertools
import json
import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pyotp
import pytest
import requests

from accounts.services import user_create
from audit.events import EventType
from audit.models import AuthEvent
from authserver import settings as app_settings
from mail.models import Outbox
from oauth.clients import client_create
from tests.conftest import PASSWORD
from tests.live import Gunicorn, json_response, window_with_room
from tests.security.live_oauth import REDIRECT_URI, authorize_url, code_exchange, pkce_pair

pytestmark = pytest.mark.slow

ACR_MFA = "urn:authserver:acr:mfa"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
_SECRET = re.compile(r'<code id="totp-secret" class="secret">([A-Z2-7 ]+)</code>')
_RECOVERY = re.compile(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>")


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    for name in ("alice", "bob", "carol"):
        user_create(username=name, email=f"{name}@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=2)
    running.env["AUTHSERVER_ISSUER"] = running.url
    running.env["AUTHSERVER_LOCKOUT_THRESHOLD"] = "4"
    with running:
        yield running


def fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def code_at(secret: str, offset: int = 0) -> str:
    """A code made by pyotp (not our code), `offset` time steps from now."""
    return pyotp.TOTP(secret).at(time.time() + 30 * offset)


def password_step(server, browser, username) -> requests.Response:
    token = fields(browser.get(server.url + "/login", timeout=10).text)["csrfmiddlewaretoken"]
    return browser.post(
        server.url + "/login",
        data={"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )


def code_step(server, browser, code, location="/login/mfa") -> requests.Response:
    page = browser.get(urljoin(server.url, location), timeout=10)
    assert page.status_code == 200, page.text[:300]
    data = {**fields(page.text), "code": code}
    return browser.post(server.url + "/login/mfa", data=data, allow_redirects=False, timeout=10)


def signed_in(server, browser) -> bool:
    response = browser.get(server.url + "/account/", allow_redirects=False, timeout=10)
    return response.status_code == 200


def enrol(server, username) -> tuple[str, list[str]]:
    """Sign in with the password and set up TOTP on the account page: (secret, recovery codes)."""
    browser = requests.Session()
    assert password_step(server, browser, username).status_code == 302
    page = browser.get(server.url + "/account/mfa/totp", timeout=10)
    assert page.status_code == 200 and "<svg" in page.text and "<script" not in page.text
    secret = _SECRET.search(page.text).group(1).replace(" ", "")
    wrong = browser.post(
        server.url + "/account/mfa/totp",
        data={**fields(page.text), "code": "12345"},
        timeout=10,
    )
    assert "That code is not right" in wrong.text or "Ensure" in wrong.text
    done = browser.post(
        server.url + "/account/mfa/totp",
        data={**fields(page.text), "code": code_at(secret, -1)},
        timeout=10,
    )
    codes = _RECOVERY.findall(done.text)
    assert len(codes) == 10, done.text[:500]
    return secret, codes


def test_hosted_sign_in_takes_a_second_step(server):
    secret, codes = enrol(server, "alice")
    assert AuthEvent.objects.filter(event_type=EventType.MFA_ENROLLED).count() == 1

    browser = requests.Session()
    first = password_step(server, browser, "alice")
    assert first.status_code == 303 and first.headers["Location"].startswith("/login/mfa")
    assert not signed_in(server, browser)  # the password alone signs nobody in

    wrong = code_step(server, browser, "000000" if code_at(secret) != "000000" else "111111")
    assert wrong.status_code == 200 and "That code is not right" in wrong.text
    assert not signed_in(server, browser)
    failed = AuthEvent.objects.get(event_type=EventType.MFA_FAILED)
    assert failed.details["reason"] == "bad_code" and failed.details["via"] == "hosted_login"

    code = code_at(secret)
    assert code_step(server, browser, code).status_code == 303
    assert signed_in(server, browser)

    # The same code again, in another browser with the right password: refused (replay).
    other = requests.Session()
    assert password_step(server, other, "alice").status_code == 303
    replay = code_step(server, other, code)
    assert replay.status_code == 200 and "already used" in replay.text
    assert not signed_in(server, other)
    # A recovery code works once, is audited and mailed.
    assert code_step(server, other, codes[0]).status_code == 303
    assert signed_in(server, other)
    assert AuthEvent.objects.filter(event_type=EventType.MFA_RECOVERY_CODE_USED).count() == 1
    assert Outbox.objects.filter(to="alice@example.com", template="mfa_recovery_code_used").exists()
    third = requests.Session()
    password_step(server, third, "alice")
    assert "That code is not right" in code_step(server, third, codes[0]).text


def test_wrong_codes_lock_the_account(server):
    secret, _ = enrol(server, "bob")
    browser = requests.Session()
    password_step(server, browser, "bob")
    for _ in range(4):  # AUTHSERVER_LOCKOUT_THRESHOLD
        code_step(server, browser, "000000" if code_at(secret) != "000000" else "111111")
    assert AuthEvent.objects.filter(event_type=EventType.ACCOUNT_LOCKED).exists()
    refused = code_step(server, browser, code_at(secret))
    assert "That code is not right" in refused.text and not signed_in(server, browser)
    assert AuthEvent.objects.filter(
        event_type=EventType.MFA_FAILED, details__reason="locked"
    ).exists()


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_first_party_api_second_step(server):
    secret, codes = enrol(server, "alice")
    login = server.url + "/api/v1/auth/login"
    mfa = server.url + "/api/v1/auth/mfa"
    answer = requests.post(login, json={"username": "alice", "password": PASSWORD}, timeout=10)
    assert answer.status_code == 401
    body = answer.json()
    assert body["error"] == "mfa_required" and body["methods"] == ["totp", "recovery_code"]
    assert "access_token" not in body
    token = body["mfa_token"]

    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    refused = requests.post(mfa, json={"mfa_token": tampered, "code": code_at(secret)}, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_grant"
    assert AuthEvent.objects.filter(
        event_type=EventType.MFA_FAILED, details__reason="token_invalid"
    ).exists()

    wrong = requests.post(mfa, json={"mfa_token": token, "code": "12345678901"}, timeout=10)
    assert wrong.status_code == 401 and "code" in wrong.json()["error_description"]
    done = requests.post(mfa, json={"mfa_token": token, "code": code_at(secret)}, timeout=10)
    assert done.status_code == 200, done.text
    claims = _claims(done.json()["access_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == ACR_MFA

    again = requests.post(mfa, json={"mfa_token": token, "code": code_at(secret, 1)}, timeout=10)
    assert again.status_code == 401 and "mfa_token" in again.json()["error_description"]
    assert AuthEvent.objects.filter(
        event_type=EventType.MFA_FAILED, details__reason="token_used"
    ).exists()

    # The refreshed access token still says how the user signed in.
    refreshed = requests.post(
        server.url + "/api/v1/auth/refresh",
        json={"refresh_token": done.json()["refresh_token"]},
        timeout=10,
    )
    assert refreshed.status_code == 200
    assert _claims(refreshed.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]

    # A recovery code completes it too, once.
    for expected in (200, 401):
        token = requests.post(
            login, json={"username": "alice", "password": PASSWORD}, timeout=10
        ).json()["mfa_token"]
        used = requests.post(mfa, json={"mfa_token": token, "code": codes[3]}, timeout=10)
        assert used.status_code == expected, used.text


def _follow(server, browser, url, *, username, secret, seen: list[str], offsets) -> str:
    """Walk the authorization through the pages (password, code); the code it ends with.
    `seen` collects the paths of the pages shown."""
    for _ in range(12):
        response = browser.get(url, allow_redirects=False, timeout=10)
        if response.status_code in (302, 303):
            url = urljoin(url, response.headers["Location"])
        else:
            assert response.status_code == 200, response.text[:500]
            path = urlsplit(url).path
            seen.append(path)
            form = fields(response.text)
            if path == "/login":
                form.update(username=username, password=PASSWORD)
            elif path == "/login/mfa":
                # Each code once: the next time step's code for a second use (drift allows it).
                form["code"] = code_at(secret, next(offsets))
            else:
                raise AssertionError(f"unexpected page {path}")
            response = browser.post(urljoin(server.url, path), data=form, allow_redirects=False)
            assert response.status_code in (302, 303), response.text[:500]
            url = urljoin(server.url, response.headers["Location"])
        if url.startswith(REDIRECT_URI):
            query = parse_qs(urlsplit(url).query)
            assert "code" in query, query
            return query["code"][0]
    raise AssertionError("the authorization did not come back to the client")


def _id_token(server, client, code, verifier) -> dict:
    tokens, claims = code_exchange(server, client, code, verifier)
    access = _claims(tokens["access_token"])
    assert access["acr"] == claims["acr"] and access["amr"] == claims["amr"]
    return claims


def test_acr_values_and_max_age_force_the_second_factor(server):
    registered = client_create(
        name="Payroll",
        client_type="confidential",
        grant_types=["authorization_code"],
        redirect_uris=[REDIRECT_URI],
        scopes=["openid", "profile"],
        skip_consent=True,
    )
    client = (registered.client.client_id, registered.secret)
    # Signed in with the password alone, before the factor was set up (in another browser).
    browser = requests.Session()
    assert password_step(server, browser, "alice").status_code == 302
    secret, _ = enrol(server, "alice")
    steps = itertools.count(0)

    # Without acr_values the password sign-in is enough.
    verifier, challenge = pkce_pair()
    seen: list[str] = []
    url = authorize_url(server, client[0], challenge)
    code = _follow(server, browser, url, username="alice", secret=secret, seen=seen, offsets=steps)
    claims = _id_token(server, client, code, verifier)
    assert seen == [] and claims["amr"] == ["pwd"] and claims["acr"] == "urn:authserver:acr:pwd"

    # prompt=none cannot show the step-up page.
    verifier, challenge = pkce_pair()
    url = authorize_url(server, client[0], challenge, acr_values=ACR_MFA, prompt="none")
    response = browser.get(url, allow_redirects=False, timeout=10)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == [
        "interaction_required"
    ]

    # acr_values asking for MFA: the second factor, then the code; the ID token shows it.
    verifier, challenge = pkce_pair()
    seen = []
    url = authorize_url(server, client[0], challenge, acr_values=ACR_MFA)
    code = _follow(server, browser, url, username="alice", secret=secret, seen=seen, offsets=steps)
    claims = _id_token(server, client, code, verifier)
    assert seen == ["/login/mfa"]
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == ACR_MFA

    # max_age=0: the password again, and the second factor again.
    before = int(time.time())
    verifier, challenge = pkce_pair()
    seen = []
    url = authorize_url(server, client[0], challenge, max_age="0")
    code = _follow(server, browser, url, username="alice", secret=secret, seen=seen, offsets=steps)
    claims = _id_token(server, client, code, verifier)
    assert seen == ["/login", "/login/mfa"]
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["auth_time"] >= before


def test_client_requiring_mfa_sends_a_user_without_one_to_set_it_up(server):
    registered = client_create(
        name="Vault",
        client_type="confidential",
        grant_types=["authorization_code"],
        redirect_uris=[REDIRECT_URI],
        scopes=["openid"],
        skip_consent=True,
        require_mfa=True,
    )
    browser = requests.Session()
    password_step(server, browser, "carol")
    _, challenge = pkce_pair()
    url = authorize_url(server, registered.client.client_id, challenge, scope="openid")
    response = browser.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/mfa/totp?next=")


def test_discovery_lists_acr_values(server):
    document = requests.get(server.url + "/.well-known/openid-configuration", timeout=10).json()
    assert document["acr_values_supported"] == ["urn:authserver:acr:pwd", ACR_MFA]
    assert {"acr", "amr"} <= set(document["claims_supported"])


def test_second_step_codes_spend_the_login_name_budget(server):
    # AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN is 10: ten wrong codes (the lockout comes at four;
    # locked attempts are failures too), then the eleventh answer is throttled, even the right
    # code, before it is checked. The refusal is audited once a window, with the account.
    secret, _ = enrol(server, "bob")
    browser = requests.Session()
    assert password_step(server, browser, "bob").status_code == 303
    wrong = "000000" if code_at(secret) != "000000" else "111111"
    window_with_room(300, 60)  # the login throttle's window (the default)
    statuses = [code_step(server, browser, wrong).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    right = code_step(server, browser, code_at(secret))
    assert right.status_code == 429 and "Too many attempts." in right.text
    assert 0 < int(right.headers["Retry-After"]) <= 300
    assert not signed_in(server, browser)
    (throttled,) = AuthEvent.objects.filter(event_type=EventType.LOGIN_THROTTLED)
    assert throttled.user.username == "bob"
    assert throttled.details.keys() == {"scope", "retry_after", "login_digest", "step"}
    assert throttled.details["scope"] == "login" and throttled.details["step"] == "second_factor"
    assert 0 < throttled.details["retry_after"] <= 300


@pytest.fixture
def strict_server(child_env, settings) -> Iterator[Gunicorn]:
    """AUTHSERVER_MFA=staff, and a small per-IP failure budget."""
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user_create(username="admin", email="admin@example.com", password=PASSWORD, is_staff=True)
    user_create(username="dave", email="dave@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=2)
    running.env["AUTHSERVER_ISSUER"] = running.url
    running.env["AUTHSERVER_MFA"] = "staff"
    running.env["AUTHSERVER_LOGIN_THROTTLE_PER_IP"] = "3"
    with running:
        yield running


def test_policy_forces_enrolment_and_bad_mfa_tokens_spend_the_ip_budget(strict_server):
    server = strict_server
    login = server.url + "/api/v1/auth/login"
    # A staff account without a factor: the browser is sent to set one up, the API refuses.
    browser = requests.Session()
    first = password_step(server, browser, "admin")
    assert first.status_code == 302 and first.headers["Location"].startswith("/account/mfa/totp")
    refused = requests.post(login, json={"username": "admin", "password": PASSWORD}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"] == "mfa_enrollment_required"
    # Others are not asked.
    assert password_step(server, requests.Session(), "dave").headers["Location"] == "/"
    ok = requests.post(login, json={"username": "dave", "password": PASSWORD}, timeout=10)
    assert ok.status_code == 200 and _claims(ok.json()["access_token"])["amr"] == ["pwd"]

    # Forged mfa_tokens are failures of this address: the fourth answer is 429.
    window_with_room(300, 60)  # the login throttle's window (the default)
    statuses = [
        requests.post(
            server.url + "/api/v1/auth/mfa",
            json={"mfa_token": f"forged.{n}", "code": "123456"},
            timeout=10,
        ).status_code
        for n in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


def _posts_at_once(url: str, bodies: list[dict]) -> list[int]:
    """POST each JSON body on its own connection, all in flight together; the statuses."""
    parts = urlsplit(url)
    sockets = []
    for body in bodies:
        payload = json.dumps(body).encode()
        sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        sockets.append((sock, payload))
    for sock, payload in sockets:
        sock.sendall(
            (
                f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            + payload
        )
    return [json_response(sock)[0] for sock, _ in sockets]


def test_one_code_in_parallel_sign_ins_is_accepted_once(server):
    """The same TOTP code sent at once with six different mfa_tokens: exactly one sign-in
    completes (the time step is moved forward by one conditional UPDATE)."""
    secret, _ = enrol(server, "alice")
    login = server.url + "/api/v1/auth/login"
    tokens = [
        requests.post(login, json={"username": "alice", "password": PASSWORD}, timeout=10).json()[
            "mfa_token"
        ]
        for _ in range(6)
    ]
    code = code_at(secret)
    statuses = _posts_at_once(
        server.url + "/api/v1/auth/mfa", [{"mfa_token": t, "code": code} for t in tokens]
    )
    assert sorted(statuses) == [200, 401, 401, 401, 401, 401], statuses
