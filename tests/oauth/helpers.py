"""Shared steps for the token-using tests: get tokens for a client the way a client would."""

from __future__ import annotations

from tests.oauth.conftest import REDIRECT_URI, code_for, form_post


def tokens_for(browser, http, registered, *, auth="basic", **kw) -> dict:
    code, verifier, _ = code_for(browser, registered, **kw)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier.verifier,
    }
    header = registered.basic() if auth == "basic" else None
    if auth == "none":
        data["client_id"] = registered.client_id
    response = form_post(http, "/oauth/token", data, header)
    assert response.status_code == 200, response.content
    return response.json()


def machine_token(http, registered) -> str:
    response = form_post(
        http, "/oauth/token", {"grant_type": "client_credentials"}, registered.basic()
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def userinfo(http, access_token: str):
    return http.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}")
