"""A real SMTP server (aiosmtpd, which no one here wrote) for the mail tests, and the delivery
step of the deliver_email worker pointed at it.

`Mailbox` runs aiosmtpd on a free loopback port in a thread and keeps every message it accepts
(envelope sender and recipients, and the parsed message). `deliver(mailbox, settings)` runs
mail.services.mail_deliver_due, the worker's step, with Django's SMTP backend aimed at that
server: the messages a gunicorn child queued in the outbox travel over real SMTP.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.live import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""

    def links(self, path: str) -> list[str]:
        """The URLs in the text part whose path starts with `path`."""
        return re.findall(rf"https?://[^\s\"'<>]+{re.escape(path)}[^\s\"'<>]*", self.text)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.box.lock:
            self.box.messages.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=parsed,
                    raw=envelope.original_content,
                )
            )
        return "250 Message accepted for delivery"


class Mailbox:
    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if address.lower() in map(str.lower, m.rcpt_tos)]

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()


def smtp_settings(settings, mailbox: Mailbox) -> None:
    """Point this process's Django at the mailbox (the worker step runs here)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = mailbox.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5


def deliver(mailbox: Mailbox, *, expect: int | None = None, timeout: float = 10) -> int:
    """Run the worker's delivery step until the outbox has nothing due; with `expect`, until
    the mailbox holds that many messages in all. Returns how many were sent."""
    from mail.services import mail_deliver_due

    sent = 0
    deadline = time.monotonic() + timeout
    while True:
        sent += mail_deliver_due().sent
        with mailbox.lock:
            count = len(mailbox.messages)
        if expect is None or count >= expect or time.monotonic() > deadline:
            return sent
        time.sleep(0.05)
