"""The outbox (mail/): enqueue in the caller's transaction, deliver with retries, never drop."""

from __future__ import annotations

import email
import threading
from datetime import timedelta
from email.utils import getaddresses

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from mail.models import Outbox
from mail.services import (
    MailAddressInvalid,
    mail_deliver_due,
    mail_enqueue,
    mail_retry_delay,
    mail_sent_purge,
)

CONTEXT = {"user": {"get_username": "ada"}, "link": "https://idp.example/x", "ttl_minutes": 30}


def enqueue(to="ada@example.com", **kwargs) -> Outbox:
    return mail_enqueue(to=to, template="password_reset", context=CONTEXT, **kwargs)


@pytest.mark.django_db
def test_enqueue_renders_both_parts_and_sends_nothing():
    row = enqueue()
    assert row.status == Outbox.Status.PENDING
    assert row.subject == "Reset your authserver password"
    assert "https://idp.example/x" in row.body_text and "https://idp.example/x" in row.body_html
    assert "<html" in row.body_html
    assert mail.outbox == []  # nothing left the process


@pytest.mark.django_db
def test_a_rolled_back_transaction_takes_its_mail_with_it():
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue()
        raise RuntimeError
    assert not Outbox.objects.exists()


@pytest.mark.django_db
def test_delivery_sends_text_and_html_and_blanks_the_stored_bodies():
    row = enqueue(to_name="Ada Lovelace")
    assert mail_deliver_due().sent == 1
    (message,) = mail.outbox
    assert message.to == ["Ada Lovelace <ada@example.com>"]
    assert "https://idp.example/x" in message.body
    assert message.alternatives[0][1] == "text/html"
    row.refresh_from_db()
    assert row.status == Outbox.Status.SENT and row.sent_at is not None
    assert row.body_text == "" and row.body_html == ""
    assert mail_deliver_due().sent == 0  # sent once only


@pytest.mark.django_db
@pytest.mark.parametrize(
    "to",
    [
        "ada@example.com\r\nBcc: eve@evil.example",
        "ada@example.com\nBcc: eve@evil.example",
        "ada@example.com, eve@evil.example",
        "Eve <eve@evil.example>",
        "not an address",
        "",
    ],
)
def test_the_recipient_must_be_one_plain_address(to):
    with pytest.raises(MailAddressInvalid):
        enqueue(to=to)
    assert not Outbox.objects.exists()


@pytest.mark.django_db
def test_a_display_name_cannot_add_a_header_or_recipient():
    enqueue(to_name="Ada\r\nBcc: eve@evil.example\r\nSubject: pwned")
    mail_deliver_due()
    (message,) = mail.outbox
    parsed = email.message_from_string(message.message().as_string())
    assert parsed.get_all("Bcc") is None
    assert parsed.get_all("Subject") == ["Reset your authserver password"]
    assert [address for _, address in getaddresses(parsed.get_all("To"))] == ["ada@example.com"]
    assert message.recipients() == [message.to[0]]


@pytest.mark.django_db
def test_a_failing_message_is_kept_and_retried_with_capped_backoff(settings):
    settings.EMAIL_BACKEND = "tests.mail.backends.RefusingBackend"
    settings.AUTHSERVER_EMAIL_RETRY_BASE_SECONDS = 10
    settings.AUTHSERVER_EMAIL_RETRY_MAX_SECONDS = 100
    row = enqueue()
    now = timezone.now()
    for attempt in range(1, 9):
        assert mail_deliver_due(now=now).failed == 1
        row.refresh_from_db()
        assert row.status == Outbox.Status.PENDING and row.attempts == attempt
        assert "SMTPServerDisconnected" in row.last_error
        assert "idp.example" not in row.last_error
        wait = (row.next_attempt_at - now).total_seconds()
        assert 0 < wait <= 100
        assert mail_deliver_due(now=now).failed == 0  # not due yet
        now = row.next_attempt_at
    assert wait == pytest.approx(100, rel=0.21)  # the cap was reached, the message is still there
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert mail_deliver_due(now=now).sent == 1
    assert len(mail.outbox) == 1


def test_retry_delay_doubles_up_to_the_cap(settings):
    settings.AUTHSERVER_EMAIL_RETRY_BASE_SECONDS = 30
    settings.AUTHSERVER_EMAIL_RETRY_MAX_SECONDS = 3600
    assert 24 <= mail_retry_delay(1) <= 36
    assert 48 <= mail_retry_delay(2) <= 72
    assert mail_retry_delay(50) <= 3600


@pytest.mark.django_db
def test_purge_deletes_only_old_sent_rows():
    old = enqueue()
    pending = enqueue()
    Outbox.objects.filter(pk=old.pk).update(
        status=Outbox.Status.SENT, sent_at=timezone.now() - timedelta(days=40)
    )
    assert mail_sent_purge(older_than_days=30) == 1
    assert list(Outbox.objects.values_list("pk", flat=True)) == [pending.pk]


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_send_one_message_twice(settings):
    """Ten workers on their own PostgreSQL connections drain 40 messages: each goes out once."""
    settings.EMAIL_BACKEND = "tests.mail.backends.SlowRecordingBackend"
    from tests.mail import backends

    backends.SENT.clear()
    ids = {enqueue(to=f"user{n}@example.com").pk for n in range(40)}
    barrier = threading.Barrier(10)
    errors = []

    def worker():
        try:
            barrier.wait()
            while mail_deliver_due(limit=5).sent:
                pass
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(backends.SENT) == sorted(f"user{n}@example.com" for n in range(40))
    assert set(Outbox.objects.filter(status="sent").values_list("pk", flat=True)) == ids


@pytest.mark.django_db
def test_the_worker_command_delivers_what_is_due_once():
    from io import StringIO

    from django.core.management import call_command

    enqueue()
    out = StringIO()
    call_command("deliver_email", "--once", stdout=out)
    assert "delivered 1 message(s), 0 failed" in out.getvalue()
    assert len(mail.outbox) == 1


def test_the_worker_refuses_to_start_without_an_smtp_server_in_production(settings):
    from django.core.management import CommandError, call_command

    settings.EMAIL_CONFIGURED = False
    with pytest.raises(CommandError, match="EMAIL_URL is not set"):
        call_command("deliver_email", "--once")


def test_email_url_is_read_from_the_environment():
    import subprocess
    import sys

    from tests.live import ROOT, base_env

    code = (
        "from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.EMAIL_HOST_USER)"
    )
    env = base_env(EMAIL_URL="smtp+tls://mailer:s3cret@smtp.example.com:587")
    done = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "smtp.example.com",
        "587",
        "True",
        "mailer",
    ]
    bad = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=base_env(EMAIL_URL="http://smtp.example.com"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "EMAIL_URL" in bad.stderr


@pytest.mark.django_db
def test_metrics_show_the_outbox_backlog(client, settings):
    settings.AUTHSERVER_METRICS_ALLOWED_IPS = ["127.0.0.1"]
    settings.EMAIL_BACKEND = "tests.mail.backends.RefusingBackend"
    row = enqueue()
    Outbox.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    mail_deliver_due()
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert "authserver_mail_outbox_pending 1.0" in text
    assert "authserver_mail_outbox_failing 1.0" in text
    (line,) = [
        line
        for line in text.splitlines()
        if line.startswith("authserver_mail_outbox_oldest_pending_age_seconds ")
    ]
    age = float(line.split()[1])
    assert 1150 < age < 1300
