"""The authorization code flow with PKCE, in process: authorize -> consent -> token -> userinfo."""

from __future__ import annotations

import jwt
import pytest

from tests.oauth.conftest import REDIRECT_URI, code_for, form_post
from tokens.keys import active_signing_key

pytestmark = pytest.mark.django_db


def test_full_flow_issues_tokens(browser, confidential, alice):
    code, verifier, params = code_for(browser, confidential)
    response = form_post(
        browser,
        "/oauth/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier.verifier,
        },
        confidential.basic(),
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert response["Cache-Control"] == "no-store"
    assert set(body) >= {"access_token", "token_type", "expires_in", "refresh_token", "id_token"}
    key = active_signing_key().backend.prepared_verifying_key
    claims = jwt.decode(
        body["id_token"], key, algorithms=["RS256"], audience=confidential.client_id
    )
    assert claims["nonce"] == params["nonce"]
    userinfo = browser.get("/oauth/userinfo", HTTP_AUTHORIZATION="Bearer " + body["access_token"])
    assert userinfo.status_code == 200
