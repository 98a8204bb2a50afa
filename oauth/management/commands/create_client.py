"""`python manage.py create_client --name N --type public|confidential ...`: register a client.

Prints the client_id and, for confidential clients, the client_secret: the only time it is ever
shown (authserver stores a digest). With --json the output is one JSON object for scripts.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import audit_echo_muted
from oauth.clients import ClientError, client_create
from oauth.models import Client, GrantType


class Command(BaseCommand):
    help = "Register an OAuth client; prints its client_id and (once) its client_secret."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="shown to users on the consent page")
        parser.add_argument("--type", required=True, choices=Client.Type.values, dest="type")
        parser.add_argument(
            "--redirect-uri", action="append", default=[], metavar="URI", dest="redirect_uris"
        )
        parser.add_argument(
            "--grant",
            action="append",
            default=[],
            metavar="GRANT",
            dest="grants",
            help=f"one of {', '.join(GrantType.values)} (repeatable)",
        )
        parser.add_argument("--scope", action="append", default=[], dest="scopes", metavar="S")
        parser.add_argument(
            "--post-logout-redirect-uri",
            action="append",
            default=[],
            metavar="URI",
            dest="post_logout_redirect_uris",
        )
        parser.add_argument(
            "--audience",
            action="append",
            default=[],
            metavar="AUD",
            dest="audiences",
            help="aud of its access tokens (repeatable); default its client ID "
            "(never AUTHSERVER_DEFAULT_AUDIENCE, the first-party API's)",
        )
        parser.add_argument("--access-token-lifetime", type=int, metavar="SECONDS")
        parser.add_argument(
            "--first-party", action="store_true", help="skip the consent page for this client"
        )
        parser.add_argument(
            "--resource-server",
            action="store_true",
            help="may introspect tokens issued to other clients",
        )
        parser.add_argument(
            "--refresh-without-offline-access",
            action="store_true",
            help="issue refresh tokens even without the offline_access scope",
        )
        parser.add_argument(
            "--no-pkce",
            action="store_true",
            help="legacy confidential clients only: accept authorization requests without "
            "code_challenge (PKCE is required by default, RFC 9700 §2.1.1)",
        )
        for kind, label in (
            ("id-token", "ID token"),
            ("userinfo", "userinfo response"),
            ("access-token", "access token"),
        ):
            parser.add_argument(
                f"--{kind}-claim",
                action="append",
                default=[],
                metavar="CLAIM=ATTRIBUTE",
                dest=f"{kind.replace('-', '_')}_claims",
                help=f"an extra claim of the {label} from a user attribute, e.g. roles=groups "
                "(repeatable; attributes: username, first_name, last_name, full_name, email, "
                "groups, each released only with its scope)",
            )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options) -> None:
        scopes = [s for value in options["scopes"] for s in value.split()]
        try:
            # The client.created event is stored, not echoed on stderr after the output.
            with audit_echo_muted():
                created = client_create(
                    name=options["name"],
                    client_type=options["type"],
                    grant_types=options["grants"],
                    redirect_uris=options["redirect_uris"],
                    scopes=scopes,
                    post_logout_redirect_uris=options["post_logout_redirect_uris"],
                    audiences=options["audiences"],
                    access_token_lifetime=options["access_token_lifetime"],
                    pkce_required=not options["no_pkce"],
                    skip_consent=options["first_party"],
                    is_resource_server=options["resource_server"],
                    refresh_without_offline_access=options["refresh_without_offline_access"],
                    id_token_claims="\n".join(options["id_token_claims"]),
                    userinfo_claims="\n".join(options["userinfo_claims"]),
                    access_token_claims="\n".join(options["access_token_claims"]),
                )
        except ClientError as exc:
            raise CommandError(str(exc)) from None
        client = created.client
        if options["json"]:
            payload = {
                "client_id": client.client_id,
                "client_secret": created.secret,
                "name": client.name,
                "type": client.client_type,
                "redirect_uris": client.redirect_uri_list,
                "post_logout_redirect_uris": client.post_logout_redirect_uri_list,
                "grant_types": client.grant_type_list,
                "scope": client.scopes,
                "pkce_required": client.pkce_required,
                "claims": {
                    "id_token": client.id_token_claims.splitlines(),
                    "userinfo": client.userinfo_claims.splitlines(),
                    "access_token": client.access_token_claims.splitlines(),
                },
            }
            self.stdout.write(json.dumps(payload, indent=2))
            return
        self.stdout.write(f"client_id:     {client.client_id}")
        if created.secret:
            self.stdout.write(f"client_secret: {created.secret}")
            self.stdout.write("Store the secret now: it cannot be shown again.")
