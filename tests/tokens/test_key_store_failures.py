"""A wrong KEK, a corrupt row or a missing active key: one clear reason, 503s, never a 500."""

from __future__ import annotations

import json
import secrets

import pytest
import requests
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from tests.live import Gunicorn, manage
from tests.tokens.conftest import AUDIENCE
from tokens import keys
from tokens.authentication import AccessTokenAuthentication
from tokens.issuance import access_token_issue
from tokens.kek import kek_id
from tokens.models import SigningKey
from tokens.rotation import signing_key_rotate, signing_keys_reencrypt
from tokens.verification import TokenInvalid, access_token_verify


class IssueApi(APIView):
    authentication_classes = []

    def post(self, request):
        return Response(
            {
                "access_token": access_token_issue(
                    subject="s", audience=AUDIENCE, client_id="c"
                ).token
            }
        )


class ProtectedApi(APIView):
    authentication_classes = [AccessTokenAuthentication]

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("issue", IssueApi.as_view()),
    path("protected", ProtectedApi.as_view()),
    path("readyz", __import__("authserver.health", fromlist=["readyz"]).readyz),
    path(".well-known/jwks.json", __import__("tokens.views", fromlist=["jwks"]).jwks),
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def other_kek() -> bytes:
    return secrets.token_bytes(32)


def assert_unavailable(response):
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "temporarily_unavailable"
    assert "Traceback" not in response.content.decode()


def test_wrong_kek_names_the_cause_and_signing_answers_503(client, settings):
    kid = keys.active_signing_key().kid
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY = other_kek()
    keys.keyring_reset()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    reason = ready.json()["reason"]
    assert kid in reason
    assert "different key-encryption key than AUTHSERVER_KEY_ENCRYPTION_KEY" in reason
    assert_unavailable(client.post("/issue"))
    # Verification needs no private key: the JWKS and existing tokens keep working.
    assert client.get("/.well-known/jwks.json").status_code == 200


def test_corrupt_ciphertext_is_named_as_corrupt(client):
    row = SigningKey.objects.get(kid=keys.active_signing_key().kid)
    data = bytearray(bytes(row.private_key_ciphertext))
    data[20] ^= 0x01
    SigningKey.objects.filter(pk=row.pk).update(private_key_ciphertext=bytes(data))
    keys.keyring_reset()
    reason = client.get("/readyz").json()["reason"]
    assert f"active signing key {row.kid} cannot be decrypted" in reason
    assert "corrupt (authentication failed)" in reason
    assert_unavailable(client.post("/issue"))


def test_ciphertext_moved_to_another_kid_does_not_decrypt(client):
    keys.active_signing_key()
    signing_key_rotate()
    active = SigningKey.objects.get(state="active")
    waiting = SigningKey.objects.get(state="next")
    SigningKey.objects.filter(pk=active.pk).update(
        private_key_ciphertext=bytes(waiting.private_key_ciphertext)
    )
    keys.keyring_reset()
    assert "corrupt" in client.get("/readyz").json()["reason"]
    assert_unavailable(client.post("/issue"))


def test_corrupt_public_key_of_the_only_key_makes_jwks_503_and_its_tokens_unknown(client):
    """Issue 14.8: a corrupt row is left out, never trusted. With no sound key left the JWKS
    answers 503 (verifiers keep their cached copy); a token naming the corrupt kid is refused
    as signed by an unknown key, like any verifier using the JWKS would."""
    issued = access_token_issue(subject="s", audience=AUDIENCE, client_id="c")
    row = SigningKey.objects.get(kid=issued.kid)
    SigningKey.objects.filter(pk=row.pk).update(public_jwk={**row.public_jwk, "n": "AQAB"})
    keys.keyring_reset()
    assert_unavailable(client.get("/.well-known/jwks.json"))
    ready = client.get("/readyz").json()
    assert f"signing key {row.kid} is corrupt" in ready["reason"]
    assert_unavailable(client.post("/issue"))
    refused = client.get("/protected", headers={"authorization": f"Bearer {issued.token}"})
    assert refused.status_code == 401
    with pytest.raises(TokenInvalid, match="unknown signing key"):
        access_token_verify(issued.token, audience=AUDIENCE)


def test_private_members_smuggled_into_a_stored_jwk_are_refused(client):
    row = SigningKey.objects.get(kid=keys.active_signing_key().kid)
    SigningKey.objects.filter(pk=row.pk).update(public_jwk={**row.public_jwk, "d": "AQAB"})
    keys.keyring_reset()
    assert_unavailable(client.get("/.well-known/jwks.json"))


def test_missing_active_key_is_a_readiness_error(client):
    kid = keys.active_signing_key().kid
    SigningKey.objects.filter(kid=kid).update(state="retired")
    keys.keyring_reset()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["reason"].startswith("signing_keys: no active signing key")
    assert_unavailable(client.post("/issue"))


def test_kek_rotation_with_fallback_then_reencrypt(settings):
    old = settings.AUTHSERVER_KEY_ENCRYPTION_KEY
    kid = keys.active_signing_key().kid
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY = other_kek()
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS = [old]
    keys.keyring_reset()
    assert keys.active_signing_key().kid == kid  # decrypts with the fallback
    assert signing_keys_reencrypt() == 1
    assert SigningKey.objects.get(kid=kid).kek_id == kek_id(settings.AUTHSERVER_KEY_ENCRYPTION_KEY)
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS = []
    keys.keyring_reset()
    assert keys.active_signing_key().kid == kid


def test_manage_check_reports_one_line(child_env):
    good = manage("rotate_signing_keys", "--check", env=child_env)
    assert good.returncode == 0, good.stderr
    bad_env = {**child_env, "AUTHSERVER_KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32)}
    bad = manage("rotate_signing_keys", "--check", env=bad_env)
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in bad.stderr
    assert "different key-encryption key" in lines[0]
    issue = manage("issue_access_token", "--sub", "s", env=bad_env)
    assert issue.returncode == 1 and len(issue.stderr.strip().splitlines()) == 1
    assert issue.stdout == ""


@pytest.mark.slow
def test_gunicorn_with_a_wrong_kek_stays_up_and_says_why(child_env):
    manage("rotate_signing_keys", "--check", env=child_env)  # the first key, under the right KEK
    bad_env = {**child_env, "AUTHSERVER_KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32)}
    with Gunicorn(bad_env, workers=1) as server:
        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert "different key-encryption key" in ready.json()["reason"]
        jwks = requests.get(server.url + "/.well-known/jwks.json", timeout=10)
        assert jwks.status_code == 200
        assert len(json.loads(jwks.content)["keys"]) == 1
    assert "Traceback" not in server.output()
    assert "different key-encryption key" in server.output()
