"""OpenID Connect Core §3.1.2 (the authorization endpoint), over HTTP against gunicorn with
separate browsers (cookie jars): issue 13, findings 3 (prompt=login / max_age bypass) and 9
(id_token_hint ignored)."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone

from accounts.services import user_create
from oauth.models import AuthorizationCode
from oauth.oidc import id_token_issue
from tests.conftest import PASSWORD
from tests.security.authorize_http import (
    Browser,
    authorize_path,
    live_server,
    login_next,
    register_client,
)
from tokens.issuance import jwt_sign
from tokens.keys import active_signing_key

pytestmark = pytest.mark.slow


@pytest.fixture
def server(child_env, settings):
    yield from live_server(child_env, settings)


@pytest.fixture
def alice(server):
    return user_create(username="alice", email="alice@example.com", password=PASSWORD)


@pytest.fixture
def bob(server):
    return user_create(username="bob", email="bob@example.com", password=PASSWORD)


@pytest.fixture
def app(server):
    client, _ = register_client(skip_consent=True)  # first-party: no consent page in the way
    return client


def signed_in(server, username: str, client_id: str) -> Browser:
    """A browser that signed in on the login page (through an ordinary authorization)."""
    browser = Browser(server)
    landing = browser.sign_in(browser.visit(authorize_path(client_id)), username)
    assert landing.at_client and "code" in landing.params, landing.page[:300]
    return browser


def latest_code() -> AuthorizationCode:
    return AuthorizationCode.objects.select_related("user").latest("created_at")


# --- Finding 3: login tickets are bound to the browser and single use ---------------------------


def test_ticket_minted_in_another_browser_does_not_skip_the_password(server, alice, app):
    """Issue 13.3, OpenID Connect Core §3.1.2.1 (prompt=login): a login_ticket minted in an
    anonymous browser A and replayed in signed-in browser B must not yield a code without the
    password; B is asked for it, and the code then carries B's new sign-in time."""
    victim = signed_in(server, "alice", app.client_id)
    attacker = Browser(server)
    for demand in ({"prompt": "login"}, {"max_age": "0"}):
        minted = attacker.visit(authorize_path(app.client_id, **demand))
        assert minted.password_asked
        replayed = victim.visit(login_next(minted))
        assert not replayed.at_client, "a code without the password"
        assert replayed.reauthentication
    before = int(time.time())
    landing = victim.sign_in(replayed, "alice")
    assert landing.at_client and "code" in landing.params
    assert int(latest_code().auth_time.timestamp()) >= before


def test_ticket_is_single_use(server, alice, app):
    """Issue 13.3, OpenID Connect Core §3.1.2.1 (prompt=login): the URL the login page returned
    to, loaded again after it produced a code, asks for the password again."""
    browser = signed_in(server, "alice", app.client_id)
    forced = browser.visit(authorize_path(app.client_id, prompt="login"))
    assert forced.reauthentication
    landing = browser.sign_in(forced, "alice")
    assert landing.at_client and "code" in landing.params
    assert browser.visit(login_next(forced)).reauthentication


def test_signing_in_as_another_user_satisfies_prompt_login_once(server, alice, bob, app):
    """Issue 13.3, OpenID Connect Core §3.1.2.1 (prompt=login): a different user signing in on the
    forced login page (login() flushes the session then) completes the request with one password,
    and the code is bob's."""
    browser = signed_in(server, "alice", app.client_id)
    forced = browser.visit(authorize_path(app.client_id, prompt="login"))
    assert forced.reauthentication
    landing = browser.sign_in(forced, "bob")
    assert landing.at_client and "code" in landing.params, landing.page[:300]
    assert latest_code().user.username == "bob"


def test_consent_decision_rechecks_max_age(server, alice):
    """Issue 13.3, OpenID Connect Core §3.1.2.1 (max_age): a user who waits on the consent page
    past max_age signs in again before a code is issued, and the code's auth_time satisfies
    max_age."""
    client, _ = register_client()  # third-party: the consent page is shown
    browser = Browser(server)
    request = authorize_path(client.client_id, max_age="300")
    consent = browser.sign_in(browser.visit(request), "alice")
    assert consent.consent
    # Time passes on the consent page: the sign-in is now 10 minutes old.
    browser.session_update(auth_time=int(time.time()) - 600)
    answered = browser.answer_consent(consent)
    assert not answered.at_client, "a code for a sign-in older than max_age"
    assert answered.reauthentication
    assert not AuthorizationCode.objects.exists()
    landing = browser.sign_in(answered, "alice")
    if landing.consent:
        landing = browser.answer_consent(landing)
    assert landing.at_client and "code" in landing.params
    assert time.time() - latest_code().auth_time.timestamp() <= 300


