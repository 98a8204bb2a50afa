"""`python manage.py create_user USERNAME --email E`: create an account from a script.

The password never travels on the command line (it would show in `ps` and shell history): it is
read from standard input, or from the environment variable named by --password-env.
"""

from __future__ import annotations

import getpass
import os
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import UserCreateError, user_create
from audit.services import audit_echo_muted


class Command(BaseCommand):
    help = (
        "Create a user. The password is read from standard input (one line) or from the "
        "environment variable named by --password-env; it is never accepted as an argument."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", required=True)
        parser.add_argument(
            "--password-env",
            metavar="VAR",
            help="read the password from this environment variable instead of stdin",
        )
        parser.add_argument(
            "--no-password",
            action="store_true",
            help="create the account without a usable password",
        )
        parser.add_argument("--staff", action="store_true", help="may sign in to /admin/")
        parser.add_argument("--superuser", action="store_true", help="staff with every permission")

    def _read_password(self, options: dict) -> str | None:
        if options["no_password"]:
            return None
        var = options["password_env"]
        if var:
            value = os.environ.get(var)
            if not value:
                raise CommandError(
                    f"--password-env: environment variable {var} is not set or empty"
                )
            return value
        stdin = sys.stdin
        if stdin is None:
            raise CommandError("no password: give it on standard input or use --password-env VAR")
        if stdin.isatty():
            # Ctrl-D (EOFError) or Ctrl-C at the prompt: one line, no traceback.
            try:
                first = getpass.getpass("Password: ")
                again = getpass.getpass("Password (again): ")
            except EOFError:
                raise CommandError("no password given (input ended); no user created") from None
            except KeyboardInterrupt:
                raise CommandError("cancelled; no user created") from None
            if again != first:
                raise CommandError("the two passwords differ")
            return first
        line = stdin.readline().rstrip("\r\n")
        if not line:
            raise CommandError("no password on standard input (or use --password-env VAR)")
        return line

    def handle(self, *args: object, **options: object) -> None:
        password = self._read_password(options)
        try:
            with audit_echo_muted():  # the event is stored, not echoed after the output
                user = user_create(
                    username=options["username"],
                    email=options["email"],
                    password=password,
                    is_staff=bool(options["staff"] or options["superuser"]),
                    is_superuser=bool(options["superuser"]),
                )
        except UserCreateError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"created user {user.username} (sub {user.public_id})")
