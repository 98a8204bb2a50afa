"""Small HTTP helpers for the multi-instance tests (black-box, public endpoints only)."""

from __future__ import annotations

import base64
import json
import re

import requests

from tests.conftest import PASSWORD

TIMEOUT = 20


def login(url: str, username: str, password: str = PASSWORD) -> requests.Response:
    return requests.post(
        url + "/api/v1/auth/login",
        json={"username": username, "password": password},
        timeout=TIMEOUT,
    )


def refresh(url: str, token: str, http: requests.Session | None = None) -> requests.Response:
    return (http or requests).post(
        url + "/api/v1/auth/refresh", json={"refresh_token": token}, timeout=TIMEOUT
    )


def bearer_get(url: str, path: str, access_token: str) -> requests.Response:
    return requests.get(
        url + path, headers={"Authorization": f"Bearer {access_token}"}, timeout=TIMEOUT
    )


def jwt_part(token: str, index: int) -> dict:
    """The header (0) or claims (1) of a JWT, unverified: for reading kid and sid only."""
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwks_kids(url: str) -> list[str]:
    response = requests.get(url + "/.well-known/jwks.json", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return [key["kid"] for key in response.json()["keys"]]


def _csrf(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def admin_session(url: str, username: str, password: str = PASSWORD) -> requests.Session:
    """Signed in to the Django admin of one instance, as a person would be."""
    http = requests.Session()
    page = http.get(url + "/admin/login/", timeout=TIMEOUT)
    response = http.post(
        url + "/admin/login/",
        data={
            "csrfmiddlewaretoken": _csrf(page.text),
            "username": username,
            "password": password,
            "next": "/admin/",
        },
        timeout=TIMEOUT,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    return http


def admin_rotate(http: requests.Session, url: str, *, immediate: bool) -> None:
    """Press "Rotate signing key" in the admin (optionally "activate now")."""
    path = url + "/admin/tokens/signingkey/rotate/"
    page = http.get(path, timeout=TIMEOUT)
    assert page.status_code == 200, page.text[:500]
    data = {"csrfmiddlewaretoken": _csrf(page.text)}
    if immediate:
        data["immediate"] = "1"
    response = http.post(path, data=data, timeout=TIMEOUT, allow_redirects=False)
    assert response.status_code == 302, response.text[:500]
