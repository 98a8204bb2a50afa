"""A real browser signs in to a real app through authserver.

authserver runs under gunicorn on PostgreSQL (http://127.0.0.1:<port>), examples/webapp (authlib's
Django client, configured only from discovery) runs as a second process on another site
(http://localhost:<port>), and Debian's Chromium, driven headless by Playwright, does what a
person does: opens the app, is sent to the authorization endpoint, signs in on the hosted login
page, approves the consent page and lands back on the app, which exchanges the code (PKCE S256)
and shows who signed in. Screenshots of the pages go to test-artifacts/.

The browser is /usr/bin/chromium (`apt-get install chromium`, done by .ci/run); Playwright's own
browser download is never used. Without that binary the test is skipped and says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import Page, expect

from accounts.services import user_create
from audit.models import AuthEvent
from authserver import settings as app_settings
from tests.a11y import assert_accessible
from tests.browser import (
    APPROVE,
    DESKTOP,
    PHONE,
    chromium,
    fits_the_screen,
    login_form_submit,
    screenshot,
)
from tests.conftest import PASSWORD
from tests.examples.webapp_process import Webapp
from tests.live import Gunicorn, free_port, manage

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(child_env, settings) -> Iterator[tuple[Gunicorn, Webapp]]:
    # The child runs the production hasher list; hash the passwords with it.
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    user_create(username="bob", email="bob@example.com", password=PASSWORD)
    server = Gunicorn(child_env, workers=2)
    # The issuer is the address the browser uses, so discovery points it at this server.
    server.env["AUTHSERVER_ISSUER"] = server.url
    app_port = free_port()
    app_url = f"http://localhost:{app_port}"
    created = manage(
        "create_client",
        "--name",
        "Example app",
        "--type",
        "confidential",
        "--redirect-uri",
        f"{app_url}/callback",
        "--post-logout-redirect-uri",
        f"{app_url}/",
        "--grant",
        "authorization_code",
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "email",
        "--json",
        env=server.env,
    )
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    with (
        server,
        Webapp(server.url, client["client_id"], client["client_secret"], app_port) as webapp,
    ):
        yield server, webapp


def sign_in_through_authserver(
    page: Page, server: Gunicorn, webapp: Webapp, username: str, label: str, axe: bool = True
) -> list[str]:
    """Drive the whole flow; return the URLs the browser navigated to."""
    visited: list[str] = []
    page.on(
        "request",
        lambda request: visited.append(request.url) if request.is_navigation_request() else None,
    )
    page.goto(webapp.url + "/")
    page.get_by_role("link", name="Sign in with authserver").click()

    # The hosted login page, reached through the authorization endpoint.
    expect(page).to_have_url(re.compile(re.escape(server.url) + r"/login\?next="))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert fits_the_screen(page)
    screenshot(page, f"login-{label}")
    if axe:
        assert_accessible(page, "login page")
    login_form_submit(page, username)

    # The consent page names the client and what it asks for.
    expect(page).to_have_url(re.compile(re.escape(server.url) + "/"))
    expect(page.get_by_text("Example app").first).to_be_visible()
    assert fits_the_screen(page)
    screenshot(page, f"consent-{label}")
    if axe:
        assert_accessible(page, "consent page")
    page.get_by_role("button", name=APPROVE).click()

    # Back on the app, which exchanged the code and asked userinfo who this is.
    expect(page).to_have_url(webapp.url + "/")
    expect(page.locator("#signed-in")).to_have_text(f"Signed in as {username}")
    screenshot(page, f"webapp-signed-in-{label}")
    return visited


def test_webapp_signs_in_through_authserver_in_chromium(stack):
    server, webapp = stack
    alice_sub = None
    with chromium() as browser:
        # Desktop, scripts on.
        desktop = browser.new_context(viewport=DESKTOP)
        page = desktop.new_page()
        visited = sign_in_through_authserver(page, server, webapp, "alice", "desktop")
        alice_sub = page.locator('[data-claim="sub"]').inner_text()
        assert page.locator('[data-claim="email"]').inner_text() == "alice@example.com"

        discovery = requests.get(server.url + "/.well-known/openid-configuration", timeout=10)
        endpoint = discovery.json()["authorization_endpoint"]
        authorize = next(u for u in visited if u.startswith(endpoint + "?"))
        query = parse_qs(urlsplit(authorize).query)
        assert query["response_type"] == ["code"]
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43
        assert query["state"] and query["nonce"]
        assert query["redirect_uri"] == [webapp.url + "/callback"]
        callback = next(u for u in visited if u.startswith(webapp.url + "/callback"))
        back = parse_qs(urlsplit(callback).query)
        assert back["state"] == query["state"]
        assert back["code"][0]

        # The consent is remembered: the next sign-in goes straight back to the app.
        page.context.clear_cookies(domain="localhost")
        page.goto(webapp.url + "/")
        page.get_by_role("link", name="Sign in with authserver").click()
        expect(page.locator("#signed-in")).to_have_text("Signed in as alice")

        # Signing out of the app ends the authserver session too (RP-initiated logout),
        # after a confirmation the person gives with a POST.
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(re.escape(server.url) + "/"))
        screenshot(page, "end-session-desktop")
        assert_accessible(page, "end-session (sign out) page")
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(re.escape(webapp.url) + r"/(\?.*)?$"))
        expect(page.get_by_role("link", name="Sign in with authserver")).to_be_visible()
        page.get_by_role("link", name="Sign in with authserver").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

        # The signed-in landing page and the hosted sign-out page pass the same check.
        login_form_submit(page, "alice")
        expect(page.locator("#signed-in")).to_have_text("Signed in as alice")
        page.goto(server.url + "/")
        assert_accessible(page, "home page")
        page.goto(server.url + "/logout")
        assert_accessible(page, "logout page")
        desktop.close()

        # A phone-sized screen with JavaScript off: the pages work without any script.
        phone = browser.new_context(viewport=PHONE, java_script_enabled=False)
        sign_in_through_authserver(phone.new_page(), server, webapp, "bob", "phone", axe=False)
        phone.close()

    assert alice_sub
    assert AuthEvent.objects.filter(event_type="login.succeeded").count() == 3
    assert PASSWORD not in server.output() + webapp.output()
