"""Issue 18.3, as checked by the issue: the hosted pages in Chromium, with a brand and in German.

authserver under gunicorn with a brand from the environment; Debian's Chromium with a German
locale (its Accept-Language) walks an app's sign-in: the login page, a failed sign-in, the
second step, the consent page, then the account pages. Each page is German (<html lang="de">,
German headings), passes the axe check (tests/a11y.py), and fits a 390 px wide phone screen
without sideways scrolling (German words are long); screenshots at 1280 and 390 px go to
test-artifacts/.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from accounts.models import User
from authserver import settings as app_settings
from mfa import services as mfa_services
from oauth.clients import client_create
from oauth.pkce import s256_challenge
from tests.a11y import assert_accessible
from tests.browser import DESKTOP, PHONE, chromium, fits_the_screen, screenshot
from tests.conftest import PASSWORD
from tests.live import Gunicorn

pytestmark = pytest.mark.slow

from playwright.sync_api import Page, expect  # noqa: E402

NAME = "Acme ID"
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never reached: the test stops at the consent page


def check(page: Page, name: str) -> None:
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.locator(".site-header .brand-name")).to_have_text(NAME)
    assert page.title().endswith(f" · {NAME}")
    assert_accessible(page, f"{name} (de)")
    screenshot(page, f"i18n-de-{name}-1280")
    page.set_viewport_size(PHONE)
    try:
        assert fits_the_screen(page), f"{name}: wider than a 390 px screen in German"
        screenshot(page, f"i18n-de-{name}-390")
    finally:
        page.set_viewport_size(DESKTOP)


def test_an_apps_sign_in_and_the_account_pages_in_german(
    child_env, make_user, settings, monkeypatch
):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    erin: User = make_user("erin", email="erin@example.com", first_name="Erin")
    factor, secret = mfa_services.totp_enrolment_begin(user=erin)
    step = mfa_services.totp_time_step(datetime.now(tz=UTC))
    assert mfa_services.totp_enrolment_confirm(
        factor=factor, code=mfa_services.totp_code_at(secret, step - 1)
    )
    app = client_create(
        name="Fotoalbum",
        client_type="confidential",
        grant_types=["authorization_code"],
        redirect_uris=[REDIRECT_URI],
        scopes=["openid", "profile", "email"],
    ).client
    authorize = "/oauth/authorize?" + urlencode(
        {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email",
            "state": "st",
            "code_challenge": s256_challenge("v" * 50),
            "code_challenge_method": "S256",
        }
    )
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    server = Gunicorn(child_env, workers=1)
    server.env.update(AUTHSERVER_ISSUER=server.url, AUTHSERVER_BRAND_NAME=NAME)
    with server, chromium() as browser:
        page = browser.new_context(viewport=DESKTOP, locale="de-DE").new_page()
        page.goto(server.url + authorize)
        expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()
        check(page, "login")

        page.get_by_label("Benutzername oder E-Mail-Adresse").fill("erin")
        page.get_by_label("Passwort").fill("not the password")
        page.get_by_label("Passwort").press("Enter")
        expect(page.get_by_role("alert")).to_contain_text("konnten wir Sie nicht anmelden")
        check(page, "login-failed")

        page.get_by_label("Passwort").fill(PASSWORD)
        page.get_by_label("Passwort").press("Enter")
        expect(page.get_by_role("heading", name="Bestätigung in zwei Schritten")).to_be_visible()
        check(page, "second-step")

        page.get_by_label("Code").fill("000000")
        page.get_by_role("button", name="Bestätigen").click()
        expect(page.get_by_role("alert")).to_be_visible()
        check(page, "second-step-refused")

        code = mfa_services.totp_code_at(secret, mfa_services.totp_time_step(datetime.now(tz=UTC)))
        page.get_by_label("Code").fill(code)
        page.get_by_role("button", name="Bestätigen").click()
        expect(
            page.get_by_role("heading", name="Fotoalbum den Zugriff auf Ihr Konto erlauben?")
        ).to_be_visible()
        check(page, "consent")

        for path, heading, name in [
            ("/account/", "Ihr Konto", "account-profile"),
            ("/account/mfa", "Bestätigung in zwei Schritten", "account-mfa"),
            ("/account/sessions", "Sitzungen", "account-sessions"),
            ("/account/activity", "Sicherheitsprotokoll", "account-activity"),
        ]:
            page.goto(server.url + path)
            expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            check(page, name)
