"""Password reset against the real thing: gunicorn, the deliver_email worker, aiosmtpd.

Link replay and tamper probes over HTTP, twenty browsers submitting one link at once (exactly
one password change), and the enumeration probes: the answer's body and timing for an account
and for a name that belongs to none."""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from accounts.models import User
from audit.models import AuthEvent
from authserver import settings as app_settings
from tests.conftest import PASSWORD
from tests.live import Gunicorn
from tests.mail.live import MailWorker, SmtpServer, reset_link

pytestmark = pytest.mark.slow

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
NEW_PASSWORD = "a brand new passphrase 77"


@pytest.fixture
def live(child_env, make_user, settings) -> Iterator[tuple[Gunicorn, SmtpServer]]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS
    make_user("ada", email="ada@example.com")
    make_user("bob", email="bob@example.com")
    smtp = SmtpServer()
    env = {
        **child_env,
        "EMAIL_URL": smtp.url,
        "AUTHSERVER_PASSWORD_RESET_PER_LOGIN": "1000",
        "AUTHSERVER_PASSWORD_RESET_PER_IP": "100000",
    }
    server = Gunicorn(env, workers=2)
    server.env["AUTHSERVER_ISSUER"] = server.url  # links point at this server
    with smtp, server, MailWorker(env):
        yield server, smtp


def form_token(browser: requests.Session, url: str) -> str:
    page = browser.get(url, timeout=10)
    match = CSRF.search(page.text)
    assert match, f"{url} has no form ({page.status_code})"
    return match.group(1)


def ask(base: str, login: str) -> requests.Response:
    browser = requests.Session()
    token = form_token(browser, base + "/password/forgot")
    return browser.post(
        base + "/password/forgot", data={"csrfmiddlewaretoken": token, "login": login}, timeout=30
    )


