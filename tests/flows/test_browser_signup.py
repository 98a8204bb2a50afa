"""A real browser signs up: the sign-up page, the mail (delivered by the deliver_email worker
over SMTP to aiosmtpd), the confirmation link, then signing in. Chromium (Debian's
/usr/bin/chromium, driven by Playwright) on a desktop screen with scripts on, where axe-core
checks each new page in the light and dark schemes (tests/a11y.py), and on a phone-sized screen
with JavaScript off.

Screenshots go to test-artifacts/. Without Chromium the test is skipped and says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User
from accounts.services import user_create
from authserver import settings as app_settings
from tests.a11y import assert_accessible
from tests.accounts.mailbox import Mailbox, deliver, mail_worker
from tests.browser import ARTIFACTS, DESKTOP, PHONE, chromium, fits_the_screen, login_form_submit
from tests.conftest import PASSWORD
from tests.live import Gunicorn, manage

pytestmark = pytest.mark.slow

NEW_PASSWORD = "a fresh and long passphrase 42"


@pytest.fixture
def stack(child_env, settings) -> Iterator[tuple[Gunicorn, Mailbox]]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    server = Gunicorn(child_env, workers=2)
    server.env["AUTHSERVER_ISSUER"] = server.url
    server.env["AUTHSERVER_REGISTRATION"] = "open"
    with Mailbox() as mailbox, mail_worker(child_env, mailbox), server:
        yield server, mailbox


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def accessible(page: Page, name: str) -> None:
    """axe-core finds no serious or critical violation, in the light and the dark scheme."""
    for scheme in ("dark", "light"):
        page.emulate_media(color_scheme=scheme)
        assert_accessible(page, f"{name} ({scheme})")


def sign_up_and_confirm(
    page: Page, server: Gunicorn, mailbox: Mailbox, username: str, label: str, *, axe: bool
) -> None:
    check = accessible if axe else (lambda page, name="": None)
    page.goto(server.url + "/login")
    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    check(page, "sign-up page")
    assert fits_the_screen(page)
    shot(page, f"signup-{label}")

    # A mistake first: the form comes back with the error tied to its field.
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email address").fill(f"{username}@example.org")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD + "x")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("The two passwords don\u2019t match.").first).to_be_visible()
    check(page, "sign-up page with an error")
    shot(page, f"signup-error-{label}")

    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    check(page, "check your email page")
    shot(page, f"signup-sent-{label}")

    address = f"{username}@example.org"
    deadline_count = len(mailbox.messages) + 1
    deliver(mailbox, expect=deadline_count)
    (mail,) = mailbox.to(address)
    (link,) = mail.links("/email/confirm?token=")
    page.goto(link)
    expect(page.get_by_role("heading", name="Confirm your email address")).to_be_visible()
    check(page, "confirm page")
    shot(page, f"confirm-{label}")
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_role("heading", name="Email address confirmed")).to_be_visible()
    check(page, "confirmed page")
    shot(page, f"confirmed-{label}")

    page.get_by_role("link", name="Sign in").click()
    login_form_submit(page, address, NEW_PASSWORD)
    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_text(username).first).to_be_visible()

    # The same link again: a clear page, nothing else.
    page.goto(link)
    expect(page.get_by_role("heading", name="This link can\u2019t be used")).to_be_visible()
    check(page, "used link page")
    shot(page, f"link-used-{label}")


def test_sign_up_mail_confirm_sign_in_in_chromium(stack):
    server, mailbox = stack
    with chromium() as browser:
        desktop = browser.new_context(viewport=DESKTOP)
        page = desktop.new_page()
        sign_up_and_confirm(page, server, mailbox, "carol", "desktop", axe=True)

        # The change-of-address page and the invitation page pass axe too.
        page.goto(server.url + "/account/email")
        expect(page.get_by_role("heading", name="Change your email address")).to_be_visible()
        accessible(page, "change of address page")
        shot(page, "account-email-desktop")
        made = manage("invite_user", "ivy@example.org", env=server.env)
        assert made.returncode == 0, made.stderr
        deliver(mailbox, expect=len(mailbox.messages) + 1)
        (invite,) = mailbox.to("ivy@example.org")
        (link,) = invite.links("/invite?token=")
        page.goto(link)
        expect(page.get_by_role("heading", name="Accept your invitation")).to_be_visible()
        accessible(page, "invitation page")
        shot(page, "invite-desktop")
        desktop.close()

        # A phone-sized screen with JavaScript off: the same flow without any script.
        phone = browser.new_context(viewport=PHONE, java_script_enabled=False)
        sign_up_and_confirm(phone.new_page(), server, mailbox, "dan", "phone", axe=False)
        phone.close()

    for name in ("carol", "dan"):
        user = User.objects.get(username=name)
        assert user.is_active and user.email_verified
    assert NEW_PASSWORD not in server.output()
    assert not re.search(r"token=[A-Za-z0-9_-]{43}", server.output())
