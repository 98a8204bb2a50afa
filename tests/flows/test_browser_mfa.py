"""A person sets up two-step verification in Chromium and signs in with it.

authserver under gunicorn on PostgreSQL; Debian's Chromium driven by Playwright with JavaScript
off (the pages need none): sign in, open the account page's two-step verification section, read
the secret shown as text beside the server-drawn QR code, compute the code with pyotp (as an
authenticator app would), turn it on, keep a recovery code, sign out, and sign in again with the
password and a code; then once more with a recovery code. axe-core checks each new page (with
scripts on in a second context, since axe is a script)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Page, expect

from accounts.services import user_create
from authserver import settings as app_settings
from tests.a11y import assert_accessible
from tests.browser import chromium, login_form_submit, screenshot
from tests.conftest import PASSWORD
from tests.live import Gunicorn, window_with_room

pytestmark = pytest.mark.slow


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=2)
    running.env["AUTHSERVER_ISSUER"] = running.url
    with running:
        yield running


def password_sign_in(page: Page, server: Gunicorn) -> None:
    page.goto(server.url + "/login")
    login_form_submit(page, "alice")


def sign_out(page: Page, server: Gunicorn) -> None:
    page.goto(server.url + "/logout")
    page.get_by_role("button", name="Sign out").click()


def test_enrol_totp_and_sign_in_with_it(server):
    with chromium() as browser:
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        password_sign_in(page, server)
        page.goto(server.url + "/account/")
        page.get_by_role("link", name="Two-step verification").click()
        expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
        page.get_by_role("link", name="Set up an authenticator app").click()
        expect(page.locator("figure.qr svg")).to_be_visible()
        screenshot(page, "mfa-enrol")
        secret = page.locator("#totp-secret").inner_text().replace(" ", "")
        totp = pyotp.TOTP(secret)
        # The previous step's code (so the sign-in below can use the current one): it is
        # accepted only while the server is still in the next step, so never start the
        # submission in the last seconds of a step (a loaded machine may cross a boundary).
        window_with_room(30, 12)
        page.get_by_label("Code").fill(totp.at(time.time() - 30))
        page.get_by_role("button", name="Turn on").click()
        expect(page.get_by_role("heading", name="Two-step verification is on")).to_be_visible()
        recovery = page.locator("#recovery-codes code").all_inner_texts()
        assert len(recovery) == 10
        screenshot(page, "mfa-recovery-codes")

        sign_out(page, server)
        password_sign_in(page, server)
        expect(page).to_have_url(re.compile(re.escape(server.url) + r"/login/mfa"))
        expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
        screenshot(page, "mfa-second-step")
        page.get_by_label("Code").fill("000000" if totp.now() != "000000" else "111111")
        page.get_by_role("button", name="Verify").click()
        expect(page.get_by_role("alert")).to_contain_text("That code is not right")
        page.get_by_label("Code").fill(totp.now())
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(server.url + "/")

        # A recovery code instead of the app.
        sign_out(page, server)
        password_sign_in(page, server)
        page.get_by_label("Code").fill(recovery[0])
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(server.url + "/")
        context.close()

        # The new pages pass axe (a script, so in a context with scripts on).
        checked = browser.new_context()
        page = checked.new_page()
        password_sign_in(page, server)
        expect(page).to_have_url(re.compile(r"/login/mfa"))
        assert_accessible(page, "second-step page")
        page.get_by_label("Code").fill(totp.at(time.time() + 30))
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(server.url + "/")
        page.goto(server.url + "/account/mfa")
        assert_accessible(page, "two-step verification page")
        page.goto(server.url + "/account/mfa/totp")
        assert_accessible(page, "authenticator set-up page")
        page.goto(server.url + "/account/mfa/recovery-codes")
        assert_accessible(page, "recovery codes confirmation")
        page.get_by_role("button", name="Make new codes").click()
        expect(page.locator("#recovery-codes code")).to_have_count(10)
        assert_accessible(page, "recovery codes page")
        page.goto(server.url + "/account/mfa/remove")
        assert_accessible(page, "turn-off page")
        checked.close()
