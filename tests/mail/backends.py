"""Email backends for the outbox's unit tests (the SMTP tests use a real aiosmtpd server)."""

from __future__ import annotations

import smtplib
import threading
import time

from django.core.mail.backends.base import BaseEmailBackend

SENT: list[str] = []
_lock = threading.Lock()


class RefusingBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


class SlowRecordingBackend(BaseEmailBackend):
    """Records each recipient; sleeps a little so concurrent workers overlap."""

    def send_messages(self, email_messages):
        for message in email_messages:
            time.sleep(0.01)
            with _lock:
                SENT.extend(message.to)
        return len(email_messages)
