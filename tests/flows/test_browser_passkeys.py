"""A person adds a passkey in Chromium and signs in with it, with a virtual authenticator.

authserver under gunicorn on PostgreSQL with AUTHSERVER_ISSUER=http://localhost:<port> (localhost
is a secure context, and a valid RP ID; an IP address is not). Debian's Chromium, driven by
Playwright, gets a virtual authenticator from the DevTools protocol's WebAuthn domain (CTAP2,
internal transport, resident keys, user verification) through a CDP session; it then registers
a passkey on the account page, satisfies an app's `acr_values` demanding MFA with it (step-up;
the ID token, verified with PyJWT against the JWKS, shows amr pwd+hwk+mfa), signs out, signs in
without a password (amr hwk+user+mfa), and signs in with password + passkey as second factor.
With JavaScript off the passkey button stays hidden and the password path works. axe-core checks
each new page."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from accounts.services import user_create
from authserver import settings as app_settings
from oauth.clients import client_create
from passkeys.models import Passkey
from tests.a11y import assert_accessible
from tests.browser import chromium, login_form_submit, screenshot
from tests.conftest import PASSWORD
from tests.live import Gunicorn
from tests.security.live_oauth import authorize_url, code_exchange, pkce_pair

pytestmark = pytest.mark.slow

ACR_MFA = "urn:authserver:acr:mfa"


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    user_create(username="bob", email="bob@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=2)
    # WebAuthn needs a secure context and a domain as RP ID: http://localhost is both.
    running.url = f"http://localhost:{running.port}"
    running.env["AUTHSERVER_ISSUER"] = running.url
    with running:
        yield running


class _App(BaseHTTPRequestHandler):
    """The app's redirect_uri: a page that says the browser is back."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>app</title><p>back at the app"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


_app = ThreadingHTTPServer(("127.0.0.1", 0), _App)
REDIRECT_URI = f"http://127.0.0.1:{_app.server_address[1]}/callback"


@pytest.fixture(scope="module", autouse=True)
def app_server() -> Iterator[None]:
    thread = threading.Thread(target=_app.serve_forever, daemon=True)
    thread.start()
    yield
    _app.shutdown()


def password_sign_in(page: Page, server: Gunicorn, username: str = "alice") -> None:
    page.goto(server.url + "/login")
    login_form_submit(page, username)


def sign_out(page: Page, server: Gunicorn) -> None:
    page.goto(server.url + "/logout")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def virtual_authenticator(context, page: Page):
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def id_token_claims(server, client, page_url: str, verifier: str) -> dict:
    code = parse_qs(urlsplit(page_url).query)["code"][0]
    _, claims = code_exchange(server, client, code, verifier, redirect_uri=REDIRECT_URI)
    return claims