def mail_for(smtp: SmtpServer, address: str, count: int) -> tuple[str, str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        mine = [m for m in smtp.messages if m["To"] == address and "Reset" in m["Subject"]]
        if len(mine) >= count:
            return reset_link(mine[count - 1])
        time.sleep(0.05)
    raise AssertionError(f"no reset mail #{count} for {address}")


def open_link(base: str, token: str) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    landing = browser.get(f"{base}/password/reset?token={token}", allow_redirects=False, timeout=10)
    return browser, landing


def submit(browser: requests.Session, base: str, csrf: str, password: str) -> requests.Response:
    return browser.post(
        base + "/password/reset",
        data={"csrfmiddlewaretoken": csrf, "new_password1": password, "new_password2": password},
        timeout=60,
    )


def test_link_replay_and_tamper_probes(live):
    server, smtp = live
    assert ask(server.url, "ada").status_code == 200
    url, token = mail_for(smtp, "ada@example.com", 1)
    assert url == f"{server.url}/password/reset?token={token}"

    # Tampered and made-up links: the same clear page, which names no account.
    probes = [
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        token.upper() if token.upper() != token else token.lower(),
        token[:42],
        token + "A",
        "A" * 43,
        "..%2F..%2Fadmin",
        "%27%20OR%201%3D1--",
        "x" * 1000,
    ]
    bodies = set()
    for probe in probes:
        page = requests.get(f"{server.url}/password/reset", params={"token": probe}, timeout=10)
        assert page.status_code in (400, 404), probe[:60]
        if page.status_code == 400:
            assert "This link does not work" in page.text and "ada" not in page.text
            assert page.headers["Referrer-Policy"] == "no-referrer"
            bodies.add(page.text)
    assert len(bodies) == 1

    # The real link: the token leaves the address bar at once.
    browser, landing = open_link(server.url, token)
    assert landing.status_code == 302 and landing.headers["Location"] == "/password/reset"
    assert landing.headers["Referrer-Policy"] == "no-referrer"
    csrf = form_token(browser, server.url + "/password/reset")
    done = submit(browser, server.url, csrf, NEW_PASSWORD)
    assert done.status_code == 200 and "Your password was changed" in done.text

    # Replays: the same link, in a new browser and in the one that used it.
    _, again = open_link(server.url, token)
    assert again.status_code == 400 and "already been used" in again.text
    assert browser.get(server.url + "/password/reset", timeout=10).status_code == 400

    # The notice arrived, and the old password no longer signs in.
    smtp.wait_for(lambda m: m["To"] == "ada@example.com" and "changed" in m["Subject"])
    user = User.objects.get(username="ada")
    assert user.check_password(NEW_PASSWORD) and not user.check_password(PASSWORD)


def test_twenty_concurrent_submissions_of_one_link_change_the_password_once(live):
    server, smtp = live
    ask(server.url, "bob")
    _, token = mail_for(smtp, "bob@example.com", 1)
    racers = []
    for n in range(20):
        browser, landing = open_link(server.url, token)
        assert landing.status_code == 302
        racers.append((browser, form_token(browser, server.url + "/password/reset"), n))
    barrier = threading.Barrier(len(racers))
    results: dict[int, tuple[int, str]] = {}

    def go(browser, csrf, n):
        barrier.wait()
        page = submit(browser, server.url, csrf, f"{NEW_PASSWORD} racer {n:02d}")
        results[n] = (page.status_code, page.text)

    threads = [threading.Thread(target=go, args=racer) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    winners = [
        n for n, (status, text) in results.items() if status == 200 and "was changed" in text
    ]
    losers = [n for n, (status, text) in results.items() if status == 400 and "already" in text]
    assert len(winners) == 1, {n: s for n, (s, _) in results.items()}
    others = {
        n: (status, re.sub(r"\s+", " ", text)[:300])
        for n, (status, text) in results.items()
        if n not in winners and n not in losers
    }
    assert len(losers) == 19, others
    user = User.objects.get(username="bob")
    assert user.check_password(f"{NEW_PASSWORD} racer {winners[0]:02d}")
    assert AuthEvent.objects.filter(event_type="password.reset", user_id=user.pk).count() == 1
    assert AuthEvent.objects.filter(event_type="password.changed", user_id=user.pk).count() == 1


def _timed_post(base: str, login: str) -> tuple[float, str]:
    browser = requests.Session()
    csrf = form_token(browser, base + "/password/forgot")
    started = time.perf_counter()
    page = browser.post(
        base + "/password/forgot", data={"csrfmiddlewaretoken": csrf, "login": login}, timeout=30
    )
    took = time.perf_counter() - started
    assert page.status_code == 200
    return took, page.text


@pytest.mark.timing
def test_the_answer_does_not_tell_accounts_apart_by_body_or_timing(live):
    server, _ = live
    for _ in range(10):  # warm both paths (connections, prepared statements)
        _timed_post(server.url, "ada")
        _timed_post(server.url, "nobody-at-all")
    existing, missing, bodies = [], [], set()
    for n in range(80):  # interleaved, so drift in the machine's load hits both alike
        took, body = _timed_post(server.url, "ada@example.com")
        existing.append(took)
        bodies.add(body)
        took, body = _timed_post(server.url, f"nobody{n}@example.com")
        missing.append(took)
        bodies.add(body)
    assert len(bodies) == 1
    gap = abs(statistics.median(existing) - statistics.median(missing))
    spread = statistics.median(existing + missing)
    print(
        f"reset request over HTTP: existing median {statistics.median(existing) * 1000:.2f} ms, "
        f"missing {statistics.median(missing) * 1000:.2f} ms, gap {gap * 1000:.2f} ms"
    )
    # A path that skipped the link, the mail or the audit row for missing names, or that sent
    # mail inline, would open a gap of milliseconds to seconds; equal work leaves noise.
    assert gap < max(0.002, 0.15 * spread), f"timing separates accounts: {gap * 1000:.2f} ms"
    # Mann-Whitney U: the two samples are not told apart (|z| small).
    pooled = sorted([(t, 0) for t in existing] + [(t, 1) for t in missing])
    rank_sum = sum(rank for rank, (_, group) in enumerate(pooled, 1) if group == 0)
    n1, n2 = len(existing), len(missing)
    u = rank_sum - n1 * (n1 + 1) / 2
    z = (u - n1 * n2 / 2) / ((n1 * n2 * (n1 + n2 + 1) / 12) ** 0.5)
    print(f"Mann-Whitney z = {z:.2f}")
    assert abs(z) < 4, f"timing separates accounts (z={z:.2f})"
