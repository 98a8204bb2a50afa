"""Read-side questions about second factors."""

from __future__ import annotations

from mfa.models import Factor, RecoveryCode
from passkeys.models import Passkey

# The second-factor methods a sign-in can offer, in the order the page shows them. A new kind of
# factor (passkeys) adds its name here and a verifier in mfa.services.METHOD_VERIFIERS.
TOTP = "totp"
RECOVERY_CODE = "recovery_code"
PASSKEY = "passkey"  # passkeys/: a WebAuthn credential (not flagged as cloned)


def user_methods(*, user) -> list[str]:
    """The second-factor methods `user` can present now (empty: no confirmed factor)."""
    methods = list(
        Factor.objects.filter(user=user, confirmed_at__isnull=False)
        .order_by("method")
        .values_list("method", flat=True)
        .distinct()
    )
    if user_passkeys(user=user, usable=True):
        methods.append(PASSKEY)
    if methods and RecoveryCode.objects.filter(user=user, used_at__isnull=True).exists():
        methods.append(RECOVERY_CODE)
    return methods


def user_has_second_factor(*, user) -> bool:
    return (
        Factor.objects.filter(user=user, confirmed_at__isnull=False).exists()
        or Passkey.objects.filter(user=user, flagged_at__isnull=True).exists()
    )


def user_passkeys(*, user, usable: bool = False) -> list[Passkey]:
    """The user's passkeys, oldest first; `usable`: without the ones flagged as cloned."""
    rows = Passkey.objects.filter(user=user)
    if usable:
        rows = rows.filter(flagged_at__isnull=True)
    return list(rows.order_by("created_at"))


def user_totp_factor(*, user) -> Factor | None:
    return Factor.objects.filter(
        user=user, method=Factor.Method.TOTP, confirmed_at__isnull=False
    ).first()


def user_factors(*, user) -> list[Factor]:
    return list(Factor.objects.filter(user=user, confirmed_at__isnull=False).order_by("created_at"))


def recovery_codes_left(*, user) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()