def test_passkey_registration_passwordless_and_second_factor(server, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the few ORM reads below are
    # plain synchronous queries between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    registered = client_create(
        name="Payroll",
        client_type="confidential",
        grant_types=["authorization_code"],
        redirect_uris=[REDIRECT_URI],
        scopes=["openid", "profile"],
        skip_consent=True,
    )
    client = (registered.client.client_id, registered.secret)
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        cdp, authenticator = virtual_authenticator(context, page)

        # The login page asks once for autofill; an authenticator with no passkey for this
        # site refuses at once, and the page does not ask again and again.
        asked: list[str] = []
        page.on(
            "request",
            lambda request: (
                asked.append(request.url)
                if request.url.endswith("/login/passkey/options")
                else None
            ),
        )
        page.goto(server.url + "/login")
        page.wait_for_timeout(1500)
        assert len(asked) <= 1, asked

        # Register a passkey on the account page.
        password_sign_in(page, server)
        expect(page).to_have_url(server.url + "/")
        page.goto(server.url + "/account/mfa")
        page.get_by_role("link", name="Add a passkey").click()
        expect(page.get_by_role("heading", name="Add a passkey")).to_be_visible()
        assert_accessible(page, "add a passkey page")
        page.get_by_label("Name").fill("Test laptop")
        page.get_by_role("button", name="Create a passkey").click()
        expect(page.get_by_role("heading", name="Two-step verification is on")).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text("Test laptop")
        expect(page.locator("#recovery-codes code")).to_have_count(10)
        page.get_by_role("link", name="I have saved them").click()
        expect(page).to_have_url(server.url + "/account/mfa")
        expect(page.get_by_role("heading", name="Test laptop")).to_be_visible()
        screenshot(page, "passkey-registered")
        assert_accessible(page, "two-step verification page with a passkey")
        credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
        assert len(credentials["credentials"]) == 1
        assert credentials["credentials"][0]["isResidentCredential"] is True
        passkey = Passkey.objects.get(user__username="alice")
        assert passkey.discoverable is True and passkey.amr == "hwk"

        # An app demands MFA (acr_values): the passkey is the step-up.
        verifier, challenge = pkce_pair()
        page.goto(
            authorize_url(
                server, client[0], challenge, redirect_uri=REDIRECT_URI, acr_values=ACR_MFA
            )
        )
        expect(page).to_have_url(re.compile(r"/login/mfa\?"))
        assert_accessible(page, "second step with a passkey")
        page.get_by_role("button", name="Use a passkey").click()
        expect(page).to_have_url(re.compile("^" + re.escape(REDIRECT_URI) + r"\?"))
        claims = id_token_claims(server, client, page.url, verifier)
        assert claims["amr"] == ["pwd", "hwk", "mfa"] and claims["acr"] == ACR_MFA

        # Passwordless through autofill (conditional mediation): the login page asks at
        # once, and this authenticator, which simulates the person's touch, answers it.
        sign_out(page, server)
        page.goto(server.url + "/login")
        expect(page).to_have_url(server.url + "/")

        # Passwordless with the button (a browser without autofill for passkeys).
        sign_out(page, server)
        page.add_init_script(
            "PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);"
        )
        page.goto(server.url + "/login")
        assert_accessible(page, "login page with the passkey button")
        assert page.get_by_label("Username or email").get_attribute("autocomplete") == (
            "username webauthn"
        )
        screenshot(page, "passkey-login")
        page.get_by_role("button", name="Sign in with a passkey").click()
        expect(page).to_have_url(server.url + "/")
        # Passwordless with user verification counts as multi-factor for an app.
        verifier, challenge = pkce_pair()
        page.goto(
            authorize_url(
                server, client[0], challenge, redirect_uri=REDIRECT_URI, acr_values=ACR_MFA
            )
        )
        expect(page).to_have_url(re.compile("^" + re.escape(REDIRECT_URI) + r"\?"))
        claims = id_token_claims(server, client, page.url, verifier)
        assert claims["amr"] == ["hwk", "user", "mfa"] and claims["acr"] == ACR_MFA

        # Password, then the passkey as the second factor.
        sign_out(page, server)
        password_sign_in(page, server)
        expect(page).to_have_url(re.compile(r"/login/mfa"))
        screenshot(page, "passkey-second-step")
        page.get_by_role("button", name="Use a passkey").click()
        expect(page).to_have_url(server.url + "/")
        passkey.refresh_from_db()
        assert passkey.last_used_at is not None and passkey.sign_count >= 1

        # Rename it; the rename page passes axe.
        page.goto(server.url + "/account/mfa")
        page.get_by_role("link", name="Rename Test laptop").click()
        assert_accessible(page, "rename a passkey page")
        page.get_by_label("Name").fill("Work laptop")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", name="Work laptop")).to_be_visible()
        page.get_by_role("link", name="Remove Work laptop").click()
        assert_accessible(page, "remove a passkey page")
        context.close()

        # JavaScript off: no passkey button, and the password path still works.
        plain = browser.new_context(java_script_enabled=False)
        page = plain.new_page()
        page.goto(server.url + "/login")
        expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_hidden()
        password_sign_in(page, server, "bob")
        expect(page).to_have_url(server.url + "/")
        plain.close()
