"""`python manage.py purge_expired_sessions`: delete sessions that ended long enough ago.

A session's rows (the session and every refresh token of its family, spent ones included) are
kept while it lives, because a spent token must still be recognised to detect its reuse. Once the
session has ended (revoked, or past its absolute or idle deadline) for longer than
AUTHSERVER_SESSION_RETENTION_DAYS, it is deleted in batches. Deny-list rows of revoked
session-less access tokens (tokens/revocation.py) go as soon as their token has expired.
Suitable for cron.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from authserver.conf import get_config
from sessions.services import PURGE_ORDERS, sessions_purge
from tokens.revocation import revoked_access_tokens_purge


class Command(BaseCommand):
    help = "Delete sessions (and their refresh tokens) that ended more than the retention ago."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retention-days",
            type=int,
            default=None,
            help="override AUTHSERVER_SESSION_RETENTION_DAYS",
        )
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument(
            "--max-rate",
            type=float,
            default=0,
            help="sessions deleted per second at most (it sleeps between batches); 0: no limit",
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument(
            "--order",
            choices=PURGE_ORDERS,
            default="auto",
            help="walk the indexes in key order or the table in physical order (auto: the "
            "cheaper one for the number of ended sessions)",
        )

    def handle(self, *args: object, **options: object) -> None:
        days = options["retention_days"]
        if days is None:
            days = get_config().session_retention_days
        if days < 0:
            self.stderr.write("--retention-days must not be negative")
            raise SystemExit(2)
        if options["max_rate"] < 0:
            self.stderr.write("--max-rate must not be negative")
            raise SystemExit(2)
        cutoff = timezone.now() - timedelta(days=days)
        stats: dict = {}
        sessions, tokens = sessions_purge(
            ended_before=cutoff,
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
            order=options["order"],
            max_rate=options["max_rate"],
            stats=stats,
        )
        revoked = revoked_access_tokens_purge(dry_run=options["dry_run"])
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {sessions} session(s) and {tokens} refresh token(s) that ended before "
            f"{cutoff.isoformat()}"
        )
        self.stdout.write(f"{verb} {revoked} expired revoked access token(s)")
        if options["max_rate"] and not options["dry_run"]:
            self.stdout.write(
                f"slept {stats['slept_seconds']:.1f} s between batches "
                f"(--max-rate {options['max_rate']:g})"
            )
