"""The authorization endpoint: what is shown as a page, what is redirected, and when the user is
asked to sign in or to consent (RFC 6749 §4.1.1-4.1.2.1, OpenID Connect Core §3.1.2)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client as BrowserClient

from accounts.login_flow import AUTH_TIME_SESSION_KEY
from audit.models import AuthEvent
from oauth.models import AuthorizationCode, Consent
from tests.oauth.conftest import (
    REDIRECT_URI,
    approve,
    authorize_params,
    pkce,
    query,
    sign_in,
)

pytestmark = pytest.mark.django_db


def assert_error_page(response, status=400):
    assert response.status_code == status
    assert "Location" not in response
    assert b"<h1>" in response.content
    return response


def assert_redirected_error(response, error, state):
    assert response.status_code == 302, response.content[:300]
    location = response["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    values = query(location)
    assert values["error"] == error
    assert values.get("state") == state
    assert "code" not in values
    return values


# --- Never redirect: unknown client, bad redirect_uri -----------------------------------------


def test_unknown_client_shows_page(browser):
    params = {"response_type": "code", "client_id": "nope", "redirect_uri": REDIRECT_URI}
    response = assert_error_page(browser.get("/oauth/authorize", params))
    assert b"Unknown application" in response.content


def test_missing_client_id_shows_page(browser):
    assert_error_page(
        browser.get("/oauth/authorize", {"response_type": "code", "redirect_uri": REDIRECT_URI})
    )


def test_inactive_client_shows_page(browser, confidential):
    confidential.client.is_active = False
    from oauth.clients import client_update

    client_update(client=confidential.client)
    assert_error_page(browser.get("/oauth/authorize", authorize_params(confidential)))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        None,
        "",
        "https://evil.example.com/callback",
        "https://app.example.com/callback/",
        "https://app.example.com/callback?x=1",
        "https://app.example.com/callback#frag",
        "https://APP.example.com/callback",
        "https://app.example.com/Callback",
        "https://app.example.com/callback/../evil",
        "https://app.example.com/callback%2F..%2Fevil",
        "https://app.example.com.evil.com/callback",
        "https://app.example.com@evil.com/callback",
        "https://evil.com\\@app.example.com/callback",
        "//evil.com/callback",
        "http://app.example.com/callback",
        "https://app.example.com:443/callback",
        "javascript:alert(1)//https://app.example.com/callback",
        "https://app.example.com/callback\r\nLocation: https://evil.com",
        "https://app.example.com/callback\x00",
    ],
)
def test_open_redirect_probes_show_page_and_never_redirect(browser, confidential, redirect_uri):
    params = authorize_params(confidential, redirect_uri=redirect_uri)
    if redirect_uri is None:
        params.pop("redirect_uri", None)
    response = assert_error_page(browser.get("/oauth/authorize", params))
    assert b"evil" not in response.content.split(b"<h1>")[0]


def test_repeated_redirect_uri_shows_page(browser, confidential):
    url = "/oauth/authorize?" + "&".join(
        [
            "response_type=code",
            f"client_id={confidential.client_id}",
            f"redirect_uri={REDIRECT_URI}",
            "redirect_uri=https://evil.example.com/cb",
        ]
    )
    assert_error_page(browser.get(url))


def test_repeated_client_id_shows_page(browser, confidential, make_client):
    other = make_client(name="Other")
    url = (
        f"/oauth/authorize?response_type=code&client_id={confidential.client_id}"
        f"&client_id={other.client_id}&redirect_uri={REDIRECT_URI}"
    )
    assert_error_page(browser.get(url))


# --- Redirect with error and state ------------------------------------------------------------


def test_unsupported_response_type_redirects_with_state(browser, confidential):
    for response_type in ("token", "id_token", "code id_token", "code token", ""):
        params = authorize_params(confidential, response_type=response_type, state="xyz")
        response = browser.get("/oauth/authorize", params)
        assert_redirected_error(response, "unsupported_response_type", "xyz")


def test_unknown_scope_is_invalid_scope(browser, confidential):
    params = authorize_params(confidential, scope="openid admin", state="s1")
    assert_redirected_error(browser.get("/oauth/authorize", params), "invalid_scope", "s1")


def test_malformed_scope_is_invalid_scope(browser, confidential):
    params = authorize_params(confidential, scope='openid "profile"', state="s1")
    assert_redirected_error(browser.get("/oauth/authorize", params), "invalid_scope", "s1")


def test_client_without_code_grant_is_unauthorized_client(browser, make_client):
    registered = make_client(grants=("client_credentials",), scopes=("api",))
    params = authorize_params(registered, scope="api", state="s1")
    # No authorization_code grant: no registered redirect URI either, so a page.
    response = browser.get("/oauth/authorize", params)
    assert response.status_code in (302, 400)
    assert "code=" not in response.get("Location", "")


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("request", "eyJhbGciOiJub25lIn0.e30.", "request_not_supported"),
        ("request_uri", "https://evil.example.com/r", "request_uri_not_supported"),
        ("registration", "{}", "registration_not_supported"),
        ("response_mode", "fragment", "invalid_request"),
        ("response_mode", "form_post", "invalid_request"),
        ("prompt", "none login", "invalid_request"),
        ("prompt", "bogus", "invalid_request"),
        ("max_age", "-1", "invalid_request"),
        ("max_age", "ten", "invalid_request"),
        ("nonce", "n" * 600, "invalid_request"),
        ("state", "s" * 3000, "invalid_request"),
        ("nonce", "line\nbreak", "invalid_request"),
    ],
)
def test_bad_parameters_redirect_with_error(browser, confidential, name, value, error):
    verifier = pkce()
    params = authorize_params(
        confidential, code_challenge=verifier.challenge, code_challenge_method="S256"
    )
    params[name] = value
    response = browser.get("/oauth/authorize", params)
    state = params["state"] if name != "state" else value
    assert_redirected_error(response, error, state)


def test_repeated_scope_redirects_with_error(browser, confidential):
    url = (
        f"/oauth/authorize?response_type=code&client_id={confidential.client_id}"
        f"&redirect_uri={REDIRECT_URI}&scope=openid&scope=profile&state=s9"
    )
    assert_redirected_error(browser.get(url), "invalid_request", "s9")


def test_error_redirect_carries_issuer(browser, confidential):
    params = authorize_params(confidential, scope="nope")
    values = query(browser.get("/oauth/authorize", params)["Location"])
    assert values["iss"] == "http://testserver"


# --- PKCE at the authorization endpoint ---------------------------------------------------------


def test_public_client_must_send_code_challenge(browser, public):
    params = authorize_params(public, state="p1", code_challenge=None)
    assert_redirected_error(browser.get("/oauth/authorize", params), "invalid_request", "p1")
    assert not AuthorizationCode.objects.exists()


def test_plain_code_challenge_method_is_refused(browser, public):
    verifier = pkce()
    params = authorize_params(
        public, code_challenge=verifier.verifier, code_challenge_method="plain", state="p2"
    )
    assert_redirected_error(browser.get("/oauth/authorize", params), "invalid_request", "p2")


def test_code_challenge_without_method_is_refused(browser, public):
    # RFC 7636 §4.3: no method means plain.
    params = authorize_params(
        public, code_challenge=pkce().challenge, code_challenge_method=None, state="p3"
    )
    assert_redirected_error(browser.get("/oauth/authorize", params), "invalid_request", "p3")


@pytest.mark.parametrize("challenge", ["short", "x" * 200, "a" * 42 + "!", "é" * 43])
def test_malformed_code_challenge_is_refused(browser, public, challenge):
    params = authorize_params(
        public, code_challenge=challenge, code_challenge_method="S256", state="p4"
    )
    assert_redirected_error(browser.get("/oauth/authorize", params), "invalid_request", "p4")


def test_public_client_with_s256_gets_a_code(browser, public):
    verifier = pkce()
    params = authorize_params(
        public, code_challenge=verifier.challenge, code_challenge_method="S256"
    )
    response = approve(browser, params)
    assert response.status_code == 302
    code = AuthorizationCode.objects.get()
    assert code.code_challenge == verifier.challenge
    assert code.code_challenge_method == "S256"


# --- Signing in ---------------------------------------------------------------------------------


def test_anonymous_user_is_sent_to_login_with_next(confidential):
    anonymous = BrowserClient()
    params = authorize_params(confidential)
    response = anonymous.get("/oauth/authorize", params)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/login"
    login_query = parse_qs(location.query)
    assert "prompt" not in login_query
    next_url = login_query["next"][0]
    assert next_url.startswith("/oauth/authorize?")
    assert parse_qs(urlsplit(next_url).query)["state"] == [params["state"]]


def test_returning_from_login_continues_the_request(alice, confidential):
    anonymous = BrowserClient()
    params = authorize_params(confidential)
    next_url = parse_qs(urlsplit(anonymous.get("/oauth/authorize", params)["Location"]).query)[
        "next"
    ][0]
    sign_in(anonymous, alice)
    response = anonymous.get(next_url)
    assert response.status_code == 200
    assert b'name="decision"' in response.content  # the consent page, not the login again


def test_prompt_none_without_session_is_login_required(confidential):
    params = authorize_params(confidential, prompt="none", state="n1")
    response = BrowserClient().get("/oauth/authorize", params)
    assert_redirected_error(response, "login_required", "n1")


def test_prompt_none_without_consent_is_consent_required(browser, confidential):
    params = authorize_params(confidential, prompt="none", state="n2")
    assert_redirected_error(browser.get("/oauth/authorize", params), "consent_required", "n2")


def test_prompt_none_with_session_and_consent_issues_code(browser, confidential):
    approve(browser, authorize_params(confidential))
    response = browser.get("/oauth/authorize", authorize_params(confidential, prompt="none"))
    assert response.status_code == 302
    assert "code" in query(response["Location"])


def _login_redirect(response):
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/login"
    return parse_qs(location.query)


def test_prompt_login_forces_password_then_continues_without_loop(browser, alice, confidential):
    approve(browser, authorize_params(confidential))  # consent remembered
    params = authorize_params(confidential, prompt="login")
    login = _login_redirect(browser.get("/oauth/authorize", params))
    assert login["prompt"] == ["login"]
    next_url = login["next"][0]
    # Coming back without having signed in again: still asked.
    assert _login_redirect(browser.get(next_url))["prompt"] == ["login"]
    # After typing the password (the login page records a newer auth_time): a code.
    sign_in(browser, alice, at=browser.session[AUTH_TIME_SESSION_KEY] + 1)
    response = browser.get(next_url)
    assert response.status_code == 302, response.content[:300]
    assert "code" in query(response["Location"])


def test_login_ticket_cannot_be_moved_to_another_request(browser, alice, confidential):
    approve(browser, authorize_params(confidential))
    login = _login_redirect(
        browser.get("/oauth/authorize", authorize_params(confidential, prompt="login"))
    )
    ticket = parse_qs(urlsplit(login["next"][0]).query)["login_ticket"][0]
    sign_in(browser, alice, at=int(time.time()) + 5)
    other = authorize_params(confidential, prompt="login", login_ticket=ticket)
    assert _login_redirect(browser.get("/oauth/authorize", other))["prompt"] == ["login"]
    forged = authorize_params(confidential, prompt="login", login_ticket="1:abc:def")
    assert _login_redirect(browser.get("/oauth/authorize", forged))["prompt"] == ["login"]


def test_max_age_exceeded_forces_password(alice, confidential):
    browser = BrowserClient()
    sign_in(browser, alice, at=int(time.time()) - 3600)
    approve(browser, authorize_params(confidential))
    login = _login_redirect(
        browser.get("/oauth/authorize", authorize_params(confidential, max_age="60"))
    )
    assert login["prompt"] == ["login"]


def test_max_age_within_limit_issues_code(browser, confidential):
    approve(browser, authorize_params(confidential))
    response = browser.get("/oauth/authorize", authorize_params(confidential, max_age="3600"))
    assert response.status_code == 302
    assert "code" in query(response["Location"])


def _ticket_url(browser, params) -> str:
    return _login_redirect(browser.get("/oauth/authorize", params))["next"][0]


def test_login_ticket_from_another_browser_does_not_count(browser, alice, confidential):
    approve(browser, authorize_params(confidential))
    params = authorize_params(confidential, prompt="login")
    minted_elsewhere = _ticket_url(BrowserClient(), params)  # an anonymous browser's ticket
    assert _login_redirect(browser.get(minted_elsewhere))["prompt"] == ["login"]


def test_login_ticket_is_spent_by_the_code(browser, alice, confidential):
    approve(browser, authorize_params(confidential))
    next_url = _ticket_url(browser, authorize_params(confidential, prompt="login"))
    sign_in(browser, alice)
    response = browser.get(next_url)
    assert response.status_code == 302 and "code" in query(response["Location"])
    assert _login_redirect(browser.get(next_url))["prompt"] == ["login"]


def test_max_age_zero_needs_a_sign_in_for_this_request(browser, alice, confidential):
    approve(browser, authorize_params(confidential))
    params = authorize_params(confidential, max_age="0")
    next_url = _ticket_url(browser, params)
    assert _login_redirect(browser.get(next_url))["prompt"] == ["login"]
    sign_in(browser, alice, at=int(time.time()) - 5)  # the password typed: fresh, time aside
    response = browser.get(next_url)
    assert response.status_code == 302 and "code" in query(response["Location"])


def test_consent_decision_rechecks_max_age(browser, alice, confidential):
    params = authorize_params(confidential, max_age="60")
    assert browser.get("/oauth/authorize", params).status_code == 200  # the consent page
    sign_in(browser, alice, at=int(time.time()) - 120)  # ...left open for two minutes
    response = browser.post("/oauth/authorize/decision", {**params, "decision": "allow"})
    assert _login_redirect(response)["prompt"] == ["login"]
    assert not AuthorizationCode.objects.exists() and not Consent.objects.exists()


def test_invalid_id_token_hint_is_invalid_request(browser, confidential):
    params = authorize_params(confidential, id_token_hint="e30.e30.", state="h1")
    values = assert_redirected_error(
        browser.get("/oauth/authorize", params), "invalid_request", "h1"
    )
    assert "id_token_hint" in values["error_description"]


def _id_token_for(user, registered) -> str:
    from oauth.oidc import id_token_issue

    return id_token_issue(
        user=user, client_id=registered.client_id, scopes=["openid"], auth_time=int(time.time())
    )


def test_id_token_hint_of_the_signed_in_user(browser, alice, confidential):
    approve(browser, authorize_params(confidential))
    hint = _id_token_for(alice, confidential)
    params = authorize_params(confidential, prompt="none", id_token_hint=hint)
    response = browser.get("/oauth/authorize", params)
    assert response.status_code == 302 and "code" in query(response["Location"])


def test_id_token_hint_of_another_user(browser, alice, confidential, make_user):
    approve(browser, authorize_params(confidential))
    hint = _id_token_for(make_user("bob"), confidential)
    params = authorize_params(confidential, prompt="none", id_token_hint=hint, state="h2")
    assert_redirected_error(browser.get("/oauth/authorize", params), "login_required", "h2")
    params = authorize_params(confidential, id_token_hint=hint, state="h3")
    next_url = _ticket_url(browser, params)
    sign_in(browser, alice)  # alice again, for this request: an answer, not another login page
    assert_redirected_error(browser.get(next_url), "login_required", "h3")


def test_session_without_auth_time_must_sign_in_again(alice, confidential):
    browser = BrowserClient()
    browser.force_login(alice)  # e.g. the admin login: when the password was typed is unknown
    login = _login_redirect(browser.get("/oauth/authorize", authorize_params(confidential)))
    assert login["prompt"] == ["login"]


def test_inactive_user_is_not_signed_in(alice, confidential):
    browser = BrowserClient()
    sign_in(browser, alice)
    alice.is_active = False
    alice.save()
    _login_redirect(browser.get("/oauth/authorize", authorize_params(confidential)))


# --- Consent ----------------------------------------------------------------------------------


def test_consent_page_names_client_and_scopes(browser, confidential):
    response = browser.get("/oauth/authorize", authorize_params(confidential))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Test App" in html
    for title in ("Sign you in", "Your profile", "Your email address", "Stay connected"):
        assert title in html
    assert response["Content-Security-Policy"].startswith("default-src 'none'")
    assert "no-store" in response["Cache-Control"]


def test_consent_is_remembered_per_user_and_client(browser, confidential, make_user):
    assert approve(browser, authorize_params(confidential)).status_code == 302
    consent = Consent.objects.get()
    assert set(consent.scope.split()) == {"openid", "profile", "email", "offline_access"}
    again = browser.get("/oauth/authorize", authorize_params(confidential, scope="openid email"))
    assert again.status_code == 302 and "code" in query(again["Location"])
    other = BrowserClient()
    sign_in(other, make_user("bob"))
    assert other.get("/oauth/authorize", authorize_params(confidential)).status_code == 200


def test_new_scope_asks_again(browser, confidential):
    approve(browser, authorize_params(confidential, scope="openid"))
    response = browser.get("/oauth/authorize", authorize_params(confidential, scope="openid email"))
    assert response.status_code == 200 and b'name="decision"' in response.content


def test_prompt_consent_asks_again(browser, confidential):
    approve(browser, authorize_params(confidential))
    response = browser.get("/oauth/authorize", authorize_params(confidential, prompt="consent"))
    assert response.status_code == 200 and b'name="decision"' in response.content


def test_first_party_client_skips_consent(browser, make_client):
    first_party = make_client(skip_consent=True)
    response = browser.get("/oauth/authorize", authorize_params(first_party))
    assert response.status_code == 302 and "code" in query(response["Location"])
    assert not Consent.objects.exists()


def test_denied_consent_redirects_access_denied(browser, confidential):
    params = authorize_params(confidential, state="d1")
    response = browser.post("/oauth/authorize/decision", {**params, "decision": "deny"})
    assert_redirected_error(response, "access_denied", "d1")
    assert not Consent.objects.exists()
    assert AuthEvent.objects.filter(event_type="consent.denied").exists()


def test_consent_decision_needs_csrf_token(alice, confidential):
    strict = BrowserClient(enforce_csrf_checks=True)
    sign_in(strict, alice)
    params = authorize_params(confidential)
    response = strict.post("/oauth/authorize/decision", {**params, "decision": "allow"})
    assert response.status_code == 403
    assert not AuthorizationCode.objects.exists()


def test_consent_form_round_trip_with_csrf(alice, confidential):
    strict = BrowserClient(enforce_csrf_checks=True)
    sign_in(strict, alice)
    page = strict.get("/oauth/authorize", authorize_params(confidential, state="c1"))
    token = page.context["csrf_token"]
    fields = dict(page.context["fields"])
    response = strict.post(
        "/oauth/authorize/decision", {**fields, "decision": "allow", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert query(response["Location"])["state"] == "c1"


def test_consent_decision_revalidates_the_request(browser, confidential):
    params = authorize_params(confidential, redirect_uri="https://evil.example.com/cb")
    response = browser.post("/oauth/authorize/decision", {**params, "decision": "allow"})
    assert_error_page(response)


def test_consent_decision_when_signed_out_goes_to_login(confidential):
    response = BrowserClient().post(
        "/oauth/authorize/decision", {**authorize_params(confidential), "decision": "allow"}
    )
    _login_redirect(response)


# --- The code redirect ----------------------------------------------------------------------------


def test_state_with_injected_parameters_round_trips_exactly(browser, confidential):
    state = "a&code=attacker&state=x#frag?y=1 %20é"
    verifier = pkce()
    params = authorize_params(
        confidential,
        state=state,
        code_challenge=verifier.challenge,
        code_challenge_method="S256",
    )
    response = approve(browser, params)
    assert response.status_code == 302
    location = response["Location"]
    assert "#" not in location
    values = parse_qs(urlsplit(location).query)
    assert values["state"] == [state]
    assert len(values["code"]) == 1 and values["code"][0] != "attacker"
    assert values["iss"] == ["http://testserver"]


def test_registered_query_is_kept(browser, make_client):
    registered = make_client(redirect_uris=("https://app.example.com/cb?tenant=7",))
    params = authorize_params(registered, redirect_uri="https://app.example.com/cb?tenant=7")
    response = approve(browser, params)
    values = parse_qs(urlsplit(response["Location"]).query)
    assert values["tenant"] == ["7"] and "code" in values


def test_native_app_scheme_redirect(browser, make_client):
    registered = make_client(
        client_type="public", redirect_uris=("com.example.app:/oauth2redirect",)
    )
    verifier = pkce()
    params = authorize_params(
        registered,
        redirect_uri="com.example.app:/oauth2redirect",
        code_challenge=verifier.challenge,
        code_challenge_method="S256",
    )
    response = approve(browser, params)
    assert response.status_code == 302
    assert response["Location"].startswith("com.example.app:/oauth2redirect?code=")


def test_post_authorization_request(browser, confidential):
    approve(browser, authorize_params(confidential))
    response = browser.post("/oauth/authorize", authorize_params(confidential, state="post"))
    # multipart body: refused without redirecting anywhere
    assert_error_page(response)
    from urllib.parse import urlencode

    response = browser.post(
        "/oauth/authorize",
        urlencode(authorize_params(confidential, state="post")),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 302
    assert query(response["Location"])["state"] == "post"


def test_code_is_stored_hashed_and_bound(browser, confidential, alice):
    from tests.oauth.conftest import code_for

    code, _, params = code_for(browser, confidential)
    row = AuthorizationCode.objects.get()
    assert code not in row.code_hash and row.code_hash != code
    assert row.client_id == confidential.client.pk
    assert row.user_id == alice.pk
    assert row.redirect_uri == REDIRECT_URI
    assert row.nonce == params["nonce"]
    assert (row.expires_at - row.created_at).total_seconds() == 60
    assert code not in str(row)
    session = browser.session
    assert int(row.auth_time.timestamp()) == session[AUTH_TIME_SESSION_KEY]
