"""`python manage.py purge_account_links`: delete single-use links (password reset, and any
other accounts.AccountLink) that expired more than --older-than-days ago. Only digests are
stored, so this is housekeeping, not secrecy. Suitable for cron (daily)."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser

from accounts.links import account_links_purge


class Command(BaseCommand):
    help = "Delete account links (reset, verification, invitation) that expired long ago."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than-days", type=int, default=7)

    def handle(self, *args: object, **options: object) -> None:
        days = options["older_than_days"]
        if days < 0:
            self.stderr.write("--older-than-days must not be negative")
            raise SystemExit(2)
        deleted = account_links_purge(older_than=timedelta(days=days))
        self.stdout.write(f"deleted {deleted} account link(s) that expired over {days} day(s) ago")
