"""Claims for apps (issue 18.4): the groups scope, per-client claim mappings, the rules a mapping
is checked against when saved, and the cost of issuing without one."""

from __future__ import annotations

import html

import jwt
import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client as BrowserClient
from django.test.utils import CaptureQueriesContext

from oauth.claims import RESERVED_CLAIMS
from oauth.clients import ClientError
from oauth.models import Client
from tests.oauth.conftest import form_post
from tests.oauth.helpers import tokens_for, userinfo

pytestmark = pytest.mark.django_db

BRIEF_RESERVED = (
    "iss sub aud exp iat nbf jti auth_time nonce acr amr azp at_hash c_hash sid scope client_id cnf"
)
SCOPES = ("openid", "profile", "email", "groups", "offline_access")


def unverified(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_every_reserved_claim_of_the_brief_is_reserved():
    assert set(BRIEF_RESERVED.split()) <= RESERVED_CLAIMS


@pytest.mark.parametrize("claim", sorted(RESERVED_CLAIMS))
@pytest.mark.parametrize("field", ["id_token_claims", "userinfo_claims", "access_token_claims"])
def test_a_reserved_claim_is_refused(make_client, claim, field):
    with pytest.raises(ClientError, match="reserved claim") as refused:
        make_client(scopes=SCOPES, **{field: {claim: "groups"}})
    assert refused.value.field == field
    assert not Client.objects.exists()


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("roles = password", "'password' is not a user attribute"),
        ("roles = is_superuser", "not a user attribute"),
        ("roles", "claim = attribute"),
        ("= groups", "claim = attribute"),
        ("email = email", "released by the email scope"),
        ("groups = groups", "released by the groups scope"),
        ("9lives = groups", "not a claim name"),
        ("roles = groups\nroles = email", "mapped twice"),
    ],
)
def test_a_bad_mapping_is_refused_with_its_reason(make_client, mapping, message):
    with pytest.raises(ClientError, match=message):
        make_client(scopes=SCOPES, access_token_claims=mapping)


def test_an_attribute_needs_its_scope_among_the_allowed_scopes(make_client):
    with pytest.raises(ClientError, match="needs the groups scope"):
        make_client(access_token_claims={"roles": "groups"})  # scopes without groups
    with pytest.raises(ClientError, match="needs the openid scope"):
        make_client(scopes=("email",), id_token_claims={"mail": "email"})


@pytest.fixture
def admin_browser(make_user):
    browser = BrowserClient()
    browser.force_login(make_user("root", is_staff=True, is_superuser=True))
    return browser


ADMIN_FORM = {
    "name": "Admin App",
    "client_type": "confidential",
    "is_active": "on",
    "redirect_uris": "https://app.example.com/cb",
    "post_logout_redirect_uris": "",
    "grant_types": ["authorization_code"],
    "scopes": "openid profile groups",
    "audiences": "",
    "access_token_lifetime": "",
    "pkce_required": "on",
    "id_token_claims": "",
    "userinfo_claims": "",
    "access_token_claims": "",
}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sub = username", "access token claims: 'sub' is a reserved claim"),
        ("roles = shoe_size", "access token claims: 'shoe_size' is not a user attribute"),
        ("mail = email", "access token claims: `mail = email` needs the email scope"),
    ],
)
def test_the_admin_shows_a_bad_mapping_next_to_its_box(admin_browser, value, message):
    response = admin_browser.post(
        "/admin/oauth/client/add/", {**ADMIN_FORM, "access_token_claims": value}
    )
    assert response.status_code == 200
    assert message in html.unescape(response.content.decode())
    assert "access_token_claims" in response.context["adminform"].form.errors
    assert not Client.objects.exists()


def test_the_admin_saves_a_good_mapping_normalised(admin_browser):
    form = {**ADMIN_FORM, "access_token_claims": "  roles=groups \n\n# a note\nlogin = username"}
    response = admin_browser.post("/admin/oauth/client/add/", form)
    assert response.status_code == 200  # the secret page
    assert Client.objects.get().access_token_claims == "roles = groups\nlogin = username"


