"""An SMTP outage delays mail and loses none; no request waits on SMTP.

authserver under gunicorn, the deliver_email worker as its own process, and aiosmtpd as the SMTP
server. The server first hangs (accepts, never answers), then is down (connection refused), then
comes up: the reset mail requested during the outage is delivered once, after it."""

from __future__ import annotations

import re
import time

import pytest
import requests

from mail.models import Outbox
from tests.live import Gunicorn
from tests.mail.live import HangingSmtpServer, MailWorker, SmtpServer, reset_link

pytestmark = pytest.mark.slow

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SMTP_TIMEOUT = 2


def request_reset(base: str, login: str) -> tuple[requests.Response, float]:
    browser = requests.Session()
    token = CSRF.search(browser.get(base + "/password/forgot", timeout=10).text).group(1)
    started = time.monotonic()
    answer = browser.post(
        base + "/password/forgot",
        data={"csrfmiddlewaretoken": token, "login": login},
        headers={"Referer": base + "/password/forgot"},
        timeout=30,
    )
    return answer, time.monotonic() - started


def wait_until(condition, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_mail_requested_during_an_outage_arrives_after_it(child_env, make_user):
    make_user("ada", email="ada@example.com")
    smtp = SmtpServer()
    env = {
        **child_env,
        "EMAIL_URL": smtp.url,
        "AUTHSERVER_EMAIL_TIMEOUT": str(SMTP_TIMEOUT),
        "AUTHSERVER_EMAIL_RETRY_BASE_SECONDS": "1",
        "AUTHSERVER_EMAIL_RETRY_MAX_SECONDS": "2",
    }
    with Gunicorn(env, workers=1) as server, MailWorker(env) as worker:
        # 1. The SMTP server hangs: the request does not wait for it.
        with HangingSmtpServer(smtp.port):
            answer, took = request_reset(server.url, "ada")
            assert answer.status_code == 200 and "Check your email" in answer.text
            assert took < SMTP_TIMEOUT / 2, f"the request took {took:.2f} s: it waited on SMTP"
            wait_until(
                lambda: Outbox.objects.filter(attempts__gte=1).exists(), what="a timed-out try"
            )
            row = Outbox.objects.get()
            assert row.status == "pending" and "timed out" in row.last_error.lower()

        # 2. The server is down (refused): retried with backoff, kept.
        wait_until(lambda: Outbox.objects.get().attempts >= 3, what="retries while down")
        row = Outbox.objects.get()
        assert row.status == "pending" and row.sent_at is None
        assert "refused" in row.last_error.lower()
        answer, took = request_reset(server.url, "ada")  # a second request, same: no waiting
        assert answer.status_code == 200 and took < SMTP_TIMEOUT / 2

        # 3. The server comes up: both messages are delivered, once each.
        with smtp:
            wait_until(lambda: len(smtp.messages) >= 2, what="delivery after the outage")
            time.sleep(1)  # any duplicate would arrive meanwhile
            assert len(smtp.messages) == 2
            assert {m["To"] for m in smtp.messages} == {"ada@example.com"}
            _, token = reset_link(smtp.messages[-1])
        assert set(Outbox.objects.values_list("status", flat=True)) == {"sent"}
        assert Outbox.objects.filter(body_text="", body_html="").count() == 2
        logs = worker.output() + server.output()
        assert token not in logs
        assert "token=" not in logs
