"""`python manage.py issue_access_token --sub SUB --aud AUD`: sign an access token (ops, tests).

Prints only the token, so it can be captured: TOKEN=$(python manage.py issue_access_token ...).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from authserver.startup import exit_on_database_error
from tokens.issuance import OPERATOR_CLIENT_ID, access_token_issue
from tokens.keys import KeyStoreUnavailable, key_store_log_muted


class Command(BaseCommand):
    help = "Issue an access token signed with the active key and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sub", required=True, help="subject: a user's public id or a client id"
        )
        parser.add_argument(
            "--aud",
            action="append",
            help="audience (repeat for several); default AUTHSERVER_DEFAULT_AUDIENCE",
        )
        parser.add_argument("--client-id", default=OPERATOR_CLIENT_ID)
        parser.add_argument("--scope", default="")
        parser.add_argument(
            "--lifetime", type=int, help="seconds; default AUTHSERVER_ACCESS_TOKEN_TTL"
        )
        parser.add_argument("--sid", help="session id for the sid claim")

    def handle(self, *args, **options) -> None:
        from authserver.conf import get_config

        audience = options["aud"] or [get_config().default_audience]
        with exit_on_database_error(), key_store_log_muted():
            try:
                issued = access_token_issue(
                    subject=options["sub"],
                    audience=audience,
                    client_id=options["client_id"],
                    scope=options["scope"],
                    session_id=options["sid"],
                    lifetime=options["lifetime"],
                )
            except KeyStoreUnavailable as exc:
                raise CommandError(f"signing keys: {exc.reason}") from None
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(issued.token)
