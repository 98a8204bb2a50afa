"""A real SMTP server (aiosmtpd, which no one here wrote) for the mail tests, and the delivery
step of the deliver_email worker pointed at it.

`Mailbox` runs aiosmtpd on a free loopback port in a thread and keeps every message it accepts
(envelope sender and recipients, and the parsed message). `mail_worker` runs the real
`manage.py deliver_email` worker (tests/mail/live.py) with EMAIL_URL aimed at it: the messages
a gunicorn child queued in the outbox travel over real SMTP.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.live import free_port
from tests.mail.live import MailWorker


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


@contextmanager
def mail_worker(env: Mapping[str, str], mailbox: Mailbox) -> Iterator[MailWorker]:
    """`manage.py deliver_email` (the real worker) as a child process, sending to `mailbox`."""
    with MailWorker({**env, "EMAIL_URL": f"smtp://127.0.0.1:{mailbox.port}"}) as worker:
        yield worker


def deliver(mailbox: Mailbox, *, expect: int | None = None, timeout: float = 20) -> int:
    """Wait for the worker: until the mailbox holds `expect` messages in all, or (without
    `expect`) for a few of its rounds. Returns how many messages the mailbox holds."""
    deadline = time.monotonic() + (timeout if expect is not None else 1.5)
    while time.monotonic() < deadline:
        with mailbox.lock:
            count = len(mailbox.messages)
        if expect is not None and count >= expect:
            return count
        time.sleep(0.05)
    with mailbox.lock:
        return len(mailbox.messages)
