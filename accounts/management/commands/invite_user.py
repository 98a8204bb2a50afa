"""`python manage.py invite_user EMAIL [--language de]`: mail a single-use invitation link to
EMAIL, in English unless another language of LANGUAGES is named.

The invitee chooses a username and password on the link's page; the account is created active
with its address verified. Works whatever AUTHSERVER_REGISTRATION says (invitations are how
people join when it is `invite`, and an admin may invite under `closed` or `open` too). The
link goes out through the outbox (`manage.py deliver_email` sends it); it is never printed.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.registration import InviteRejected, invite_send
from authserver.conf import get_config


class Command(BaseCommand):
    help = "Send an invitation link to EMAIL (through the outbox)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument(
            "--language",
            default=None,
            help="language of the invitation, a code of LANGUAGES (default: LANGUAGE_CODE)",
        )

    def handle(self, *args, **options) -> None:
        try:
            invite_send(email=options["email"], language=options["language"])
        except InviteRejected as exc:
            raise CommandError(str(exc)) from None
        days = max(1, get_config().invite_link_seconds // 86_400)
        self.stdout.write(
            f"Invitation queued for {options['email'].strip()} (valid {days} day(s)); "
            "manage.py deliver_email sends it."
        )
