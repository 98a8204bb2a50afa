"""Issue 16.7: every hosted page a person can reach passes the axe-core check (tests/a11y.py: no
serious or critical violation), in the light and dark colour schemes.

authserver runs under gunicorn; Chromium (scripts on: axe is a script) opens each page in the
state a person meets it, error states included. The password reset link is read from the
outbox row the request wrote (what the mail worker would send), so no SMTP server is needed
here; tests/flows/test_browser_password_reset.py walks the same pages through real mail. The
account pages have their own walk (tests/flows/test_browser_account.py).
"""

from __future__ import annotations

import re

import pytest
from django.db import connections
from playwright.sync_api import Page, expect

from authserver import settings as app_settings
from mail.models import Outbox
from tests.a11y import assert_accessible
from tests.browser import DESKTOP, chromium, login_form_submit, screenshot
from tests.conftest import PASSWORD
from tests.live import Gunicorn

pytestmark = pytest.mark.slow

NEW_PASSWORD = "quiet meadow compass 904"  # test-only credential
LINK = re.compile(r"https?://\S+/password/reset\?token=[A-Za-z0-9_\-]+")


def check(page: Page, name: str, scheme: str) -> None:
    assert_accessible(page, f"{name} ({scheme})")
    screenshot(page, f"a11y-{name}-{scheme}")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_hosted_pages_pass_the_axe_check(child_env, make_user, settings, monkeypatch, scheme):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    make_user("dana", email="dana@example.com")
    # Playwright's sync API runs an event loop in this thread; the test's own reads are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    server = Gunicorn(child_env, workers=1)
    server.env["AUTHSERVER_ISSUER"] = server.url
    with server, chromium() as browser:
        try:
            page = browser.new_context(viewport=DESKTOP, color_scheme=scheme).new_page()

            page.goto(server.url + "/login")
            check(page, "login", scheme)
            page.get_by_role("button", name="Sign in", exact=True).click()  # empty: field errors
            expect(page.get_by_role("alert")).to_be_visible()
            check(page, "login-errors", scheme)
            login_form_submit(page, "dana", "not the password")
            expect(page.get_by_role("alert")).to_be_visible()
            check(page, "login-failed", scheme)

            page.get_by_role("link", name="Forgot your password?").click()
            check(page, "forgot", scheme)
            page.get_by_label("Username or email").fill("dana@example.com")
            page.get_by_label("Username or email").press("Enter")
            expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
            check(page, "forgot-sent", scheme)

            body = Outbox.objects.filter(to="dana@example.com").latest("created_at").body_text
            link = LINK.search(body)[0]
            page.goto(server.url + "/password/reset?token=not-a-real-token")
            check(page, "reset-invalid", scheme)
            page.goto(link)
            expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
            check(page, "reset-form", scheme)
            page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
            page.get_by_label("New password again").fill(NEW_PASSWORD + "x")
            page.get_by_label("New password again").press("Enter")
            expect(page.get_by_text("The two passwords are not the same.").first).to_be_visible()
            check(page, "reset-mismatch", scheme)
            page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
            page.get_by_label("New password again").fill(NEW_PASSWORD)
            page.get_by_label("New password again").press("Enter")
            expect(page.get_by_role("heading", name="Your password was changed")).to_be_visible()
            check(page, "reset-done", scheme)

            page.goto(server.url + "/login")
            login_form_submit(page, "dana", NEW_PASSWORD)
            expect(page.get_by_role("heading", name="You\u2019re signed in")).to_be_visible()
            check(page, "home", scheme)
            page.goto(server.url + "/logout")
            check(page, "logout", scheme)
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("heading", name="You\u2019re signed out")).to_be_visible()
            check(page, "signed-out", scheme)
            page.goto(server.url + "/no-such-page")
            check(page, "not-found", scheme)
        finally:
            connections.close_all()
    assert PASSWORD not in server.output() and NEW_PASSWORD not in server.output()
