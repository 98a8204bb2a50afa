"""API paths answer JSON errors, in one style (issue 18.6), against authserver under gunicorn:
an unknown path or a trailing slash under /api/v1 is a JSON 404 (not the HTML page), a wrong
method a JSON 405 with Allow, a password that is not a string a 400 (not a 401 "wrong
password"), an empty body names every missing field, and every description is a sentence."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from accounts.services import user_create
from authserver import settings as app_settings
from tests.conftest import PASSWORD
from tests.live import Gunicorn

pytestmark = pytest.mark.slow

SENTENCE = re.compile(r"^([a-z_]+: )?[A-Z].*[.]$")


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    with Gunicorn(child_env, workers=1) as running:
        yield running


def _error(response: requests.Response, status: int, error: str) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error, body
    description = body["error_description"]
    for part in re.split(r"(?<=\.) (?=[a-z_]+: )", description):
        assert SENTENCE.match(part), description
    return description


def test_api_paths_answer_json_errors(server):
    url = server.url
    login = url + "/api/v1/auth/login"

    # Unknown paths and trailing slashes: JSON 404, the slash named.
    assert _error(requests.get(url + "/api/v1/nope", timeout=10), 404, "not_found")
    described = _error(requests.get(url + "/api/v1/me/", timeout=10), 404, "not_found")
    assert "no trailing slash: /api/v1/me." in described
    _error(requests.post(login + "/", json={}, timeout=10), 404, "not_found")
    _error(requests.get(url + "/.well-known/nope", timeout=10), 404, "not_found")
    slash = requests.post(url + "/oauth/token/", data={"grant_type": "x"}, timeout=10)
    assert "/oauth/token." in _error(slash, 404, "not_found")
    # People's pages keep the HTML 404.
    page = requests.get(url + "/no-such-page", timeout=10)
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")

    # Wrong methods: JSON 405 with Allow, on DRF views and plain ones alike.
    for response, allowed in (
        (requests.delete(login, timeout=10), "POST"),
        (requests.post(url + "/.well-known/jwks.json", timeout=10), "GET"),
        (requests.post(url + "/.well-known/openid-configuration", timeout=10), "GET"),
    ):
        code = _error(response, 405, "method_not_allowed")
        assert allowed in response.headers["Allow"] and allowed in code
    token = requests.get(url + "/oauth/token", timeout=10)
    assert "use POST." in _error(token, 405, "invalid_request")

    # Bad bodies: 400, every field named, never a 401 for a malformed request.
    everything = _error(requests.post(login, json={}, timeout=10), 400, "invalid_request")
    assert "username: This field is required." in everything
    assert "password: This field is required." in everything
    numeric = requests.post(login, json={"username": "alice", "password": 123}, timeout=10)
    assert _error(numeric, 400, "invalid_request") == "password: Not a valid string."
    both = requests.post(login, json={"password": 123}, timeout=10)
    assert _error(both, 400, "invalid_request") == (
        "username: This field is required. password: Not a valid string."
    )
    wrong = requests.post(login, json={"username": "alice", "password": "nope"}, timeout=10)
    assert _error(wrong, 401, "invalid_grant") == "The username or password is incorrect."

    # Bearer errors read as sentences too, in the body and in WWW-Authenticate.
    me = requests.get(url + "/api/v1/me", headers={"Authorization": "Bearer a.b.c"}, timeout=10)
    assert _error(me, 401, "invalid_token") == "Malformed token."
    assert 'error_description="Malformed token."' in me.headers["WWW-Authenticate"]
    assert "Traceback" not in server.output()
