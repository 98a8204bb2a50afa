"""`python manage.py after_restore`: run once after restoring the database from a backup.

after_restore                   if the database was restored from a dump: revoke every restored
                                signing key, sign with a fresh one from now on, empty this
                                deployment's cache prefix, and print what is left to do
after_restore --keep-published  retire the restored keys instead of revoking them (published
                                until their tokens expire; none signs again)
after_restore --force           also when the restore cannot be recognised (a physical snapshot,
                                SQLite, a backup older than the restore marker)

Against a database that was not restored, or a second time, it changes nothing and says so
(exit 0). See README "Backup and restore".
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from authserver.startup import exit_on_database_error
from tokens.keys import KeyStoreUnavailable
from tokens.restore import after_restore
from tokens.rotation import SigningKeyError

STILL_TO_DO = """\
Still to do by hand (after_restore cannot know what happened after the backup):
  1. Sessions ended after the backup are live again: end those that must not come back (the
     users' "sign out everywhere", or deactivate and reactivate the affected accounts).
  2. Accounts, passwords, clients and client secrets changed after the backup are back as they
     were: redo those changes; re-register clients created after it (their secrets are gone),
     and regenerate a client secret that was rotated because it leaked.
  3. Refresh tokens issued after the backup are unknown: those users sign in again.
  4. Access and ID tokens signed before now no longer verify (their keys are revoked): APIs
     refetch the JWKS on an unknown kid; clients refresh.
  5. Lockouts and login-throttle counts were in the cache and are gone.
  6. Check: python manage.py rotate_signing_keys --check, and GET /readyz on every instance."""


class Command(BaseCommand):
    help = (
        "After restoring the database from a backup: a fresh signing key at once, every "
        "restored key out of service, this deployment's cache emptied (README: Backup and "
        "restore). Does nothing on a database that was not restored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="run even if the database cannot be recognised as restored from a dump",
        )
        parser.add_argument(
            "--keep-published",
            action="store_true",
            help="retire the restored keys (still in the JWKS until their tokens expire) "
            "instead of revoking them; only if no key was revoked after the backup",
        )

    def handle(self, *args, **options) -> None:
        with exit_on_database_error():
            try:
                report = after_restore(
                    force=options["force"], keep_published=options["keep_published"]
                )
            except (SigningKeyError, KeyStoreUnavailable) as exc:
                raise CommandError(str(exc)) from None
        state = report.state
        if report.change is None:
            if state.restored is None:
                self.stdout.write(
                    f"after_restore: nothing done: {state.detail}. If this database was "
                    "restored, run again with --force."
                )
            else:
                self.stdout.write(f"after_restore: nothing done: {state.detail}.")
            return
        if state.restored is not True:
            self.stdout.write(f"after_restore: --force ({state.detail})")
        else:
            self.stdout.write(f"after_restore: {state.detail}")
        self.stdout.write(f"signing keys: {report.change.summary()}")
        deleted = report.cache_entries_deleted
        self.stdout.write(
            "cache: database cache table emptied"
            if deleted == -1
            else f"cache: {deleted} entries under this deployment's prefix deleted"
        )
        self.stdout.write(STILL_TO_DO)
