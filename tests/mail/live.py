"""Real mail for the live tests: an aiosmtpd SMTP server (that no one here wrote) and the
`deliver_email` worker as a child process."""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

from tests.live import ROOT, free_port

LINK = re.compile(r"(https?://[^\s\"<>]+/password/reset\?token=([A-Za-z0-9_-]{43}))")


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:`port`, started and stopped at will (the port stays the same, so
    the worker's EMAIL_URL keeps pointing at it)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.recorder = _Recorder()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.recorder.lock:
            return list(self.recorder.messages)

    def start(self) -> SmtpServer:
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(
        self, predicate: Callable[[EmailMessage], bool], timeout: float = 20
    ) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if predicate(message):
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no matching mail within {timeout} s; got {len(self.messages)}")


def text_body(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def reset_link(message: EmailMessage) -> tuple[str, str]:
    """(url, token) of the reset link in the plain-text part."""
    match = LINK.search(text_body(message))
    assert match, "no reset link in the mail"
    return match.group(1), match.group(2)


class HangingSmtpServer:
    """Accepts TCP connections and never says a word: an SMTP server that hangs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def __enter__(self) -> HangingSmtpServer:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(50)  # the kernel completes handshakes; nobody ever reads or writes
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sock is not None:
            self.sock.close()


class MailWorker:
    """`manage.py deliver_email` as a child process (the long-running worker)."""

    def __init__(self, env: Mapping[str, str], interval: float = 0.2) -> None:
        self.env = dict(env)
        self.interval = interval
        self.log = tempfile.NamedTemporaryFile(prefix="deliver-email-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MailWorker:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "deliver_email", "--interval", str(self.interval)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
