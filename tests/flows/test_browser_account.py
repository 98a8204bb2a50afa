"""A real browser walks the account pages after signing in at two apps.

authserver runs under gunicorn on PostgreSQL; two instances of examples/webapp (two OAuth
clients, "Photos" and "Calendar") run beside it. Debian's Chromium, driven by Playwright, signs
in to both through authserver, then opens every account page: each must pass the axe-core check
(no serious or critical violation; tests/a11y.py), in light and dark colour schemes, and fit a
phone's width. It ends an app's access, ends the other sessions after typing the password again
(the sign-in made to look older than AUTHSERVER_REAUTH_MAX_AGE), and, with JavaScript off on a
phone-sized screen, changes the password. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections
from playwright.sync_api import Page, expect

from accounts.models import User
from accounts.services import user_create
from authserver import settings as app_settings
from oauth.models import Consent
from sessions.models import Session
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

NEW_PASSWORD = "phone typed passphrase 2291"  # test-only credential
ACCOUNT_PAGES = {
    "profile": ("/account/", "Your account"),
    "password": ("/account/password", "Change password"),
    "sessions": ("/account/sessions", "Sessions"),
    "apps": ("/account/apps", "Connected apps"),
    "activity": ("/account/activity", "Security log"),
    "delete": ("/account/delete", "Delete your account"),
}


def register(server: Gunicorn, name: str, app_url: str) -> dict:
    created = manage(
        "create_client",
        "--name",
        name,
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
    return json.loads(created.stdout)


@pytest.fixture
def stack(child_env, settings) -> Iterator[tuple[Gunicorn, Webapp, Webapp]]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    server = Gunicorn(child_env, workers=2)
    server.env["AUTHSERVER_ISSUER"] = server.url
    ports = free_port(), free_port()
    photos = register(server, "Photos", f"http://localhost:{ports[0]}")
    calendar = register(server, "Calendar", f"http://localhost:{ports[1]}")
    with (
        server,
        Webapp(server.url, photos["client_id"], photos["client_secret"], ports[0]) as first,
        Webapp(server.url, calendar["client_id"], calendar["client_secret"], ports[1]) as second,
    ):
        yield server, first, second


def sign_in_at(page: Page, webapp: Webapp, server: Gunicorn, password: str = PASSWORD) -> None:
    page.goto(webapp.url + "/")
    page.get_by_role("link", name="Sign in with authserver").click()
    if page.get_by_role("heading", name="Sign in").is_visible():
        login_form_submit(page, "alice", password)
    page.get_by_role("button", name=APPROVE).click()
    expect(page.locator("#signed-in")).to_have_text("Signed in as alice")


def check(page: Page, name: str) -> None:
    """The page passes axe, fits a phone-width screen too, and is screenshotted."""
    assert_accessible(page, name)
    assert fits_the_screen(page), name
    screenshot(page, f"account-{name}")


def age_sign_in(page: Page, server: Gunicorn, seconds: int) -> None:
    cookie = next(
        c
        for c in page.context.cookies(server.url)
        if c["name"] == django_settings.SESSION_COOKIE_NAME
    )
    store = SessionStore(session_key=cookie["value"])
    store["auth_time"] = int(store["auth_time"]) - seconds
    store.save()


def test_account_pages_in_chromium_after_signing_in_at_two_apps(stack, monkeypatch):
    server, photos, calendar = stack
    # Playwright's sync API runs an event loop in this thread; the test's own database reads
    # (sequential, on its own connection) are safe there.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # Another browser's sign-in, to be ended from the sessions page.
    other = requests.Session()
    login = other.get(server.url + "/login", timeout=10).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login)[1]
    other.post(
        server.url + "/login",
        data={"csrfmiddlewaretoken": token, "username": "alice", "password": PASSWORD},
        timeout=10,
    )

    with chromium() as browser:
        try:
            context = browser.new_context(viewport=DESKTOP)
            page = context.new_page()
            sign_in_at(page, photos, server)
            sign_in_at(page, calendar, server)

            # The landing page leads to the account pages; each passes the checks.
            page.goto(server.url + "/")
            page.get_by_role("link", name="Your account").click()
            expect(page.get_by_role("heading", name="Your account")).to_be_visible()
            for name, (path, heading) in ACCOUNT_PAGES.items():
                page.goto(server.url + path)
                expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
                expect(page.locator('nav a[aria-current="page"]')).to_have_count(1)
                check(page, name)

            # Sessions: this browser, the two app sign-ins it made, and the other browser.
            page.goto(server.url + "/account/sessions")
            items = page.locator(".item-title")
            expect(items).to_have_count(4)
            titles = items.all_inner_texts()
            assert sorted(titles) == ["Browser sign-in", "Browser sign-in", "Calendar", "Photos"]
            expect(page.get_by_text("this browser", exact=True)).to_have_count(1)

            # Connected apps: both, with what they may do; withdraw Calendar's access.
            page.goto(server.url + "/account/apps")
            expect(page.locator(".item-title")).to_have_text(["Calendar", "Photos"])
            expect(page.get_by_text("Your email address").first).to_be_visible()
            page.get_by_role("button", name="Withdraw access of Calendar").click()
            expect(page.get_by_role("status")).to_contain_text("Calendar can no longer use")
            expect(page.locator(".item-title")).to_have_text(["Photos"])
            check(page, "apps-after-withdraw")
            assert list(
                Consent.objects.filter(user__username="alice").values_list(
                    "client__name", flat=True
                )
            ) == ["Photos"]

            # The sign-in is now older than the re-auth window: ending the other sessions asks
            # for the password, then comes back to the confirmation.
            age_sign_in(page, server, 3600)
            page.goto(server.url + "/account/sessions")
            page.get_by_role("button", name="End all other sessions").click()
            expect(page.get_by_role("heading", name="Confirm it\u2019s you")).to_be_visible()
            check(page, "reauth")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_label("Password").press("Enter")
            expect(page.get_by_role("heading", name="End all other sessions?")).to_be_visible()
            check(page, "end-others-confirm")
            page.get_by_role("button", name="End other sessions").click()
            expect(page.get_by_role("status")).to_contain_text("still signed in here")
            expect(page.locator(".item-title")).to_have_text(["Browser sign-in"])
            assert other.get(server.url + "/account/", allow_redirects=False).status_code == 303

            # A form error is announced and tied to its field.
            page.goto(server.url + "/account/delete")
            page.get_by_label("Password").fill("not my password")
            page.get_by_role("button", name="Delete my account").click()
            expect(page.get_by_role("alert")).to_be_visible()
            check(page, "delete-error")
            assert User.objects.filter(username="alice").exists()

            # The security log shows what just happened.
            page.goto(server.url + "/account/activity")
            expect(page.get_by_text("App access withdrawn")).to_be_visible()
            expect(page.get_by_text("Signed out of other sessions")).to_be_visible()

            # The error pages a person can reach from here pass the same check.
            page.goto(server.url + "/account/sessions/not-a-session/end")
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            check(page, "not-found")
            page.goto(server.url + "/oauth/authorize?client_id=unknown&response_type=code")
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            check(page, "authorize-error")
            context.close()

            # Dark colour scheme: the same checks (contrast differs).
            dark = browser.new_context(viewport=DESKTOP, color_scheme="dark")
            page = dark.new_page()
            page.goto(server.url + "/account/sessions")
            check(page, "login-dark")
            login_form_submit(page, "alice")
            for name, (path, _) in ACCOUNT_PAGES.items():
                page.goto(server.url + path)
                check(page, f"{name}-dark")
            dark.close()

            # A phone with JavaScript off: sign in, change the password; every page works.
            phone = browser.new_context(viewport=PHONE, java_script_enabled=False)
            page = phone.new_page()
            page.goto(server.url + "/account/password")
            login_form_submit(page, "alice")
            expect(page.get_by_role("heading", name="Change password")).to_be_visible()
            for name, (path, _) in ACCOUNT_PAGES.items():
                page.goto(server.url + path)
                assert fits_the_screen(page), name
                screenshot(page, f"account-{name}-phone")
            page.goto(server.url + "/account/password")
            page.get_by_label("Current password").fill(PASSWORD)
            page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
            page.get_by_label("New password, again").fill(NEW_PASSWORD)
            page.get_by_role("button", name="Change password").click()
            expect(page.get_by_role("status")).to_contain_text("Your password was changed.")
            assert User.objects.get(username="alice").check_password(NEW_PASSWORD)
            page.goto(server.url + "/account/sessions")
            expect(page.locator(".item-title")).to_have_text(["Browser sign-in"])
            phone.close()

            # Last, the account goes: the form states what is kept; the closing page is checked.
            context = browser.new_context(viewport=DESKTOP)
            page = context.new_page()
            page.goto(server.url + "/account/delete")
            login_form_submit(page, "alice", NEW_PASSWORD)
            expect(page.get_by_text("What is kept")).to_be_visible()
            page.get_by_label("Password").fill(NEW_PASSWORD)
            page.get_by_label("I understand").check()
            page.get_by_role("button", name="Delete my account").click()
            expect(page.get_by_role("heading", name="Your account was deleted")).to_be_visible()
            check(page, "deleted")
            assert not User.objects.filter(username="alice").exists()
            context.close()
        finally:
            # Playwright runs this block in a greenlet, where Django opened connections of its
            # own: close them, or the test database cannot be dropped afterwards.
            connections.close_all()

    assert not Session.objects.filter(user__username="alice").exists()
    assert PASSWORD not in server.output() and NEW_PASSWORD not in server.output()