def test_groups_and_mapped_claims_in_each_token(make_client, alice, browser, client):
    alice.groups.add(Group.objects.create(name="ops"), Group.objects.create(name="admins"))
    registered = make_client(
        scopes=SCOPES,
        id_token_claims="roles = groups\nlogin = username",
        userinfo_claims={"full": "full_name"},
        access_token_claims={"roles": "groups", "mail": "email"},
    )
    scope = "openid profile email groups offline_access"
    tokens = tokens_for(browser, client, registered, scope=scope)
    id_claims = unverified(tokens["id_token"])
    assert id_claims["groups"] == ["admins", "ops"] == id_claims["roles"]
    assert id_claims["login"] == "alice" and "mail" not in id_claims
    access = unverified(tokens["access_token"])
    assert access["groups"] == ["admins", "ops"] == access["roles"]
    assert access["mail"] == alice.email and "login" not in access
    info = userinfo(client, tokens["access_token"]).json()
    assert info["groups"] == ["admins", "ops"] and info["full"] == "Alice Liddell"
    assert "roles" not in info


def test_a_mapped_attribute_is_left_out_when_its_scope_was_not_granted(
    make_client, alice, browser, client
):
    alice.groups.add(Group.objects.create(name="ops"))
    registered = make_client(
        scopes=SCOPES,
        id_token_claims={"roles": "groups", "login": "username"},
        access_token_claims={"roles": "groups", "mail": "email"},
    )
    tokens = tokens_for(browser, client, registered, scope="openid offline_access")
    for token in (tokens["id_token"], tokens["access_token"]):
        claims = unverified(token)
        assert not {"roles", "login", "mail", "groups"} & set(claims)


def test_no_mapping_and_no_groups_scope_costs_no_query_more(make_client, browser, client):
    """The benchmark's path: neither the exchange nor the refresh reads groups or user columns
    for claims."""
    registered = make_client()
    with CaptureQueriesContext(connection) as exchange:
        tokens = tokens_for(browser, client, registered)
    with CaptureQueriesContext(connection) as refresh:
        response = form_post(
            client,
            "/oauth/token",
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            registered.basic(),
        )
    assert response.status_code == 200
    for captured in (exchange, refresh):
        assert not [q for q in captured.captured_queries if "auth_group" in q["sql"]]
    # The refresh reads the session and its user's few columns, and writes the rotation.
    user_reads = [q for q in refresh.captured_queries if 'FROM "accounts_user"' in q["sql"]]
    assert user_reads == []


def test_a_refresh_reads_groups_afresh(make_client, alice, browser, client):
    ops = Group.objects.create(name="ops")
    alice.groups.add(ops)
    registered = make_client(scopes=SCOPES, access_token_claims={"mail": "email"})
    tokens = tokens_for(browser, client, registered, scope="openid email groups offline_access")
    assert unverified(tokens["access_token"])["groups"] == ["ops"]
    alice.groups.remove(ops)
    response = form_post(
        client,
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        registered.basic(),
    )
    access = unverified(response.json()["access_token"])
    assert access["groups"] == [] and access["mail"] == alice.email


def test_client_credentials_cannot_have_the_groups_scope(make_client):
    with pytest.raises(ClientError, match="need the authorization_code grant"):
        make_client(
            grants=("client_credentials",),
            scopes=("groups",),
            redirect_uris=(),
            post_logout_redirect_uris=(),
        )


def test_the_consent_page_names_the_groups_scope(make_client, browser):
    from tests.oauth.conftest import authorize_params

    registered = make_client(scopes=SCOPES)
    page = browser.get("/oauth/authorize", authorize_params(registered, scope="openid groups"))
    assert page.status_code == 200
    assert "Your groups" in page.content.decode()
