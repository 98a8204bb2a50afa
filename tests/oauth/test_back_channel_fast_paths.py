"""client_credentials and introspection are served without authlib (oauth/grants/
client_credentials.py, oauth/endpoints/introspect.py): every refusal is still RFC 6749 §5.2 JSON
with no-store, every failed client authentication a 401 that is audited, and nothing a client
sends is a 500."""

from __future__ import annotations

import base64

import pytest
from django.test import Client as HttpClient

from audit.models import AuthEvent
from oauth.client_auth import client_authenticate
from tests.oauth.conftest import form_post
from tests.oauth.helpers import machine_token

pytestmark = pytest.mark.django_db
TOKEN = "/oauth/token"
INTROSPECT = "/oauth/introspect"


@pytest.fixture
def http():
    return HttpClient()


@pytest.fixture
def inspector(make_client):
    """A resource server: may introspect any client's tokens."""
    return make_client(
        grants=("client_credentials",),
        scopes=("api",),
        redirect_uris=(),
        post_logout_redirect_uris=(),
        is_resource_server=True,
        name="Resource server",
    )


def oauth_error(response, error: str, status: int = 400) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    body = response.json()
    assert body["error"] == error
    assert set(body) <= {"error", "error_description"}
    return body


def invalid_client(response) -> None:
    body = oauth_error(response, "invalid_client", 401)
    assert body["error_description"] == "Client authentication failed."
    assert response["WWW-Authenticate"].startswith('Basic realm="authserver"')


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# --- Introspection ------------------------------------------------------------------------------


def test_introspection_answers_with_compact_json_and_no_store(http, machine, inspector):
    token = machine_token(http, machine)
    response = form_post(http, INTROSPECT, {"token": token}, inspector.basic())
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert b": " not in response.content and b", " not in response.content
    body = response.json()
    assert body["active"] is True and body["token_type"] == "Bearer"
    assert body["client_id"] == machine.client_id


def test_introspection_by_client_secret_post(http, machine, inspector):
    token = machine_token(http, machine)
    data = {"token": token, "client_id": inspector.client_id, "client_secret": inspector.secret}
    assert form_post(http, INTROSPECT, data).json()["active"] is True


@pytest.mark.parametrize("data", [{"token": ""}, {"token_type_hint": "access_token"}])
def test_introspection_without_a_token_is_invalid_request(http, inspector, data):
    body = oauth_error(form_post(http, INTROSPECT, data, inspector.basic()), "invalid_request")
    assert body["error_description"] == "The token parameter is required."


@pytest.mark.parametrize(
    "how",
    [
        "none",
        "bearer_header",
        "wrong_secret_basic",
        "wrong_secret_post",
        "unknown_client",
        "malformed_basic",
        "client_id_only",
        "client_id_mismatch",
    ],
)
def test_introspection_client_authentication_failures_are_401(http, inspector, how):
    data, header = {"token": "anything"}, None
    if how == "bearer_header":
        header = "Bearer " + "x" * 40
    elif how == "wrong_secret_basic":
        header = basic(inspector.client_id, "x" * 43)
    elif how == "wrong_secret_post":
        data.update(client_id=inspector.client_id, client_secret="x" * 43)
    elif how == "unknown_client":
        header = basic("no-such-client", inspector.secret)
    elif how == "malformed_basic":
        header = "Basic %%%"
    elif how == "client_id_only":
        data["client_id"] = inspector.client_id
    elif how == "client_id_mismatch":
        header = inspector.basic()
        data["client_id"] = "someone-else"
    invalid_client(form_post(http, INTROSPECT, data, header))


def test_introspection_failure_is_audited_once_with_the_client_and_endpoint(http, inspector):
    header = basic(inspector.client_id, "guess-" + "x" * 30)
    for _ in range(3):
        invalid_client(form_post(http, INTROSPECT, {"token": "t"}, header, HTTP_USER_AGENT="probe"))
    event = AuthEvent.objects.get(event_type="client.auth_failed")
    assert event.client_id == inspector.client_id
    assert event.user_agent == "probe"
    assert event.details["endpoint"] == INTROSPECT
    assert event.details["method"] == "basic"
    assert "guess-" not in str(event.details)


