"""RP-initiated logout: confirmation, browser sign-out, the hinted session ended, and no redirect
to an unregistered post_logout_redirect_uri."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client as BrowserClient

from audit.models import AuthEvent
from tests.oauth.conftest import LOGOUT_URI, sign_in
from tests.oauth.helpers import tokens_for, userinfo
from tokens.models import Session

pytestmark = pytest.mark.django_db
END = "/oauth/end-session"


@pytest.fixture
def signed_in(browser, confidential):
    tokens = tokens_for(browser, BrowserClient(), confidential)
    return tokens


def confirm(browser, page):
    fields = dict(page.context["fields"])
    return browser.post(END + "/confirm", fields)


def test_logout_with_hint_and_registered_uri(browser, confidential, signed_in):
    params = {
        "id_token_hint": signed_in["id_token"],
        "post_logout_redirect_uri": LOGOUT_URI,
        "state": "bye&x=1",
    }
    page = browser.get(END, params)
    assert page.status_code == 200
    assert b"Sign out of Test App?" in page.content
    assert Session.objects.exclude(client_id="").get().revoked_at is None  # GET changes nothing
    assert "_auth_user_id" in browser.session
    response = confirm(browser, page)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == LOGOUT_URI
    assert parse_qs(location.query) == {"state": ["bye&x=1"]}
    assert "_auth_user_id" not in browser.session
    assert Session.objects.exclude(client_id="").get().revoke_reason == "sign_in_ended"
    assert userinfo(BrowserClient(), signed_in["access_token"]).status_code == 401
    assert AuthEvent.objects.filter(event_type="oidc.logout").exists()


def test_client_id_instead_of_hint(browser, confidential):
    params = {"client_id": confidential.client_id, "post_logout_redirect_uri": LOGOUT_URI}
    response = confirm(browser, browser.get(END, params))
    assert response.status_code == 302 and response["Location"] == LOGOUT_URI


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example.com/",
        LOGOUT_URI + "/",
        LOGOUT_URI + "?x=1",
        "https://app.example.com/callback",  # a redirect_uri, not a post-logout one
    ],
)
def test_unregistered_post_logout_uri_never_redirects(browser, confidential, signed_in, uri):
    params = {"id_token_hint": signed_in["id_token"], "post_logout_redirect_uri": uri}
    response = browser.get(END, params)
    assert response.status_code == 400 and "Location" not in response
    response = browser.post(END + "/confirm", params)
    assert response.status_code == 400 and "Location" not in response
    assert Session.objects.exclude(client_id="").get().revoked_at is None


def test_uri_without_naming_the_client_never_redirects(browser):
    response = browser.get(END, {"post_logout_redirect_uri": LOGOUT_URI})
    assert response.status_code == 400 and "Location" not in response


def test_forged_hint_is_refused(browser, confidential, signed_in):
    header, payload, signature = signed_in["id_token"].split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    response = browser.get(END, {"id_token_hint": forged, "post_logout_redirect_uri": LOGOUT_URI})
    assert response.status_code == 400 and "Location" not in response


def test_access_token_is_not_an_id_token_hint(browser, confidential, signed_in):
    params = {"id_token_hint": signed_in["access_token"], "post_logout_redirect_uri": LOGOUT_URI}
    assert browser.get(END, params).status_code == 400


def test_client_id_must_match_hint(browser, confidential, signed_in, make_client):
    other = make_client(name="Other")
    params = {"id_token_hint": signed_in["id_token"], "client_id": other.client_id}
    assert browser.get(END, params).status_code == 400


def test_confirmation_needs_csrf(alice, confidential):
    strict = BrowserClient(enforce_csrf_checks=True)
    sign_in(strict, alice)
    response = strict.post(END + "/confirm", {"client_id": confidential.client_id})
    assert response.status_code == 403
    assert "_auth_user_id" in strict.session


def test_without_any_session_goes_straight_back(confidential):
    params = {
        "client_id": confidential.client_id,
        "post_logout_redirect_uri": LOGOUT_URI,
        "state": "s",
    }
    response = BrowserClient().get(END, params)
    assert response.status_code == 302 and response["Location"] == LOGOUT_URI + "?state=s"


def test_without_redirect_lands_on_signed_out_page(browser):
    page = browser.get(END)
    assert page.status_code == 200
    response = confirm(browser, page)
    assert response.status_code == 302 and response["Location"] == "/logout"


def test_rp_may_post_the_logout_request(browser, confidential):
    response = browser.post(
        END, {"client_id": confidential.client_id, "post_logout_redirect_uri": LOGOUT_URI}
    )
    assert response.status_code == 200 and b"Sign out" in response.content
