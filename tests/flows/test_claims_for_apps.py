"""Claims for apps, for real (issue 18.4): a client given a claim mapping and the groups scope
goes through the code flow with authlib's client against authserver under gunicorn; its ID token
is read by joserfc, its access tokens by PyJWT, both from the JWKS; the DRF permission of
docs/guides/claims-for-apps.md (snippet drf-groups) authorizes on the verified access
token's groups.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIRequestFactory

from accounts.services import user_create
from authserver import settings as app_settings
from oauth.clients import client_create
from tests.conftest import PASSWORD
from tests.flows.test_downstream_verification import docs_snippet
from tests.flows.test_oauth_interop import (
    REDIRECT_URI,
    browser_authorize,
    discover,
    validate_id_token,
)
from tests.live import Gunicorn

pytestmark = pytest.mark.slow

API = "https://reports.example.com"
SCOPE = "openid profile email groups offline_access"


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    alice = user_create(username="alice", email="alice@example.com", password=PASSWORD)
    alice.first_name = "Alice"
    alice.save(update_fields=["first_name"])
    bob = user_create(username="bob", email="bob@example.com", password=PASSWORD)
    finance, _ = Group.objects.get_or_create(name="finance")
    staff, _ = Group.objects.get_or_create(name="staff")
    alice.groups.add(finance, staff)
    bob.groups.add(staff)
    running = Gunicorn(child_env, workers=2)
    running.env["AUTHSERVER_ISSUER"] = running.url
    with running:
        yield running


def _tokens(server: Gunicorn, meta: dict, registered, *, username: str) -> tuple[dict, str]:
    session = OAuth2Session(
        registered.client.client_id,
        registered.secret,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(12)
    url, _ = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    browser = requests.Session()
    callback = browser_authorize(server, browser, url, username=username)
    token = session.fetch_token(
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    return token | {"_session": session}, nonce


def _access_claims(meta: dict, token: str) -> dict:
    key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=API, issuer=meta["issuer"])


def test_mapped_claims_and_groups_reach_the_app_and_its_api(server):
    meta = discover(server)
    assert "groups" in meta["scopes_supported"] and "groups" in meta["claims_supported"]
    registered = client_create(
        name="Reports",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
        scopes=SCOPE.split(),
        audiences=[API],
        id_token_claims={"roles": "groups", "login": "username"},
        userinfo_claims={"contact": "email"},
        access_token_claims={"roles": "groups", "given": "first_name"},
    )
    client_id = registered.client.client_id

    token, nonce = _tokens(server, meta, registered, username="alice")
    id_claims = validate_id_token(meta, token["id_token"], client_id, nonce)
    assert id_claims["groups"] == ["finance", "staff"]
    assert id_claims["roles"] == ["finance", "staff"]
    assert id_claims["login"] == "alice"
    assert "contact" not in id_claims and "given" not in id_claims

    access = _access_claims(meta, token["access_token"])
    assert access["groups"] == ["finance", "staff"]
    assert access["roles"] == ["finance", "staff"]
    assert access["given"] == "Alice"
    assert access["client_id"] == client_id and access["iss"] == meta["issuer"]

    session = token["_session"]
    info = session.get(meta["userinfo_endpoint"], timeout=10).json()
    assert info["groups"] == ["finance", "staff"]
    assert info["contact"] == "alice@example.com"
    assert "roles" not in info

    # Group changes reach the access token at the next refresh.
    Group.objects.get(name="staff").user_set.remove(get_user_model().objects.get(username="alice"))
    refreshed = session.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    access = _access_claims(meta, refreshed["access_token"])
    assert access["groups"] == ["finance"] and access["roles"] == ["finance"]
    assert access["given"] == "Alice"

    # The DRF permission of docs/guides/claims-for-apps.md authorizes on the verified token:
    # alice (finance) may read the report, bob (staff only) may not, nor may anyone without a token.
    namespace: dict = {}
    exec(docs_snippet("drf-groups"), namespace)  # noqa: S102 - our own docs
    bob_token, _ = _tokens(server, meta, registered, username="bob")
    assert _access_claims(meta, bob_token["access_token"])["groups"] == ["staff"]

    from rest_framework.authentication import BaseAuthentication

    class VerifiedAccessToken(BaseAuthentication):
        """Stands for simplejwt's stateless authentication: PyJWT from the JWKS."""

        def authenticate(self, request):
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                return None
            return object(), _access_claims(meta, header.removeprefix("Bearer "))

    class Report(namespace["FinanceReport"]):
        authentication_classes = [VerifiedAccessToken]

    view = Report.as_view()
    factory = APIRequestFactory()

    def call(access_token: str | None) -> int:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {access_token}"} if access_token else {}
        return view(factory.get("/report", **headers)).status_code

    assert call(refreshed["access_token"]) == 200
    assert call(bob_token["access_token"]) == 403
    assert call(None) in (401, 403)
    assert "Traceback" not in server.output()
