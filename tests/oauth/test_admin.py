"""The client admin: the secret appears once, every change goes through the services."""

from __future__ import annotations

import re

import pytest
from django.test import Client as BrowserClient

from audit.models import AuthEvent
from oauth.models import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(make_user):
    admin = make_user("root", is_staff=True, is_superuser=True)
    browser = BrowserClient()
    browser.force_login(admin)
    return browser


FORM = {
    "name": "Admin App",
    "client_type": "confidential",
    "is_active": "on",
    "redirect_uris": "https://app.example.com/cb",
    "post_logout_redirect_uris": "",
    "grant_types": ["authorization_code", "refresh_token"],
    "scopes": "openid profile offline_access",
    "audiences": "",
    "access_token_lifetime": "",
    "pkce_required": "on",  # checked by default on the add page
}


def secret_on(page) -> str:
    match = re.search(r"<th scope=\"row\">client_secret</th><td><code>([^<]+)</code>", page)
    assert match, page
    return match.group(1)


def test_add_shows_the_secret_once(admin_browser):
    response = admin_browser.post("/admin/oauth/client/add/", FORM)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = secret_on(response.content.decode())
    client = Client.objects.get()
    assert client.check_client_secret(secret)
    change = admin_browser.get(f"/admin/oauth/client/{client.pk}/change/").content.decode()
    assert secret not in change and client.secret_hash not in change
    assert AuthEvent.objects.filter(event_type="client.created").exists()


def test_add_refuses_invalid_configuration(admin_browser):
    form = {**FORM, "redirect_uris": "https://app.example.com/*"}
    response = admin_browser.post("/admin/oauth/client/add/", form)
    assert response.status_code == 200
    assert b"wildcard" in response.content
    assert not Client.objects.exists()


def test_regenerate_secret_action(admin_browser):
    admin_browser.post("/admin/oauth/client/add/", FORM)
    client = Client.objects.get()
    old_hash = client.secret_hash
    data = {"action": "regenerate_secret", "_selected_action": [client.pk]}
    confirm = admin_browser.post("/admin/oauth/client/", data)
    assert confirm.status_code == 200 and b"Regenerate the secret" in confirm.content
    assert Client.objects.get(pk=client.pk).secret_hash == old_hash  # not yet
    shown = admin_browser.post("/admin/oauth/client/", {**data, "confirm": "yes"})
    secret = secret_on(shown.content.decode())
    client.refresh_from_db()
    assert client.secret_hash != old_hash and client.check_client_secret(secret)


def test_change_invalidates_the_cache(admin_browser):
    from oauth.clients import client_get

    admin_browser.post("/admin/oauth/client/add/", FORM)
    client = Client.objects.get()
    assert client_get(client_id=client.client_id) is not None
    form = {**FORM}
    form.pop("is_active")
    form.pop("client_type")
    response = admin_browser.post(f"/admin/oauth/client/{client.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    assert client_get(client_id=client.client_id) is None  # deactivated, not served from cache


def test_add_page_shows_pkce_required_checked_with_help(admin_browser):
    page = admin_browser.get("/admin/oauth/client/add/").content.decode()
    assert re.search(r'<input type="checkbox" name="pkce_required"[^>]* checked', page)
    assert "RFC 9700 §2.1.1" in page


def test_confidential_client_may_opt_out_of_pkce(admin_browser):
    form = {**FORM}
    form.pop("pkce_required")
    admin_browser.post("/admin/oauth/client/add/", form)
    assert Client.objects.get().pkce_required is False


def test_public_client_cannot_opt_out_of_pkce(admin_browser):
    form = {**FORM, "client_type": "public"}
    form.pop("pkce_required")
    response = admin_browser.post("/admin/oauth/client/add/", form)
    assert response.status_code == 200
    assert b"public clients must use PKCE" in response.content
    assert not Client.objects.exists()
