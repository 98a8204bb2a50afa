"""`python manage.py rotate_signing_keys`: rotate, schedule, revoke and inspect signing keys.

rotate_signing_keys                  publish a new key, signing after the activation delay
rotate_signing_keys --if-due         cron: perform whatever is due (activation, removal, and a
                                     rotation when AUTHSERVER_KEY_ROTATION_DAYS says so)
rotate_signing_keys --activate-now   the published next key (or a new one) signs from now on
rotate_signing_keys --revoke KID     emergency: remove KID from the JWKS now, erase it
rotate_signing_keys --list           the keys, their states and dates (never private material)
rotate_signing_keys --check          exit 1 with one line if this process cannot sign
rotate_signing_keys --reencrypt      re-seal private keys under the current KEK
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from authserver.startup import exit_on_database_error
from tokens.keys import KeyStoreUnavailable, key_store_log_muted, keystore_state
from tokens.models import SigningKey
from tokens.rotation import (
    SigningKeyError,
    signing_key_revoke,
    signing_key_rotate,
    signing_keys_maintain,
    signing_keys_reencrypt,
)


def _when(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


def _revoke_value_joined(args: list[str]) -> list[str]:
    """`--revoke KID` as `--revoke=KID`: a kid is base64url and may start with "-", which
    argparse would otherwise read as an option and refuse ("expected one argument")."""
    joined: list[str] = []
    pending = iter(args)
    for arg in pending:
        if arg == "--revoke":
            value = next(pending, None)
            joined.append(arg if value is None else f"--revoke={value}")
        else:
            joined.append(arg)
    return joined


class Command(BaseCommand):
    help = "Rotate, schedule, revoke or list the signing keys (see README: rotation runbook)."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parse_args = parser.parse_args

        def parse_with_kids(args=None, namespace=None):
            return parse_args(None if args is None else _revoke_value_joined(list(args)), namespace)

        parser.parse_args = parse_with_kids
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--if-due",
            action="store_true",
            help="only act when something is due (for cron); prints nothing otherwise",
        )
        mode.add_argument(
            "--activate-now",
            action="store_true",
            help="make the published next key (or a new key) sign immediately",
        )
        mode.add_argument("--revoke", metavar="KID", help="emergency revocation of one key")
        mode.add_argument("--list", action="store_true", help="list keys and their states")
        mode.add_argument("--check", action="store_true", help="exit 1 if this process cannot sign")
        mode.add_argument(
            "--reencrypt",
            action="store_true",
            help="re-encrypt private keys sealed with a fallback KEK under the current KEK",
        )

    def handle(self, *args, **options) -> None:
        with exit_on_database_error():
            try:
                self._handle(options)
            except (SigningKeyError, KeyStoreUnavailable) as exc:
                raise CommandError(str(exc)) from None

    def _handle(self, options: dict) -> None:
        if options["list"]:
            self._list()
        elif options["check"]:
            with key_store_log_muted():
                ready, reason = keystore_state()
            if not ready:
                raise CommandError(f"signing keys: {reason}")
            self.stdout.write(f"signing keys: {reason}")
        elif options["revoke"]:
            change = signing_key_revoke(kid=options["revoke"].strip())
            self.stdout.write(f"revoked: {change.summary()}")
        elif options["activate_now"]:
            change = signing_key_rotate(immediate=True)
            self.stdout.write(f"rotated: {change.summary()}")
        elif options["if_due"]:
            change = signing_keys_maintain()
            if change:
                self.stdout.write(f"maintenance: {change.summary()}")
        elif options["reencrypt"]:
            count = signing_keys_reencrypt()
            self.stdout.write(f"re-encrypted {count} key(s)")
        else:
            change = signing_key_rotate()
            self.stdout.write(f"rotation: {change.summary()}")

    def _list(self) -> None:
        header = f"{'kid':<44} {'alg':<6} {'state':<8} {'created':<20} {'signs from':<20} "
        header += f"{'published until':<20} {'revoked':<20}"
        self.stdout.write(header)
        for key in SigningKey.objects.order_by("-created_at"):
            self.stdout.write(
                f"{key.kid:<44} {key.alg:<6} {key.state:<8} {_when(key.created_at):<20} "
                f"{_when(key.activate_at):<20} {_when(key.remove_after):<20} "
                f"{_when(key.revoked_at):<20}"
            )
