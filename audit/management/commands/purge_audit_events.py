"""`python manage.py purge_audit_events`: audit retention and the audit table's partitions.

The trail is append-only otherwise; this is the one way events leave it, after
AUTHSERVER_AUDIT_RETENTION_DAYS (default 365). On PostgreSQL it first creates the week
partitions of the current week and the four after it, then drops every week partition wholly
older than the retention and deletes, in batches, the expired rows left in the DEFAULT and legacy
partitions (audit/partitions.py). On SQLite it deletes the expired rows in batches. One line per
action; `--dry-run` reports and changes nothing. For cron (daily), next to
purge_expired_sessions and purge_authorization_codes.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError
from django.utils import timezone

from audit import partitions
from audit.partitions import TABLE, audit_partitions_create_ahead
from audit.services import audit_events_purge
from authserver.conf import get_config

LOCK_NOT_AVAILABLE = "55P03"


class Command(BaseCommand):
    help = (
        "Create the coming weeks' audit partitions and remove audit events older than "
        "AUTHSERVER_AUDIT_RETENTION_DAYS (dropping whole week partitions on PostgreSQL)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retention-days",
            type=int,
            default=None,
            help="override AUTHSERVER_AUDIT_RETENTION_DAYS (at least 1)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=5000,
            help="rows per DELETE outside the week partitions",
        )
        parser.add_argument("--dry-run", action="store_true", help="report, change nothing")

    def handle(self, *args: object, **options: object) -> None:
        days = options["retention_days"]
        if days is None:
            days = get_config().audit_retention_days
        if days < 1:
            raise CommandError("--retention-days must be at least 1")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        dry_run = options["dry_run"]
        now = timezone.now()
        cutoff = now - timedelta(days=days)
        try:
            for change in audit_partitions_create_ahead(now=now, dry_run=dry_run):
                self.stdout.write(str(change))
            for change in audit_events_purge(
                occurred_before=cutoff, batch_size=options["batch_size"], dry_run=dry_run
            ):
                self.stdout.write(str(change))
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            raise CommandError(
                f"{TABLE} stayed locked by another session for {partitions.LOCK_TIMEOUT}; "
                "the steps above were made, the rest was not; run the command again"
            ) from exc
