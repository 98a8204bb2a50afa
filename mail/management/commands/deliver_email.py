"""`python manage.py deliver_email`: the worker that sends the outbox (mail/services.py).

Runs until SIGTERM/SIGINT (finishing the message in hand), polling every --interval seconds;
`--once` delivers what is due and exits (tests, cron). Any number of workers may run: a message is
claimed with FOR UPDATE SKIP LOCKED, so no two send the same one. A failed message is retried with
capped exponential backoff (AUTHSERVER_EMAIL_RETRY_*), never dropped. Delivered rows are deleted
after AUTHSERVER_EMAIL_RETENTION_DAYS.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections

from mail.services import mail_deliver_due, mail_sent_purge

logger = logging.getLogger("mail.worker")
PURGE_EVERY_SECONDS = 3600
BATCH = 100


class Command(BaseCommand):
    help = "Deliver the email outbox (a long-running worker; --once to deliver what is due)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="deliver what is due, then exit")
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between polls (default 2)"
        )
        parser.add_argument(
            "--heartbeat-file",
            default=None,
            help="touch this file at every poll (for a liveness check of the worker)",
        )

    def handle(self, *args: object, **options: object) -> None:
        if not settings.EMAIL_CONFIGURED:
            raise CommandError(
                "EMAIL_URL is not set: messages stay in the outbox until it is "
                "(e.g. EMAIL_URL=smtp+tls://user:password@smtp.example.com:587)"
            )
        if options["once"]:
            total = failed = 0
            while True:
                done = mail_deliver_due(limit=BATCH)
                total += done.sent
                failed += done.failed
                if done.failed or done.sent < BATCH:
                    break
            self.stdout.write(f"delivered {total} message(s), {failed} failed (will be retried)")
            return

        stop = threading.Event()

        def request_stop(signum, frame):
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        interval = max(options["interval"], 0.1)
        logger.info("mail: worker started (poll every %s s)", interval)
        last_purge = 0.0
        db_wait = interval
        heartbeat = Path(options["heartbeat_file"]) if options["heartbeat_file"] else None
        while not stop.is_set():
            if heartbeat is not None:
                heartbeat.touch()
            try:
                close_old_connections()
                done = mail_deliver_due(limit=BATCH)
                if time.monotonic() - last_purge > PURGE_EVERY_SECONDS:
                    mail_sent_purge(older_than_days=settings.AUTHSERVER_EMAIL_RETENTION_DAYS)
                    last_purge = time.monotonic()
                db_wait = interval
            except DatabaseError as exc:
                # The database is down: nothing can be claimed; wait longer each time (max 60 s).
                logger.error("mail: database unavailable (%s)", exc.__class__.__name__)
                stop.wait(db_wait)
                db_wait = min(db_wait * 2, 60)
                continue
            if done.sent == BATCH and not done.failed:
                continue  # more may be due right now
            stop.wait(interval)
        logger.info("mail: worker stopped")
