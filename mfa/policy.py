"""Who must use a second factor, and what a sign-in's methods are worth (`amr`, `acr`).

`amr` values are RFC 8176's: "pwd" (password), "otp" (a one-time code: TOTP or a recovery code),
"hwk"/"swk" (a passkey or security key: device-bound / synced, passkeys.models), and "mfa"
once more than one factor was presented. `acr` is one of two values of our own, listed in discovery:

- ACR_PWD "urn:authserver:acr:pwd": a password only;
- ACR_MFA "urn:authserver:acr:mfa": a password and a second factor, or a passkey with user
  verification (passwordless: amr [hwk|swk, "user", "mfa"]).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

ACR_PWD = "urn:authserver:acr:pwd"  # noqa: S105 - an acr value, not a password
ACR_MFA = "urn:authserver:acr:mfa"
ACR_VALUES = (ACR_PWD, ACR_MFA)
# amr values that are a second factor (RFC 8176 §2).
SECOND_FACTOR_AMR = frozenset({"otp", "hwk", "swk"})


def amr_with(amr: Iterable[str], added: str) -> list[str]:
    """`amr` plus `added`, and "mfa" when a second factor joins a first one (ordered, unique)."""
    values = [v for v in amr if v != "mfa"]
    if added not in values:
        values.append(added)
    if "pwd" in values and SECOND_FACTOR_AMR.intersection(values):
        values.append("mfa")
    return values


def amr_is_mfa(amr: Iterable[str]) -> bool:
    return bool(SECOND_FACTOR_AMR.intersection(amr))


def acr_for(amr: Iterable[str]) -> str:
    return ACR_MFA if amr_is_mfa(amr) else ACR_PWD


def acr_demands_mfa(acr_values: str | None) -> bool:
    """True when the client's `acr_values` (OpenID Connect Core §3.1.2.1, space-separated, in
    order of preference) can only be met by a second factor: it names ACR_MFA and not ACR_PWD.
    Unknown values are ignored (the claim is voluntary)."""
    requested = set((acr_values or "").split())
    return ACR_MFA in requested and ACR_PWD not in requested


def mfa_policy() -> str:
    return settings.AUTHSERVER_MFA


def user_must_enrol(user) -> bool:
    """AUTHSERVER_MFA says this account needs a second factor."""
    policy = mfa_policy()
    return policy == "required" or (policy == "staff" and bool(user.is_staff))