def test_introspection_with_basic_and_a_body_secret_is_invalid_request(http, inspector):
    data = {"token": "t", "client_secret": inspector.secret}
    oauth_error(form_post(http, INTROSPECT, data, inspector.basic()), "invalid_request")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("token=a&token=b", "application/x-www-form-urlencoded"),
        ('{"token": "a"}', "application/json"),
        ("token=a%00", "application/x-www-form-urlencoded"),
        ("token=%ff%fe", "application/x-www-form-urlencoded"),
    ],
)
def test_introspection_bad_bodies_are_oauth_errors(http, inspector, body, content_type):
    response = http.post(
        INTROSPECT, body, content_type=content_type, HTTP_AUTHORIZATION=inspector.basic()
    )
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        oauth_error(response, "invalid_request")
    else:
        assert response.json() == {"active": False}


def test_introspection_get_is_405(http, inspector):
    response = http.get(INTROSPECT, HTTP_AUTHORIZATION=inspector.basic())
    oauth_error(response, "invalid_request", 405)
    assert response["Allow"] == "POST"


# --- Client credentials --------------------------------------------------------------------------


def test_client_credentials_without_any_credentials_is_audited_as_a_body_attempt(http, machine):
    invalid_client(form_post(http, TOKEN, {"grant_type": "client_credentials"}))
    event = AuthEvent.objects.get(event_type="client.auth_failed")
    assert event.client_id == ""
    assert event.details["method"] == "body"
    assert event.details["endpoint"] == TOKEN


def test_unknown_public_style_client_id_is_invalid_client(http, machine):
    data = {"grant_type": "client_credentials", "client_id": "no-such-client"}
    invalid_client(form_post(http, TOKEN, data))


def test_a_confidential_client_without_its_secret_is_invalid_client(http, machine):
    data = {"grant_type": "client_credentials", "client_id": machine.client_id}
    invalid_client(form_post(http, TOKEN, data))


def test_empty_scope_parameter_grants_no_scope(http, machine):
    data = {"grant_type": "client_credentials", "scope": ""}
    response = form_post(http, TOKEN, data, machine.basic())
    assert response.status_code == 200
    assert response.json()["scope"] == ""


# --- Neither path builds authlib's request ------------------------------------------------------


def test_client_credentials_and_introspection_bypass_authlib(http, machine, inspector, monkeypatch):
    """The point of the two fast paths: no OAuthRequest, no authlib grant or endpoint object.
    Other grants still go through authlib."""
    from oauth import server

    built = []
    original = server.OAuthRequest.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(server.OAuthRequest, "__init__", counting)
    token = machine_token(http, machine)
    assert form_post(http, INTROSPECT, {"token": token}, inspector.basic()).json()["active"]
    invalid_client(form_post(http, TOKEN, {"grant_type": "client_credentials"}))
    assert built == []
    refresh = {"grant_type": "refresh_token", "refresh_token": "x" * 43}
    oauth_error(form_post(http, TOKEN, refresh, machine.basic()), "unauthorized_client")
    assert built == [1]


# --- client_authenticate ------------------------------------------------------------------------


def test_client_authenticate_tries_the_methods_in_order(machine, public):
    basic_form: dict = {}
    assert (
        client_authenticate(
            basic_form, machine.basic(), methods=("client_secret_basic",), endpoint="token"
        ).client_id
        == machine.client_id
    )
    post_form = {"client_id": machine.client_id, "client_secret": machine.secret}
    methods = ("client_secret_basic", "client_secret_post")
    assert client_authenticate(post_form, None, methods=methods, endpoint="token").pk == (
        machine.client.pk
    )
    none_form = {"client_id": public.client_id}
    found = client_authenticate(
        none_form, None, methods=(*methods, "none"), endpoint="token"
    ).client_id
    assert found == public.client_id


def test_client_authenticate_refuses_a_public_client_at_introspection(public):
    from authlib.oauth2.rfc6749 import InvalidClientError

    with pytest.raises(InvalidClientError):
        client_authenticate(
            {"client_id": public.client_id},
            None,
            methods=("client_secret_basic", "client_secret_post", "none"),
            endpoint="introspection",
        )
