"""`python manage.py purge_audit_events`: delete audit events older than the retention.

The trail is append-only otherwise; this is the one way rows leave it, after
AUTHSERVER_AUDIT_RETENTION_DAYS (default 365). Deletes in batches; `--dry-run` only counts.
Suitable for cron, next to purge_expired_sessions and purge_authorization_codes.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from audit.services import audit_events_purge
from authserver.conf import get_config


class Command(BaseCommand):
    help = "Delete audit events older than AUTHSERVER_AUDIT_RETENTION_DAYS (in batches)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retention-days",
            type=int,
            default=None,
            help="override AUTHSERVER_AUDIT_RETENTION_DAYS (at least 1)",
        )
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: object, **options: object) -> None:
        days = options["retention_days"]
        if days is None:
            days = get_config().audit_retention_days
        if days < 1:
            raise CommandError("--retention-days must be at least 1")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        cutoff = timezone.now() - timedelta(days=days)
        count = audit_events_purge(
            occurred_before=cutoff, batch_size=options["batch_size"], dry_run=options["dry_run"]
        )
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(f"{verb} {count} audit event(s) older than {cutoff.isoformat()}")
