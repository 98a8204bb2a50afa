"""A person who forgot their password, in Chromium, with JavaScript off.

authserver under gunicorn, the deliver_email worker and aiosmtpd as the SMTP server: the login
page's "Forgot your password?" link, the request form, the mail as the SMTP server received it,
the link, the new-password form, and a sign-in with the new password. Screenshots go to
test-artifacts/. Skipped (saying why) without /usr/bin/chromium.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.models import User
from authserver import settings as app_settings
from tests.a11y import assert_accessible
from tests.browser import DESKTOP, PHONE, chromium, fits_the_screen, login_form_submit, screenshot
from tests.live import Gunicorn
from tests.mail.live import MailWorker, SmtpServer, reset_link, text_body

pytestmark = pytest.mark.slow

NEW_PASSWORD = "violet harbour lantern 58"
SECOND_PASSWORD = "copper meadow signal 31"


def test_forgot_password_mail_link_new_password_sign_in(child_env, make_user, settings):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    make_user("carol", email="carol@example.com")
    smtp = SmtpServer()
    env = {**child_env, "EMAIL_URL": smtp.url}
    server = Gunicorn(env, workers=2)
    server.env["AUTHSERVER_ISSUER"] = server.url
    referers: list[str] = []
    with smtp, server, MailWorker(env), chromium() as browser:
        context = browser.new_context(viewport=PHONE, java_script_enabled=False)
        page = context.new_page()
        page.on(
            "request",
            lambda r: referers.append(r.headers.get("referer", "")),
        )
        page.goto(server.url + "/login")
        page.get_by_role("link", name="Forgot your password?").click()
        expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()
        assert fits_the_screen(page)
        screenshot(page, "reset-request-phone")
        page.get_by_label("Username or email").fill("carol@example.com")
        page.get_by_role("button", name="Email me a reset link").click()
        expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
        screenshot(page, "reset-sent-phone")

        message = smtp.wait_for(lambda m: m["To"] == "carol@example.com")
        assert message.get_body(preferencelist=("html",)) is not None
        url, token = reset_link(message)
        assert "carol" in text_body(message)

        page.goto(url)
        # The token left the address bar: the form is at a token-less URL.
        expect(page).to_have_url(server.url + "/password/reset")
        expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
        assert fits_the_screen(page)
        screenshot(page, "reset-form-phone")
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD + "typo")
        page.get_by_role("button", name="Set new password").click()
        expect(page.get_by_text("The two passwords are not the same.").first).to_be_visible()
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Set new password").click()
        expect(page.get_by_role("heading", name="Your password was changed")).to_be_visible()
        screenshot(page, "reset-done-phone")

        page.get_by_role("link", name="Sign in with the new password").click()
        login_form_submit(page, "carol")
        expect(page.locator("#login-error")).to_be_visible()  # the old one is dead
        page.get_by_label("Password").fill(NEW_PASSWORD)
        page.get_by_label("Password").press("Enter")
        expect(page).to_have_url(re.compile(re.escape(server.url) + r"/$"))
        screenshot(page, "reset-signed-in-phone")

        # The used link, opened again, explains itself.
        page.goto(url)
        expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
        expect(page.get_by_text("already been used")).to_be_visible()
        context.close()

        # Every page of the flow, with JavaScript on (axe is a script), desktop size:
        # no serious or critical accessibility violation.
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.goto(server.url + "/password/forgot")
        assert_accessible(page)
        page.get_by_role("button", name="Email me a reset link").click()  # empty: an error
        expect(page.get_by_text("Enter your username or email address.").first).to_be_visible()
        assert_accessible(page)
        page.get_by_label("Username or email").fill("carol")
        page.get_by_role("button", name="Email me a reset link").click()
        expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
        assert_accessible(page)
        second = smtp.wait_for(lambda m: "Reset" in m["Subject"] and reset_link(m)[1] != token)
        page.goto(reset_link(second)[0])
        expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
        assert_accessible(page)
        page.get_by_label("New password", exact=True).fill("password")
        page.get_by_label("New password again").fill("password")
        page.get_by_role("button", name="Set new password").click()
        expect(page.get_by_text("too common").first).to_be_visible()
        assert_accessible(page)
        page.get_by_label("New password", exact=True).fill(SECOND_PASSWORD)
        page.get_by_label("New password again").fill(SECOND_PASSWORD)
        page.get_by_role("button", name="Set new password").click()
        expect(page.get_by_role("heading", name="Your password was changed")).to_be_visible()
        assert_accessible(page)
        page.goto(url)
        expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
        assert_accessible(page)
        context.close()
    smtp.wait_for(lambda m: m["To"] == "carol@example.com" and "changed" in m["Subject"])
    assert User.objects.get(username="carol").check_password(SECOND_PASSWORD)
    assert not [r for r in referers if token in r], "the token leaked in a Referer"
