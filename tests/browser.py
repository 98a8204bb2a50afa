"""Debian's Chromium driven by Playwright, for the real-browser tests (tests/flows/).

The browser is /usr/bin/chromium (`apt-get install chromium`, done by .ci/run); Playwright's own
browser download is never used. Without that binary, a test module importing this one is
skipped, saying why. Usage:

    from tests.browser import chromium, login_form_submit

    with chromium() as browser:
        page = browser.new_page()
        page.goto(server.url + "/login")
        login_form_submit(page, "alice")
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import PASSWORD
from tests.live import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# The consent page's button that grants the request.
APPROVE = re.compile(r"^(allow|approve|authori[sz]e|accept|continue|yes)\b", re.IGNORECASE)

if not CHROMIUM.exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium; "
        ".ci/run does this) to run the real-browser tests",
        allow_module_level=True,
    )


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed on the way out (whatever the test did)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def login_form_submit(page: Page, username: str, password: str = PASSWORD) -> None:
    """On the hosted login page: type the name and the password and press Enter (a plain form
    post, no script needed)."""
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def fits_the_screen(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
