"""`python manage.py purge_authorization_codes`: delete authorization codes that expired long ago.

A code lives 60 seconds, but its (hashed) row is kept a while longer so that a replay is still
recognised and the session it started revoked. Suitable for cron, next to purge_expired_sessions.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from oauth.codes import authorization_codes_purge


class Command(BaseCommand):
    help = "Delete authorization codes that expired more than --older-than-hours ago."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than-hours", type=int, default=24)

    def handle(self, *args: object, **options: object) -> None:
        hours = options["older_than_hours"]
        if hours < 0:
            raise CommandError("--older-than-hours must not be negative")
        cutoff = timezone.now() - timedelta(hours=hours)
        deleted = authorization_codes_purge(older_than=cutoff)
        self.stdout.write(f"deleted {deleted} authorization code(s) that expired before {cutoff}")
