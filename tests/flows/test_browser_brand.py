"""Branding (issue 18.2) as a person sees it: authserver under gunicorn with a brand from the
environment, opened in Debian's Chromium. On each hosted page the window title and the header
name the brand, the primary button is painted in the brand colour with readable text (light and
dark schemes, computed styles read from the browser), and the page still passes the axe check
(tests/a11y.py), with a pale brand colour that white text could not be read on. The admin's
sign-in page shows the brand name, "Sign in", and the brand colour in its header."""

from __future__ import annotations

import pytest
from django.db import connections
from playwright.sync_api import Page, expect

from authserver import settings as app_settings
from branding import values
from tests.a11y import assert_accessible
from tests.browser import DESKTOP, chromium, login_form_submit, screenshot
from tests.conftest import PASSWORD
from tests.live import Gunicorn

pytestmark = pytest.mark.slow

NAME = "Acme ID"
# Pale yellow in the light scheme (only black text reads on it; links keep the built-in blue),
# violet in the dark one.
LIGHT = "#ffd400"
DARK = "#7c3aed"


def css_rgb(color: str) -> str:
    r, g, b = values.rgb(color)
    return f"rgb({r}, {g}, {b})"


def primary_button_colours(page: Page) -> tuple[str, str]:
    return page.eval_on_selector(
        ".btn-primary",
        "el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).color]",
    )


def check_branded(page: Page, title: str, name: str, scheme: str, button: bool = True) -> None:
    expect(page).to_have_title(f"{title} · {NAME}")
    expect(page.locator(".site-header .brand-name")).to_have_text(NAME)
    if button:
        colour = LIGHT if scheme == "light" else DARK
        assert tuple(primary_button_colours(page)) == (
            css_rgb(colour),
            css_rgb(values.text_on(colour)),
        )
    assert_accessible(page, f"brand {name} ({scheme})")
    screenshot(page, f"brand-{name}-{scheme}")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_hosted_pages_and_admin_sign_in_carry_the_brand(
    child_env, make_user, settings, monkeypatch, scheme
):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    make_user("erin", email="erin@example.com")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    server = Gunicorn(child_env, workers=1)
    server.env.update(
        AUTHSERVER_ISSUER=server.url,
        AUTHSERVER_BRAND_NAME=NAME,
        AUTHSERVER_BRAND_PRIMARY_COLOR=LIGHT,
        AUTHSERVER_BRAND_PRIMARY_COLOR_DARK=DARK,
    )
    with server, chromium() as browser:
        try:
            page = browser.new_context(viewport=DESKTOP, color_scheme=scheme).new_page()
            page.goto(server.url + "/login")
            check_branded(page, "Sign in", "login", scheme)
            page.get_by_role("button", name="Sign in", exact=True).click()  # empty: field errors
            expect(page.get_by_role("alert")).to_be_visible()
            check_branded(page, "Sign in", "login-errors", scheme)

            page.get_by_role("link", name="Forgot your password?").click()
            expect(page.locator("h1")).to_be_visible()
            assert page.title().endswith(f" · {NAME}")
            check_branded(page, page.title().split(" · ")[0], "forgot", scheme)

            page.goto(server.url + "/login")
            login_form_submit(page, "erin")
            expect(
                page.get_by_text(f"You are signed in to {NAME} in this browser.")
            ).to_be_visible()
            check_branded(page, page.title().split(" · ")[0], "home", scheme, button=False)
            page.goto(server.url + "/account/")
            check_branded(page, page.title().split(" · ")[0], "account", scheme, button=False)
            page.goto(server.url + "/logout")
            expect(page.get_by_text(f"You are signed in to {NAME} as")).to_be_visible()
            check_branded(page, page.title().split(" · ")[0], "logout", scheme, button=False)
            page.get_by_role("button", name="Sign out").click()

            admin = browser.new_context(viewport=DESKTOP, color_scheme=scheme).new_page()
            admin.goto(server.url + "/admin/login/")
            expect(admin).to_have_title(f"Sign in | {NAME} admin")
            expect(admin.locator("#site-name")).to_have_text(f"{NAME} administration")
            expect(admin.locator("input[type=submit]")).to_have_value("Sign in")
            colour = LIGHT if scheme == "light" else DARK
            header = admin.eval_on_selector("#header", "el => getComputedStyle(el).backgroundColor")
            assert header == css_rgb(values.hover_of(colour))
            name = admin.eval_on_selector("#site-name a", "el => getComputedStyle(el).color")
            assert name == css_rgb(values.text_on(values.hover_of(colour)))
            screenshot(admin, f"brand-admin-login-{scheme}")
        finally:
            connections.close_all()
    assert PASSWORD not in server.output()
