"""The admin's Sessions and Signing keys lists as a new operator meets them (issue 18.6), in
Debian's Chromium driven by Playwright against authserver under gunicorn: on a fresh install
each empty list says why it is empty and how it fills; with realistic rows (long device names,
long app names, revoked sessions, several keys) neither list scrolls sideways at 1280 px."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Page

from accounts.services import user_create
from authserver import settings as app_settings
from oauth.clients import client_create
from sessions.models import BROWSER_CLIENT_ID, FIRST_PARTY_CLIENT_ID, Session
from sessions.services import browser_session_start, session_revoke, session_start
from tests.browser import ARTIFACTS, chromium
from tests.conftest import PASSWORD
from tests.live import Gunicorn, manage

pytestmark = pytest.mark.slow


SESSIONS = "/admin/authsessions/session/"
KEYS = "/admin/tokens/signingkey/"
LONG_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86"
)


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    user_create(
        username="root",
        email="root@example.com",
        password=PASSWORD,
        is_staff=True,
        is_superuser=True,
    )
    with Gunicorn(child_env, workers=1) as running:
        yield running


def _sign_in(page: Page, server: Gunicorn) -> None:
    page.goto(server.url + "/admin/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(server.url + "/admin/")


def _overflow(page: Page) -> int:
    """How many pixels of content stick out sideways, of the page or of any element that
    scrolls (the admin puts its result table in a scrolling box): 0 when everything shows."""
    return page.evaluate(
        """() => {
            const root = document.documentElement;
            let worst = Math.max(root.scrollWidth, document.body.scrollWidth) - root.clientWidth;
            for (const el of document.querySelectorAll("*")) {
                const style = getComputedStyle(el).overflowX;
                if ((style === "auto" || style === "scroll") && el.clientWidth > 0) {
                    worst = Math.max(worst, el.scrollWidth - el.clientWidth);
                }
            }
            return worst;
        }"""
    )


def _fill(server: Gunicorn, child_env: dict) -> None:
    """Rows as a busy installation has them: every kind of session, long names, revocations;
    a second key published by a rotation."""
    assert requests.get(server.url + "/readyz", timeout=30).status_code == 200  # first key
    for args in (["--activate-now"], []):  # a retired key, an active one and a next one
        rotated = manage("rotate_signing_keys", *args, env=child_env, timeout=120)
        assert rotated.returncode == 0, rotated.stderr
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.get(username="root")
    someone = user_create(
        username="maximilian.alexander-worthington@example-corporation.com",
        email="maximilian.alexander-worthington@example-corporation.com",
        password=PASSWORD,
    )
    app = client_create(
        name="Quarterly Financial Reporting Dashboard (Production)",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["https://reports.example.com/callback"],
        scopes=["openid"],
    ).client
    for index, (user, client_id) in enumerate(
        [
            (root, BROWSER_CLIENT_ID),
            (someone, FIRST_PARTY_CLIENT_ID),
            (someone, app.client_id),
            (root, app.client_id),
            (someone, BROWSER_CLIENT_ID),
        ]
        * 3
    ):
        where = {"ip": "2001:db8:85a3:1234:5678:8a2e:370:7334", "user_agent": LONG_AGENT}
        if client_id == BROWSER_CLIENT_ID:
            session = browser_session_start(user=user, **where)
        else:
            session = session_start(
                user=user,
                client_id=client_id,
                audience=["https://api.example.com/very/long/audience/identifier"],
                scope="openid",
                **where,
            ).session
        if index % 2:
            session_revoke(session=session, reason=Session.RevokeReason.REUSE_DETECTED)


def _in_chromium(server: Gunicorn, check) -> None:
    """Sign in to the admin in Chromium at 1280 x 800 and run `check(page)`. (Playwright's sync
    API runs an event loop: the database is filled outside it.)"""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        _sign_in(page, server)
        check(page)


def test_empty_lists_say_why_and_full_lists_fit_1280_px(server, child_env):
    ARTIFACTS.mkdir(exist_ok=True)

    def fresh_install(page: Page) -> None:
        # The sessions list holds the admin's own sign-in and says what a session is; the keys
        # list is empty and says why.
        page.goto(server.url + SESSIONS)
        note = page.inner_text("#sessions-note")
        assert "Every sign-in is a session" in note and "hosted login page" in note
        assert page.locator("#result_list tbody tr").count() == 1
        assert "browser" in page.inner_text("#result_list tbody tr")
        page.goto(server.url + KEYS)
        note = page.inner_text("#empty-list-note")
        assert "No signing keys yet" in note and "key-encryption key" in note
        assert "rotate_signing_keys --activate-now" in note

    def busy(page: Page) -> None:
        for path, name in ((SESSIONS, "sessions"), (KEYS, "signing-keys")):
            page.goto(server.url + path)
            assert page.locator("#empty-list-note").count() == 0
            assert page.locator("#result_list tbody tr").count() >= 3
            page.screenshot(path=str(ARTIFACTS / f"admin-{name}-1280.png"), full_page=True)
            assert _overflow(page) <= 0, f"{path} scrolls sideways by {_overflow(page)} px"

    _in_chromium(server, fresh_install)
    _fill(server, child_env)
    _in_chromium(server, busy)
    assert "Traceback" not in server.output()
