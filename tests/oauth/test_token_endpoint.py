"""The token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §5, §6): bodies, client authentication,
codes, PKCE, refresh rotation and reuse detection, client credentials."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.test import Client as HttpClient
from django.utils import timezone

from audit.models import AuthEvent
from oauth.models import AuthorizationCode
from sessions.models import Session
from tests.oauth.conftest import REDIRECT_URI, code_for, form_post, pkce
from tokens.verification import access_token_verify

pytestmark = pytest.mark.django_db
TOKEN = "/oauth/token"


@pytest.fixture
def http():
    return HttpClient()


def exchange(http, registered, code, verifier, *, auth="basic", **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier.verifier
    header = None
    if auth == "basic":
        header = registered.basic()
    elif auth == "post":
        data.update(client_id=registered.client_id, client_secret=registered.secret)
    elif auth == "none":
        data["client_id"] = registered.client_id
    data.update(extra)
    return form_post(http, TOKEN, {k: v for k, v in data.items() if v is not None}, header)


def assert_error(response, error, status=400):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert set(body) <= {"error", "error_description", "error_uri"}
    return body


def assert_invalid_client(response):
    assert_error(response, "invalid_client", 401)
    assert response["WWW-Authenticate"].startswith("Basic ")


def basic_header(client_id, secret):
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# --- Request format --------------------------------------------------------------------------


def test_json_body_is_invalid_request(http, confidential):
    body = json.dumps({"grant_type": "client_credentials"})
    response = http.post(TOKEN, body, content_type="application/json")
    assert_error(response, "invalid_request")


def test_multipart_body_is_invalid_request(http, confidential):
    response = http.post(TOKEN, {"grant_type": "client_credentials"})  # multipart/form-data
    assert_error(response, "invalid_request")


def test_get_is_refused_as_json(http):
    response = http.get(TOKEN, {"grant_type": "client_credentials"})
    assert_error(response, "invalid_request", 405)
    assert response["Allow"] == "POST"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (TOKEN, "grant_type=client_credentials"),
        ("/oauth/introspect", "token=x"),
        ("/oauth/revoke", "token=x"),
    ],
)
def test_parameters_in_the_url_are_refused(http, machine, path, body):
    response = http.post(
        path + "?client_secret=" + machine.secret,
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=machine.basic(),
    )
    error = assert_error(response, "invalid_request")
    assert error["error_description"] == "Parameters must be sent in the request body, not the URL."


@pytest.mark.parametrize("query", ["?", "?&"])
def test_a_url_with_an_empty_query_is_not_refused(http, machine, query):
    response = http.post(
        "/oauth/introspect" + query,
        "token=x",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=machine.basic(),
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"active": False}


def test_repeated_parameter_is_invalid_request(http, machine):
    response = http.post(
        TOKEN,
        "grant_type=client_credentials&scope=orders:read&scope=orders:write",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=machine.basic(),
    )
    assert_error(response, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        "grant_type=client_credentials&scope=orders%3Aread%00",
        "grant_type=client_credentials%0A",
        "grant_type=client_credentials&sc%1Fope=orders%3Aread",
        "grant_type=client_credentials&scope=%7F",
        "grant_type=client_credentials&scope=orders%3Aread%0D%0AX-Injected%3A%201",
    ],
)
def test_control_characters_in_names_or_values_are_invalid_request(http, machine, body):
    response = http.post(
        TOKEN, body, content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=machine.basic(),
    )  # fmt: skip
    body = assert_error(response, "invalid_request")
    assert body["error_description"] == "Parameters must not contain control characters."


def test_printable_and_non_ascii_characters_pass_the_control_check(http, machine):
    # Space, tilde and a non-ASCII letter are not controls: the request gets as far as the
    # scope check (an unknown scope), not the control-character refusal.
    response = http.post(
        TOKEN, "grant_type=client_credentials&scope=caf%C3%A9%20~%20x",
        content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=machine.basic(),
    )  # fmt: skip
    body = assert_error(response, "invalid_scope")
    assert "control characters" not in body.get("error_description", "")


def test_missing_grant_type(http, machine):
    assert_error(form_post(http, TOKEN, {"scope": "a"}, machine.basic()), "invalid_request")


@pytest.mark.parametrize("grant", ["password", "implicit", "token", "urn:x", "client_credential"])
def test_unsupported_grant_types(http, machine, grant):
    data = {"grant_type": grant, "username": "alice", "password": "x"}
    body = assert_error(form_post(http, TOKEN, data, machine.basic()), "unsupported_grant_type")
    assert body["error_description"].startswith("The grant_type is not supported.")


# --- Client authentication: every failure is a 401 with WWW-Authenticate ----------------------


def test_client_secret_basic_and_post_both_work(http, machine):
    data = {"grant_type": "client_credentials"}
    assert form_post(http, TOKEN, data, machine.basic()).status_code == 200
    post = {**data, "client_id": machine.client_id, "client_secret": machine.secret}
    assert form_post(http, TOKEN, post).status_code == 200


@pytest.mark.parametrize(
    "how",
    [
        "wrong_secret_basic",
        "wrong_secret_post",
        "unknown_client_basic",
        "unknown_client_post",
        "no_credentials",
        "malformed_basic",
        "non_utf8_basic",
        "basic_without_colon",
        "client_id_mismatch",
        "empty_secret_post",
    ],
)
def test_invalid_client_is_401(http, machine, how):
    data = {"grant_type": "client_credentials"}
    header = None
    if how == "wrong_secret_basic":
        header = basic_header(machine.client_id, "x" * 43)
    elif how == "wrong_secret_post":
        data.update(client_id=machine.client_id, client_secret="x" * 43)
    elif how == "unknown_client_basic":
        header = basic_header("unknown", machine.secret)
    elif how == "unknown_client_post":
        data.update(client_id="unknown", client_secret=machine.secret)
    elif how == "malformed_basic":
        header = "Basic !!!notbase64"
    elif how == "non_utf8_basic":
        header = "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode()
    elif how == "basic_without_colon":
        header = "Basic " + base64.b64encode(machine.client_id.encode()).decode()
    elif how == "client_id_mismatch":
        header = machine.basic()
        data["client_id"] = "someone-else"
    elif how == "empty_secret_post":
        data.update(client_id=machine.client_id, client_secret="")
    assert_invalid_client(form_post(http, TOKEN, data, header))


def test_failed_client_authentication_is_audited_without_the_secret(http, machine):
    data = {"grant_type": "client_credentials", "client_id": machine.client_id}
    data["client_secret"] = "guess-" + "x" * 30
    assert_invalid_client(form_post(http, TOKEN, data))
    event = AuthEvent.objects.get(event_type="client.auth_failed")
    assert event.client_id == machine.client_id
    assert "guess-" not in json.dumps(event.details)


def test_basic_and_body_secret_together_is_invalid_request(http, machine):
    data = {"grant_type": "client_credentials", "client_secret": machine.secret}
    assert_error(form_post(http, TOKEN, data, machine.basic()), "invalid_request")


def test_rotated_secret_stops_working_at_once(http, machine):
    from oauth.clients import client_secret_rotate

    data = {"grant_type": "client_credentials"}
    assert form_post(http, TOKEN, data, machine.basic()).status_code == 200  # cached now
    rotated = client_secret_rotate(client=machine.client)
    assert_invalid_client(form_post(http, TOKEN, data, machine.basic()))
    new_header = basic_header(machine.client_id, rotated.secret)
    assert form_post(http, TOKEN, data, new_header).status_code == 200


# --- Client credentials ---------------------------------------------------------------------------


def test_client_credentials_token(http, machine):
    response = form_post(http, TOKEN, {"grant_type": "client_credentials"}, machine.basic())
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "orders:read orders:write"
    claims = access_token_verify(body["access_token"], audience="https://orders.example.com")
    assert claims["sub"] == machine.client_id
    assert claims["client_id"] == machine.client_id
    assert "sid" not in claims


def test_client_credentials_narrower_scope(http, machine):
    data = {"grant_type": "client_credentials", "scope": "orders:read"}
    assert form_post(http, TOKEN, data, machine.basic()).json()["scope"] == "orders:read"


@pytest.mark.parametrize("scope", ["orders:delete", "openid", "orders:read openid", 'a"b'])
def test_client_credentials_invalid_scope(http, machine, scope):
    data = {"grant_type": "client_credentials", "scope": scope}
    assert_error(form_post(http, TOKEN, data, machine.basic()), "invalid_scope")


def test_client_credentials_default_audience_is_the_client_id(http, make_client):
    """Issue 13.1: never AUTHSERVER_DEFAULT_AUDIENCE (the first-party API's)."""
    registered = make_client(grants=("client_credentials",), scopes=("a",), redirect_uris=())
    body = form_post(http, TOKEN, {"grant_type": "client_credentials"}, registered.basic()).json()
    claims = access_token_verify(body["access_token"], audience=registered.client_id)
    assert claims["aud"] == registered.client_id


def test_client_credentials_lifetime_per_client(http, make_client):
    registered = make_client(
        grants=("client_credentials",), scopes=("a",), redirect_uris=(), access_token_lifetime=45
    )
    body = form_post(http, TOKEN, {"grant_type": "client_credentials"}, registered.basic()).json()
    assert body["expires_in"] == 45


def test_client_credentials_needs_the_grant(http, confidential):
    response = form_post(http, TOKEN, {"grant_type": "client_credentials"}, confidential.basic())
    assert_error(response, "unauthorized_client")


def test_public_client_cannot_use_client_credentials(http, public):
    data = {"grant_type": "client_credentials", "client_id": public.client_id}
    assert_error(form_post(http, TOKEN, data), "unauthorized_client")


# --- Authorization code -----------------------------------------------------------------------


def test_code_exchange_with_basic_and_post(browser, http, confidential):
    for auth in ("basic", "post"):
        code, verifier, _ = code_for(browser, confidential)
        response = exchange(http, confidential, code, verifier, auth=auth)
        assert response.status_code == 200, response.content
        assert response["Cache-Control"] == "no-store"
        assert response["Pragma"] == "no-cache"


def test_public_client_exchanges_with_verifier_only(browser, http, public):
    code, verifier, _ = code_for(browser, public)
    response = exchange(http, public, code, verifier, auth="none")
    assert response.status_code == 200, response.content


def test_access_token_audience_is_the_clients(browser, http, make_client):
    registered = make_client(audiences=("https://api.one.example", "https://api.two.example"))
    code, verifier, _ = code_for(browser, registered)
    body = exchange(http, registered, code, verifier).json()
    claims = access_token_verify(body["access_token"], audience="https://api.two.example")
    assert claims["aud"] == ["https://api.one.example", "https://api.two.example"]
    default = make_client(name="Default")
    code, verifier, _ = code_for(browser, default)
    body = exchange(http, default, code, verifier).json()
    claims = access_token_verify(body["access_token"], audience=default.client_id)
    assert claims["aud"] == default.client_id


def test_code_is_single_use_and_replay_revokes_its_tokens(browser, http, confidential):
    code, verifier, _ = code_for(browser, confidential)
    first = exchange(http, confidential, code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    userinfo = http.get("/oauth/userinfo", HTTP_AUTHORIZATION="Bearer " + tokens["access_token"])
    assert userinfo.status_code == 200

    replay = exchange(http, confidential, code, verifier)
    assert_error(replay, "invalid_grant")
    session = Session.objects.exclude(client_id="").get()
    assert session.revoke_reason == "code_replayed"
    # Its access token is rejected, and its refresh token no longer refreshes.
    userinfo = http.get("/oauth/userinfo", HTTP_AUTHORIZATION="Bearer " + tokens["access_token"])
    assert userinfo.status_code == 401
    refresh = form_post(
        http,
        TOKEN,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        confidential.basic(),
    )
    assert_error(refresh, "invalid_grant")
    assert AuthEvent.objects.filter(event_type="oauth.code_replayed").count() == 1


def test_code_of_another_client_is_invalid_grant(browser, http, confidential, make_client):
    other = make_client(name="Other")
    code, verifier, _ = code_for(browser, confidential)
    assert_error(exchange(http, other, code, verifier), "invalid_grant")
    # Not consumed by the failed attempt: the rightful client still gets its tokens.
    assert exchange(http, confidential, code, verifier).status_code == 200


def test_redirect_uri_must_match_at_exchange(browser, http, make_client):
    registered = make_client(redirect_uris=(REDIRECT_URI, "https://app.example.com/other"))
    code, verifier, _ = code_for(browser, registered)
    response = exchange(
        http, registered, code, verifier, redirect_uri="https://app.example.com/other"
    )
    assert_error(response, "invalid_grant")
    code, verifier, _ = code_for(browser, registered)
    assert_error(exchange(http, registered, code, verifier, redirect_uri=None), "invalid_grant")


def test_expired_code_is_invalid_grant(browser, http, confidential):
    code, verifier, _ = code_for(browser, confidential)
    AuthorizationCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(exchange(http, confidential, code, verifier), "invalid_grant")


@pytest.mark.parametrize("code", ["", "x" * 43, "A" * 10, "é" * 43, "a" * 5000])
def test_bogus_codes_are_invalid(http, confidential, code):
    response = exchange(http, confidential, code, pkce())
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_grant", "invalid_request"}


def test_missing_code_is_invalid_request(http, confidential):
    assert_error(exchange(http, confidential, None, pkce()), "invalid_request")


# --- PKCE downgrade -----------------------------------------------------------------------------


def test_missing_verifier_is_refused(browser, http, confidential, public):
    for registered, auth in ((confidential, "basic"), (public, "none")):
        code, _, _ = code_for(browser, registered)
        response = exchange(http, registered, code, None, auth=auth)
        assert_error(response, "invalid_request")


def test_wrong_verifier_is_invalid_grant(browser, http, public):
    code, _, _ = code_for(browser, public)
    assert_error(exchange(http, public, code, pkce(), auth="none"), "invalid_grant")
    assert not Session.objects.exclude(client_id="").exists()


def test_plain_verifier_equal_to_challenge_is_refused(browser, http, public):
    code, verifier, _ = code_for(browser, public)
    # Sending the challenge itself as the verifier is what a plain downgrade would accept.
    response = exchange(
        http, public, code, None, auth="none", code_verifier=verifier.challenge + "x" * 0
    )
    assert_error(response, "invalid_grant")


def test_verifier_without_challenge_is_refused(browser, http, make_client):
    from tests.oauth.conftest import approve, authorize_params, query

    legacy = make_client(pkce_required=False)
    response = approve(browser, authorize_params(legacy, code_challenge=None))
    code = query(response["Location"])["code"]
    assert_error(exchange(http, legacy, code, pkce()), "invalid_request")


def test_confidential_client_exempt_from_pkce_works_without_it(browser, http, make_client):
    from tests.oauth.conftest import approve, authorize_params, query

    legacy = make_client(pkce_required=False)
    response = approve(browser, authorize_params(legacy, code_challenge=None))
    code = query(response["Location"])["code"]
    assert exchange(http, legacy, code, None).status_code == 200


def test_code_without_challenge_is_refused_once_the_client_requires_pkce(
    browser, http, make_client
):
    from oauth.clients import client_update
    from tests.oauth.conftest import approve, authorize_params, query

    legacy = make_client(pkce_required=False)
    response = approve(browser, authorize_params(legacy, code_challenge=None))
    code = query(response["Location"])["code"]
    legacy.client.pkce_required = True
    client_update(client=legacy.client)
    assert_error(exchange(http, legacy, code, None), "invalid_grant")


# --- Refresh tokens -------------------------------------------------------------------------


def tokens_for(browser, http, registered, auth="basic", **kw):
    code, verifier, _ = code_for(browser, registered, **kw)
    response = exchange(http, registered, code, verifier, auth=auth)
    assert response.status_code == 200, response.content
    return response.json()


def refresh(http, registered, value, auth="basic", **extra):
    data = {"grant_type": "refresh_token", "refresh_token": value, **extra}
    header = registered.basic() if auth == "basic" else None
    if auth == "none":
        data["client_id"] = registered.client_id
    return form_post(http, TOKEN, data, header)


def test_refresh_rotates_and_reuse_revokes_the_session(browser, http, confidential):
    first = tokens_for(browser, http, confidential)
    second = refresh(http, confidential, first["refresh_token"])
    assert second.status_code == 200 and second["Cache-Control"] == "no-store"
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    third = refresh(http, confidential, second["refresh_token"]).json()
    # The spent token comes back: the whole session is revoked, newest token included.
    assert_error(refresh(http, confidential, first["refresh_token"]), "invalid_grant")
    assert_error(refresh(http, confidential, third["refresh_token"]), "invalid_grant")
    assert Session.objects.exclude(client_id="").get().revoke_reason == "reuse_detected"
    userinfo = http.get("/oauth/userinfo", HTTP_AUTHORIZATION="Bearer " + third["access_token"])
    assert userinfo.status_code == 401


def test_refreshed_access_token_keeps_audience_and_scope(browser, http, make_client):
    registered = make_client(audiences=("https://api.example.com",))
    first = tokens_for(browser, http, registered)
    body = refresh(http, registered, first["refresh_token"]).json()
    claims = access_token_verify(body["access_token"], audience="https://api.example.com")
    assert claims["scope"] == "openid profile email offline_access"
    assert body["scope"] == claims["scope"]


def test_refresh_token_of_another_client_is_invalid_grant(browser, http, confidential, make_client):
    other = make_client(name="Other")
    first = tokens_for(browser, http, confidential)
    assert_error(refresh(http, other, first["refresh_token"]), "invalid_grant")
    # Not counted as a use: the rightful client can still refresh.
    assert refresh(http, confidential, first["refresh_token"]).status_code == 200


def test_public_client_refresh(browser, http, public):
    first = tokens_for(browser, http, public, auth="none")
    assert refresh(http, public, first["refresh_token"], auth="none").status_code == 200


def test_refresh_scope_may_repeat_but_not_change(browser, http, confidential):
    first = tokens_for(browser, http, confidential)
    same = refresh(
        http, confidential, first["refresh_token"], scope="offline_access openid email profile"
    )
    assert same.status_code == 200
    wider = refresh(http, confidential, same.json()["refresh_token"], scope="openid admin")
    assert_error(wider, "invalid_scope")


@pytest.mark.parametrize("value", ["", "x", "a" * 43, "é" * 43, "a.b.c", "a" * 9000])
def test_bogus_refresh_tokens(http, confidential, value):
    response = refresh(http, confidential, value)
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_grant", "invalid_request"}


def test_no_refresh_token_without_offline_access(browser, http, confidential):
    body = tokens_for(browser, http, confidential, scope="openid profile")
    assert "refresh_token" not in body
    assert Session.objects.exclude(client_id="").get().refresh_digest is None


def test_client_setting_allows_refresh_without_offline_access(browser, http, make_client):
    registered = make_client(refresh_without_offline_access=True)
    assert "refresh_token" in tokens_for(browser, http, registered, scope="openid")


def test_no_refresh_token_without_the_refresh_grant(browser, http, make_client):
    registered = make_client(grants=("authorization_code",))
    body = tokens_for(browser, http, registered)
    assert "refresh_token" not in body


def test_revoking_the_refresh_grant_stops_refresh(browser, http, confidential):
    from oauth.clients import client_update

    first = tokens_for(browser, http, confidential)
    confidential.client.grant_types = "authorization_code"
    client_update(client=confidential.client)
    assert_error(refresh(http, confidential, first["refresh_token"]), "unauthorized_client")


def test_deactivated_client_gets_nothing(browser, http, confidential):
    from oauth.clients import client_update

    first = tokens_for(browser, http, confidential)
    confidential.client.is_active = False
    client_update(client=confidential.client)
    assert_invalid_client(refresh(http, confidential, first["refresh_token"]))


def test_token_responses_never_reach_the_log(browser, http, confidential, caplog):
    caplog.set_level("DEBUG")
    code, verifier, _ = code_for(browser, confidential)
    body = exchange(http, confidential, code, verifier).json()
    refreshed = refresh(http, confidential, body["refresh_token"]).json()
    exchange(http, confidential, code, verifier)  # a replay, logged as a warning
    text = caplog.text
    secrets_seen = [
        code,
        verifier.verifier,
        confidential.secret,
        body["access_token"],
        body["refresh_token"],
        body["id_token"],
        refreshed["refresh_token"],
        refreshed["access_token"],
    ]
    for value in secrets_seen:
        assert value not in text
    jwt.get_unverified_header(body["id_token"])  # sanity: the values were real
