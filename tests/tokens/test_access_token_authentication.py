"""AccessTokenAuthentication on a DRF view: 200 for good tokens, RFC 6750 401s for the rest."""

from __future__ import annotations

import pytest
from django.urls import path
from django.utils import timezone
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from tests.tokens.conftest import forge
from tokens.authentication import AccessTokenAuthentication
from tokens.issuance import access_token_issue
from tokens.rotation import signing_key_revoke


class SessionCheckingAuthentication(AccessTokenAuthentication):
    ended = {"ended-session"}

    def session_is_live(self, claims) -> bool:
        return claims.get("sid") not in self.ended


class WhoAmIApi(APIView):
    authentication_classes = [SessionCheckingAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({"sub": request.user.sub, "scope": request.auth["scope"]})


urlpatterns = [path("whoami", WhoAmIApi.as_view())]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def token_for(user, **kwargs) -> str:
    kwargs.setdefault("audience", "http://testserver/api")
    return access_token_issue(subject=user.sub, client_id="app", scope="read", **kwargs).token


def call(client, authorization: str | None):
    headers = {"authorization": authorization} if authorization is not None else {}
    return client.get("/whoami", headers=headers)


def assert_invalid_token(response, reason: str | None = None):
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "invalid_token"
    assert response["WWW-Authenticate"].startswith(
        'Bearer realm="authserver", error="invalid_token"'
    )
    if reason:
        # The verifier's reason, written as every error_description is: a sentence.
        sentence = reason[0].upper() + reason[1:] + "."
        assert body["error_description"] == sentence
        assert f'error_description="{sentence}"' in response["WWW-Authenticate"]


def test_valid_token_authenticates_the_user(client, make_user):
    user = make_user()
    response = call(client, f"Bearer {token_for(user)}")
    assert response.status_code == 200
    assert response.json() == {"sub": user.sub, "scope": "read"}


def test_no_token_is_401_without_an_error_code(client):
    response = call(client, None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="authserver"'


def test_other_schemes_are_not_ours(client):
    assert call(client, "Basic dXNlcjpwYXNz").status_code == 401
    assert "error=" not in call(client, "Basic dXNlcjpwYXNz")["WWW-Authenticate"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer a b",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer " + "A" * 10000,
        "bearer e30.e30.e30",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Bearer \u00e9\u00e9.\u00e9.\u00e9",
    ],
)
def test_malformed_tokens_are_401_json_never_500(client, authorization):
    assert_invalid_token(call(client, authorization))


def test_expired_token(client, make_user):
    user = make_user()
    past = timezone.now() - timezone.timedelta(hours=1)
    assert_invalid_token(call(client, f"Bearer {token_for(user, now=past)}"), "token expired")


def test_wrong_audience(client, make_user):
    token = token_for(make_user(), audience="https://other.example")
    assert_invalid_token(call(client, f"Bearer {token}"), "wrong audience")


def test_forged_token(client, make_user):
    user = make_user()
    now = int(timezone.now().timestamp())
    claims = {
        "iss": "http://testserver",
        "sub": user.sub,
        "aud": "http://testserver/api",
        "exp": now + 60,
        "iat": now,
        "jti": "x",
    }
    token = forge({"kid": "attacker", "typ": "at+jwt"}, claims)
    assert_invalid_token(call(client, f"Bearer {token}"), "unknown signing key")


def test_inactive_or_unknown_user(client, make_user):
    user = make_user()
    token = token_for(user)
    user.is_active = False
    user.save()
    assert_invalid_token(call(client, f"Bearer {token}"), "unknown or inactive user")
    user.delete()
    assert_invalid_token(call(client, f"Bearer {token}"), "unknown or inactive user")


def test_machine_token_subject_is_not_a_user(client):
    token = access_token_issue(
        subject="client-xyz", audience="http://testserver/api", client_id="c"
    )
    assert_invalid_token(call(client, f"Bearer {token.token}"), "unknown or inactive user")


def test_session_hook_can_reject_a_token(client, make_user):
    user = make_user()
    assert call(client, f"Bearer {token_for(user, session_id='live')}").status_code == 200
    token = token_for(user, session_id="ended-session")
    assert_invalid_token(call(client, f"Bearer {token}"), "session ended")


def test_token_of_a_revoked_key(client, make_user):
    user = make_user()
    issued = access_token_issue(subject=user.sub, audience="http://testserver/api", client_id="app")
    signing_key_revoke(kid=issued.kid)
    assert_invalid_token(call(client, f"Bearer {issued.token}"), "unknown signing key")
