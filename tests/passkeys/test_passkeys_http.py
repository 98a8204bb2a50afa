"""Passkeys over HTTP against gunicorn on PostgreSQL, with a software authenticator written in
the test (tests/passkeys/softkey.py) as an independent client: register on the account page,
sign in without a password, use one as the second factor; and the bad input of issue 17 (an
assertion for another RP ID, origin or challenge, a replayed one, one from another browser, one
without user verification, a sign count going backwards), each refused with a clear message,
audited, and counted by the sign-in throttle and lockout."""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from django.utils import timezone

from accounts.models import User
from accounts.services import user_create
from audit.events import EventType
from audit.models import AuthEvent
from authserver import settings as app_settings
from mail.models import Outbox
from mfa import services as mfa_services
from mfa.models import Factor
from passkeys.models import Passkey
from tests.conftest import PASSWORD
from tests.live import Gunicorn, window_with_room
from tests.passkeys.softkey import UP, SoftKey, b64u

pytestmark = pytest.mark.slow

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    for name in ("alice", "bob", "carol"):
        user_create(username=name, email=f"{name}@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=2)
    running.env["AUTHSERVER_ISSUER"] = running.url
    running.env["AUTHSERVER_LOCKOUT_THRESHOLD"] = "6"
    with running:
        yield running


def fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def token_of(browser, url: str) -> str:
    return fields(browser.get(url, timeout=10).text)["csrfmiddlewaretoken"]


def options(server, browser, path: str, token: str, **data) -> dict:
    response = browser.post(
        server.url + path, data=data, headers={"X-CSRFToken": token}, timeout=10
    )
    assert response.status_code == 200, response.text[:300]
    assert "no-store" in response.headers["Cache-Control"]
    return response.json()


def password_sign_in(server, browser, username: str) -> requests.Response:
    token = token_of(browser, server.url + "/login")
    return browser.post(
        server.url + "/login",
        data={"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )


def signed_in(server, browser) -> bool:
    return (
        browser.get(server.url + "/account/", allow_redirects=False, timeout=10).status_code == 200
    )


def register(server, username: str, name: str = "My laptop") -> SoftKey:
    """Sign in with the password and add a passkey on the account page."""
    browser = requests.Session()
    assert password_sign_in(server, browser, username).status_code == 302
    add_url = server.url + "/account/mfa/passkeys/add"
    page = browser.get(add_url, timeout=10)
    assert page.status_code == 200 and "Create a passkey" in page.text
    token = fields(page.text)["csrfmiddlewaretoken"]
    opts = options(server, browser, "/account/mfa/passkeys/options", token)
    host = urlsplit(server.url).hostname
    assert opts["rp"]["id"] == host and opts["authenticatorSelection"]["residentKey"] == "preferred"
    key = SoftKey(rp_id=host, origin=server.url)
    done = browser.post(
        add_url,
        data={"csrfmiddlewaretoken": token, "name": name, "credential": key.register(opts)},
        allow_redirects=False,
        timeout=10,
    )
    # The account's first second factor: ten recovery codes, shown once.
    assert done.status_code == 200, done.text[:500]
    assert "Two-step verification is on" in done.text
    assert len(re.findall(r"<li><code>[a-z0-9]{5}-[a-z0-9]{5}</code></li>", done.text)) == 10
    return key


def passwordless(server, key: SoftKey, browser=None, **bend) -> tuple[requests.Response, str]:
    """Ask for passwordless options and answer with `key` (bent by `bend`): (response, the
    assertion posted)."""
    browser = browser or requests.Session()
    token = token_of(browser, server.url + "/login")
    opts = options(server, browser, "/login/passkey/options", token)
    assert opts["allowCredentials"] == [] and opts["userVerification"] == "required"
    challenge = bend.pop("challenge", opts["challenge"])
    assertion = key.assert_(challenge, **bend)
    return post_assertion(server, browser, token, assertion), assertion


def post_assertion(server, browser, token, assertion, path="/login/passkey") -> requests.Response:
    return browser.post(
        server.url + path,
        data={"csrfmiddlewaretoken": token, "credential": assertion},
        allow_redirects=False,
        timeout=10,
    )


def last_failure(event=EventType.LOGIN_FAILED) -> AuthEvent:
    return AuthEvent.objects.filter(event_type=event).order_by("-id").first()


def test_register_a_passkey_and_sign_in_without_a_password(server):
    key = register(server, "alice")
    passkey = Passkey.objects.get(user__username="alice")
    assert passkey.name == "My laptop" and passkey.discoverable is True
    assert passkey.transports == ["internal"] and passkey.credential_id == b64u(key.credential_id)
    enrolled = AuthEvent.objects.get(event_type=EventType.MFA_ENROLLED)
    assert enrolled.details["method"] == "passkey"
    # The owner is told at the account's address (a stolen session adding its own passkey).
    (notice,) = Outbox.objects.filter(template="mfa_changed", to=passkey.user.email)
    assert "“My laptop” was added" in notice.body_text

    browser = requests.Session()
    response, _ = passwordless(server, key, browser)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert signed_in(server, browser)
    success = AuthEvent.objects.filter(event_type=EventType.LOGIN_SUCCEEDED).order_by("-id")[0]
    assert success.details["method"] == "passkey" and success.user.username == "alice"
    passkey.refresh_from_db()
    assert passkey.sign_count == 1 and passkey.last_used_at is not None
    # The account page lists it, never its key material.
    page = browser.get(server.url + "/account/mfa", timeout=10).text
    assert "My laptop" in page and passkey.credential_id not in page
    # A passkey sign-in is a fresh sign-in for the sensitive actions (here: removing it).
    remove = browser.get(
        server.url + f"/account/mfa/passkeys/{passkey.pk}/remove", allow_redirects=False, timeout=10
    )
    assert remove.status_code == 200 and "Remove passkey" in remove.text


def test_bad_assertions_are_refused_audited_and_counted(server):
    key = register(server, "alice")
    host = urlsplit(server.url).hostname
    # A good assertion (which resets the failure count, as a good password does), then the same
    # one again: the challenge was single-use.
    browser = requests.Session()
    response, assertion = passwordless(server, key, browser)
    assert response.status_code == 303
    token = token_of(browser, server.url + "/login")
    replay = post_assertion(server, browser, token, assertion)
    assert replay.status_code == 400 and "expired or was already used" in replay.text
    assert last_failure().details["reason"] == "challenge_mismatch"

    # A challenge given to one browser is worth nothing in another.
    first, second = requests.Session(), requests.Session()
    opts = options(server, first, "/login/passkey/options", token_of(first, server.url + "/login"))
    other = post_assertion(
        server, second, token_of(second, server.url + "/login"), key.assert_(opts["challenge"])
    )
    assert other.status_code == 400 and last_failure().details["reason"] == "challenge_mismatch"

    cases = [
        ("rp_id_mismatch", {"rp_id": "evil.example"}),
        ("origin_mismatch", {"origin": "https://evil.example"}),
        ("challenge_mismatch", {"challenge": b64u(secrets.token_bytes(32))}),
        ("user_not_verified", {"flags": UP}),
    ]
    for reason, bend in cases:
        browser = requests.Session()
        response, _ = passwordless(server, key, browser, **bend)
        assert response.status_code == 400, (reason, response.status_code)
        assert "sign you in with that passkey." in response.text
        assert not signed_in(server, browser)
        event = last_failure()
        assert event.details == {"method": "passkey", "reason": reason}, event.details
        assert event.user.username == "alice"

    # Six refusals (AUTHSERVER_LOCKOUT_THRESHOLD): the account is locked, and now even a good
    # passkey is refused, as a good password would be.
    assert AuthEvent.objects.filter(
        event_type=EventType.ACCOUNT_LOCKED, user__username="alice"
    ).exists()
    locked, _ = passwordless(server, key)
    assert locked.status_code == 400 and last_failure().details["reason"] == "locked"
    assert host  # the RP ID is the issuer's host


def test_sign_count_going_backwards_blocks_the_credential(server):
    key = register(server, "bob")
    response, _ = passwordless(server, key, count=10)
    assert response.status_code == 303
    cloned, _ = passwordless(server, key, count=5)
    assert cloned.status_code == 400 and "may have been copied" in cloned.text
    assert last_failure().details["reason"] == "sign_count_regressed"
    passkey = Passkey.objects.get(user__username="bob")
    assert passkey.flagged_at is not None and passkey.sign_count == 10
    # Blocked from now on, even with a count that moves forward.
    again, _ = passwordless(server, key, count=11)
    assert again.status_code == 400 and last_failure().details["reason"] == "credential_flagged"
    # Its owner sees it blocked on the account page.
    browser = requests.Session()
    password_sign_in(server, browser, "bob")
    assert "Blocked" in browser.get(server.url + "/account/mfa", timeout=10).text


def test_a_passkey_as_the_second_factor(server):
    key = register(server, "carol", name="Blue key")
    browser = requests.Session()
    first = password_sign_in(server, browser, "carol")
    assert first.status_code == 303 and first.headers["Location"].startswith("/login/mfa")
    assert not signed_in(server, browser)
    page = browser.get(server.url + "/login/mfa", timeout=10)
    assert "Use a passkey" in page.text and 'src="/static/passkeys/passkey.js"' in page.text
    token = fields(page.text)["csrfmiddlewaretoken"]

    # A challenge for passwordless sign-in is not one for the second step.
    wrong_purpose = options(server, browser, "/login/passkey/options", token)["challenge"]
    refused = post_assertion(
        server, browser, token, key.assert_(wrong_purpose), path="/login/mfa/passkey"
    )
    assert refused.status_code == 400 and "expired or was already used" in refused.text
    failed = last_failure(EventType.MFA_FAILED)
    assert (
        failed.details["method"] == "passkey" and failed.details["reason"] == "challenge_mismatch"
    )

    opts = options(server, browser, "/login/mfa/passkey/options", token)
    assert [c["id"] for c in opts["allowCredentials"]] == [b64u(key.credential_id)]
    other_origin = post_assertion(
        server,
        browser,
        token,
        key.assert_(opts["challenge"], origin="https://evil.example"),
        path="/login/mfa/passkey",
    )
    assert other_origin.status_code == 400 and "another website" in other_origin.text
    assert last_failure(EventType.MFA_FAILED).details["reason"] == "origin_mismatch"
    assert not signed_in(server, browser)

    opts = options(server, browser, "/login/mfa/passkey/options", token)
    done = post_assertion(
        server, browser, token, key.assert_(opts["challenge"]), path="/login/mfa/passkey"
    )
    assert done.status_code == 303 and done.headers["Location"] == "/"
    assert signed_in(server, browser)
    ok = AuthEvent.objects.filter(event_type=EventType.MFA_SUCCEEDED).order_by("-id")[0]
    assert ok.details["method"] == "passkey" and ok.user.username == "carol"


def test_second_step_passkey_options_need_a_pending_sign_in(server):
    browser = requests.Session()
    token = token_of(browser, server.url + "/login")
    response = browser.post(
        server.url + "/login/mfa/passkey/options",
        headers={"X-CSRFToken": token},
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["error"] == "no_pending_sign_in"
    no_csrf = requests.post(server.url + "/login/passkey/options", timeout=10)
    assert no_csrf.status_code == 403

    # Options are limited per client IP and minute (passkeys/services.py: a 60 s window).
    window_with_room(60, 20)
    statuses = [
        browser.post(
            server.url + "/login/passkey/options", headers={"X-CSRFToken": token}, timeout=10
        ).status_code
        for _ in range(61)
    ]
    assert 429 in statuses and statuses.count(200) <= 60


def test_malformed_answers_get_a_readable_error(server):
    browser = requests.Session()
    token = token_of(browser, server.url + "/login")
    for credential in ("", "not json", '{"id": 1}', "x" * 20_000, '{"id":"AA","rawId":"AA"}'):
        response = post_assertion(server, browser, token, credential)
        assert response.status_code == 400, response.text[:200]
        assert "could not be read" in response.text or "not registered" in response.text


def test_refused_second_factor_passkeys_count_toward_the_lockout(server):
    key = register(server, "carol")
    browser = requests.Session()
    password_sign_in(server, browser, "carol")
    token = fields(browser.get(server.url + "/login/mfa", timeout=10).text)["csrfmiddlewaretoken"]
    for _ in range(6):  # AUTHSERVER_LOCKOUT_THRESHOLD
        opts = options(server, browser, "/login/mfa/passkey/options", token)
        refused = post_assertion(
            server,
            browser,
            token,
            key.assert_(opts["challenge"], rp_id="evil.example"),
            path="/login/mfa/passkey",
        )
        assert refused.status_code == 400 and "another website" in refused.text
    assert AuthEvent.objects.filter(
        event_type=EventType.ACCOUNT_LOCKED, user__username="carol"
    ).exists()
    # Locked: the right passkey is refused too, and nobody is signed in.
    opts = options(server, browser, "/login/mfa/passkey/options", token)
    locked = post_assertion(
        server, browser, token, key.assert_(opts["challenge"]), path="/login/mfa/passkey"
    )
    assert locked.status_code == 400 and not signed_in(server, browser)
    assert last_failure(EventType.MFA_FAILED).details["reason"] == "locked"


def test_passwordless_sign_ins_spend_the_login_name_budget(server):
    # AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN is 10: ten refused answers naming bob's passkey (the
    # lockout comes at six; locked attempts are failures too), then the eleventh is throttled,
    # and so is a good answer: before it is looked at. The refusal is audited once a window.
    key = register(server, "bob")
    signed_in_before = AuthEvent.objects.filter(event_type=EventType.LOGIN_SUCCEEDED).count()
    window_with_room(300, 60)  # the login throttle's window (the default)
    statuses = [passwordless(server, key, rp_id="evil.example")[0].status_code for _ in range(11)]
    assert statuses == [400] * 10 + [429]
    good, _ = passwordless(server, key)
    assert good.status_code == 429 and "Too many sign-in attempts." in good.text
    assert "Try again in" in good.text
    signed_in_after = AuthEvent.objects.filter(event_type=EventType.LOGIN_SUCCEEDED).count()
    assert signed_in_after == signed_in_before
    (throttled,) = AuthEvent.objects.filter(event_type=EventType.LOGIN_THROTTLED)
    assert throttled.user.username == "bob"
    assert throttled.details.keys() == {"scope", "retry_after", "method"}
    assert throttled.details["scope"] == "login" and throttled.details["method"] == "passkey"
    assert 0 < throttled.details["retry_after"] <= 300


def api_post(server, path: str, body: dict) -> requests.Response:
    return requests.post(server.url + "/api/v1/auth/" + path, json=body, timeout=10)


def test_first_party_api_completes_the_second_step_with_a_passkey(server):
    """A user whose only second factor is a passkey can sign in through the JSON API: login
    answers mfa_required with "passkey" among the methods, passkey-options gives a challenge
    bound to that mfa_token, and /auth/mfa takes the passkey's answer as `credential`."""
    key = register(server, "alice")
    login = api_post(server, "login", {"username": "alice", "password": PASSWORD})
    assert login.status_code == 401 and login.json()["methods"] == ["passkey", "recovery_code"]
    mfa_token = login.json()["mfa_token"]

    # Neither or both of code and credential: 400 naming both.
    for body in ({}, {"code": "123456", "credential": {"id": "x"}}):
        refused = api_post(server, "mfa", {"mfa_token": mfa_token, **body})
        assert refused.status_code == 400, refused.text
        assert "code" in refused.json()["error_description"]
        assert "credential" in refused.json()["error_description"]
    for bad in (None, 5, [], ""):
        refused = api_post(server, "mfa", {"mfa_token": mfa_token, "credential": bad})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"

    opts = api_post(server, "mfa/passkey-options", {"mfa_token": mfa_token})
    assert opts.status_code == 200 and "no-store" in opts.headers["Cache-Control"]
    options_json = opts.json()
    assert [c["id"] for c in options_json["allowCredentials"]] == [b64u(key.credential_id)]

    # A challenge of the hosted pages (another binding) is refused, and the token stays usable.
    browser = requests.Session()
    page_token = token_of(browser, server.url + "/login")
    hosted = options(server, browser, "/login/passkey/options", page_token)["challenge"]
    wrong = api_post(
        server, "mfa", {"mfa_token": mfa_token, "credential": json.loads(key.assert_(hosted))}
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_grant"
    assert last_failure(EventType.MFA_FAILED).details["reason"] == "challenge_mismatch"

    answer = key.assert_(options_json["challenge"])
    done = api_post(server, "mfa", {"mfa_token": mfa_token, "credential": json.loads(answer)})
    assert done.status_code == 200, done.text
    claims = jwt.decode(done.json()["access_token"], options={"verify_signature": False})
    assert "pwd" in claims["amr"] and "mfa" in claims["amr"]
    assert {"hwk", "swk"} & set(claims["amr"])
    ok = AuthEvent.objects.filter(event_type=EventType.MFA_SUCCEEDED).order_by("-id")[0]
    assert ok.details["method"] == "passkey" and ok.user.username == "alice"

    # The token is spent: neither new options nor a replay of the answer (as text) get in.
    assert api_post(server, "mfa/passkey-options", {"mfa_token": mfa_token}).status_code == 401
    replay = api_post(server, "mfa", {"mfa_token": mfa_token, "credential": answer})
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_grant"


def test_passkey_options_need_a_valid_token_and_a_passkey(server):
    forged = api_post(server, "mfa/passkey-options", {"mfa_token": "x" * 40})
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_grant"
    assert api_post(server, "mfa/passkey-options", {}).status_code == 400
    # bob has an authenticator app only: options make no sense for him.
    bob = User.objects.get(username="bob")
    factor, _ = mfa_services.totp_enrolment_begin(user=bob)
    Factor.objects.filter(pk=factor.pk).update(confirmed_at=timezone.now())
    login = api_post(server, "login", {"username": "bob", "password": PASSWORD})
    assert login.status_code == 401 and login.json()["methods"] == ["totp"]
    no_passkey = api_post(server, "mfa/passkey-options", {"mfa_token": login.json()["mfa_token"]})
    assert no_passkey.status_code == 400 and "no passkey" in no_passkey.json()["error_description"]