def test_consent_form_cannot_be_answered_twice_on_one_ticket(server, alice):
    """Issue 13.3, OpenID Connect Core §3.1.2.1 (prompt=login): the consent decision re-checks
    prompt=login; the form posted again after its ticket produced a code asks for the password
    instead of issuing a second code."""
    client, _ = register_client()
    browser = Browser(server)
    consent = browser.sign_in(
        browser.visit(authorize_path(client.client_id, prompt="login")), "alice"
    )
    assert consent.consent
    first = browser.answer_consent(consent)
    assert first.at_client and "code" in first.params
    again = browser.answer_consent(consent)
    assert not again.at_client and again.reauthentication
    assert AuthorizationCode.objects.count() == 1


# --- Finding 9: id_token_hint -------------------------------------------------------------------


def id_token(user, client_id: str, **kw) -> str:
    return id_token_issue(
        user=user, client_id=client_id, scopes=["openid"], auth_time=int(time.time()), **kw
    )


def test_invalid_id_token_hint_is_invalid_request(server, alice, app):
    """Issue 13.9, OpenID Connect Core §3.1.2.1/§3.1.2.6 (id_token_hint): a hint that is not an ID
    token of ours (garbage, a foreign signature, another issuer, an access token) is
    invalid_request, redirected with state."""
    browser = signed_in(server, "alice", app.client_id)
    ours = id_token(alice, app.client_id)
    claims = jwt.decode(ours, options={"verify_signature": False})
    kid = active_signing_key().kid
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hints = {
        "garbage": "not-a-token",
        "foreign signature": jwt.encode(claims, foreign_key, "RS256", headers={"kid": kid}),
        "other issuer": jwt_sign(claims={**claims, "iss": "https://evil.example.com"}),
        "access token": jwt_sign(claims=claims, typ="at+jwt"),
        "tampered": ours[:-4] + ("AAAA" if not ours.endswith("AAAA") else "BBBB"),
    }
    for name, hint in hints.items():
        landing = browser.visit(authorize_path(app.client_id, id_token_hint=hint, state="h1"))
        assert landing.at_client, name
        assert landing.params["error"] == "invalid_request", name
        assert landing.params["state"] == "h1" and "code" not in landing.params, name
    assert AuthorizationCode.objects.count() == 1  # the sign-in's own


def test_hint_for_the_signed_in_user_is_accepted_even_expired(server, alice, app):
    """Issue 13.9, OpenID Connect Core §3.1.2.1 (id_token_hint): the hinted user is signed in, so
    prompt=none succeeds, also with an expired ID token as the hint."""
    browser = signed_in(server, "alice", app.client_id)
    expired = id_token(alice, app.client_id, now=timezone.now() - timedelta(days=2))
    for hint in (id_token(alice, app.client_id), expired):
        landing = browser.visit(authorize_path(app.client_id, id_token_hint=hint, prompt="none"))
        assert landing.at_client and "code" in landing.params, landing.params


def test_hint_for_another_user_with_prompt_none_is_login_required(server, alice, bob, app):
    """Issue 13.9, OpenID Connect Core §3.1.2.1 (id_token_hint with prompt=none): alice is signed
    in, the hint names bob: login_required, no code."""
    browser = signed_in(server, "alice", app.client_id)
    hint = id_token(bob, app.client_id)
    landing = browser.visit(
        authorize_path(app.client_id, id_token_hint=hint, prompt="none", state="h2")
    )
    assert landing.at_client
    assert landing.params["error"] == "login_required" and landing.params["state"] == "h2"
    assert "code" not in landing.params


def test_hint_for_another_user_forces_login(server, alice, bob, app):
    """Issue 13.9, OpenID Connect Core §3.1.2.1 (id_token_hint): alice is signed in, the hint
    names bob: the login page asks for a password; bob signing in gets the code; alice signing
    in again gets login_required rather than a code for someone the client did not name."""
    browser = signed_in(server, "alice", app.client_id)
    hint = id_token(bob, app.client_id)
    forced = browser.visit(authorize_path(app.client_id, id_token_hint=hint))
    assert forced.reauthentication
    landing = browser.sign_in(forced, "bob")
    assert landing.at_client and "code" in landing.params
    assert latest_code().user.username == "bob"

    other = signed_in(server, "alice", app.client_id)
    forced = other.visit(authorize_path(app.client_id, id_token_hint=hint, state="h3"))
    landing = other.sign_in(forced, "alice")
    assert landing.at_client
    assert landing.params["error"] == "login_required" and landing.params["state"] == "h3"
