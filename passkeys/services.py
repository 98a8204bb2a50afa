"""Write-side rules about passkeys: register, rename, remove, and passwordless sign-in.

Their use as a second factor goes through mfa.services.second_factor_verify (method "passkey"),
like TOTP. Passwordless sign-in runs the same throttle and lockout as a password
(accounts/throttling.py): each attempt reserves a slot of the IP's failure budget (and of the
account's, when the answer names a registered credential), a refused answer keeps it and counts
toward that account's lockout, a locked account's passkeys are refused, right or wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.services import LoginUnavailable, login_attempt_admit
from accounts.throttling import (
    login_budget_release,
    login_failure_register,
    login_failures_reset,
    login_lockout_status,
    login_normalize,
)
from audit.events import EventType
from audit.services import audit_event_record
from authserver.counters import CacheUnavailable, window_count
from mfa.services import CHANGE_PASSKEY_ADDED, CHANGE_PASSKEY_REMOVED, mfa_change_notify
from passkeys import ceremony
from passkeys.models import Passkey

NAME_MAX_LENGTH = 64


# Passkey options (challenges) handed out per client address per minute, by the hosted pages and
# the first-party API together: each costs a cache entry for CHALLENGE_TTL.
OPTIONS_PER_IP_PER_MINUTE = 60


def passkey_options_retry_after(*, ip: str | None) -> int | None:
    """None if this address may have another set of passkey options now, else the seconds to
    wait. CacheUnavailable when the shared cache is down."""
    hit = window_count(name="passkey:options", bucket=ip, window_seconds=60, now=timezone.now())
    return None if hit.count <= OPTIONS_PER_IP_PER_MINUTE else hit.remaining


def passkey_name_clean(name: str | None) -> str:
    cleaned = " ".join((name or "").split())[:NAME_MAX_LENGTH]
    return cleaned or "Passkey"


def passkey_register(
    *, user, credential_json: str, binding: str, name: str, request=None
) -> Passkey:
    """Store a new passkey for `user` from the browser's answer; audited. PasskeyRefused (the
    refusal is audited too)."""
    try:
        with transaction.atomic():
            passkey = ceremony.registration_verify(
                user=user,
                credential_json=credential_json,
                binding=binding,
                name=passkey_name_clean(name),
            )
            audit_event_record(
                event=EventType.MFA_ENROLLED,
                user=user,
                request=request,
                details={"method": "passkey", "passkey": str(passkey.pk), "aaguid": passkey.aaguid},
            )
            mfa_change_notify(user=user, change=CHANGE_PASSKEY_ADDED, passkey_name=passkey.name)
    except ceremony.PasskeyRefused as exc:
        audit_event_record(
            event=EventType.MFA_FAILED,
            user=user,
            request=request,
            details={"method": "passkey", "step": "register", "reason": exc.reason},
        )
        raise
    return passkey


def passkey_rename(*, passkey: Passkey, name: str) -> Passkey:
    passkey.name = passkey_name_clean(name)
    passkey.save(update_fields=["name"])
    return passkey


def passkey_remove(*, passkey: Passkey, request=None) -> None:
    with transaction.atomic():
        Passkey.objects.filter(pk=passkey.pk).delete()
        audit_event_record(
            event=EventType.MFA_REMOVED,
            user=passkey.user,
            request=request,
            details={"method": "passkey", "passkey": str(passkey.pk), "count": 1},
        )
        mfa_change_notify(
            user=passkey.user, change=CHANGE_PASSKEY_REMOVED, passkey_name=passkey.name
        )


@dataclass(frozen=True, slots=True)
class PasskeySignIn:
    user: object
    amr: list[str]


class PasskeySignInFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(ceremony.REASONS.get(reason, ceremony.REASONS["invalid"]))
        self.reason = reason


def passkey_sign_in(
    *,
    credential_json: str,
    binding: str,
    ip: str,
    user_agent: str = "",
    client_id: str = "",
    now: datetime | None = None,
) -> PasskeySignIn:
    """Passwordless sign-in with a discoverable credential and user verification: the key
    (something you have) and the PIN or biometric the authenticator checked (something you know
    or are) are two factors, so amr is [hwk|swk, "user", "mfa"].

    Raises PasskeySignInFailed, LoginThrottled or LoginUnavailable (cache down: fail closed)."""
    now = now or timezone.now()
    context = {"ip": ip, "user_agent": user_agent, "client_id": client_id, "occurred_at": now}
    owner = ceremony.credential_owner(credential_json)
    user = owner.user if owner is not None else None
    name = login_normalize(user.get_username()) if user is not None else ""
    reservation = login_attempt_admit(
        name=name, context=context, user=user, details={"method": "passkey"}
    )
    reason = None
    try:
        if user is not None and login_lockout_status(user=user, now=now).locked:
            reason = "locked"
        elif user is not None and not user.is_active:
            reason = "inactive"
        else:
            asserted = ceremony.assertion_verify(
                credential_json=credential_json, purpose=ceremony.PASSWORDLESS, binding=binding
            )
    except CacheUnavailable:
        raise LoginUnavailable from None
    except ceremony.PasskeyRefused as exc:
        reason = exc.reason
    if reason is None:
        user = asserted.passkey.user
        try:
            login_budget_release(reservation)
            login_failures_reset(user=user)
        except CacheUnavailable:
            raise LoginUnavailable from None
        user.last_login = now
        user.save(update_fields=["last_login"])
        audit_event_record(
            event=EventType.LOGIN_SUCCEEDED,
            user=user,
            details={"method": "passkey", "passkey": str(asserted.passkey.pk)},
            **context,
        )
        return PasskeySignIn(user=user, amr=[asserted.passkey.amr, "user", "mfa"])
    lockout = None
    if user is not None and reason not in ("locked", "inactive"):
        try:
            lockout = login_failure_register(user=user, now=now)
        except CacheUnavailable:
            raise LoginUnavailable from None
    audit_event_record(
        event=EventType.LOGIN_FAILED,
        user=user,
        details={"method": "passkey", "reason": reason},
        **context,
    )
    if lockout is not None:
        audit_event_record(
            event=EventType.ACCOUNT_LOCKED,
            user=user,
            details={
                "locked_until": lockout.locked_until.isoformat(),
                "seconds": lockout.seconds,
                "level": lockout.level,
                "method": "passkey",
            },
            **context,
        )
    raise PasskeySignInFailed(reason)
