"""Write-side rules about second factors: enrolment, verification, recovery codes, reset.

Verification goes through one entry point, `second_factor_verify`, for every method: it applies
the sign-in throttle and lockout of accounts/throttling.py exactly as a password check does (a
wrong code spends a slot of the IP's and the login name's failure budgets and counts toward the
account's lockout; a locked account's codes are refused, right or wrong), audits the outcome,
and dispatches to the method's verifier (`METHOD_VERIFIERS`). A new kind of factor (passkeys)
registers a verifier there and its name in mfa.selectors.
"""

from __future__ import annotations

import json
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pyotp
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.views.decorators.debug import sensitive_variables

from accounts.services import LoginThrottled, LoginUnavailable, login_attempt_admit
from accounts.throttling import (
    ThrottleHit,
    login_budget_release,
    login_budget_reserve,
    login_digest,
    login_failure_register,
    login_failures_reset,
    login_lockout_status,
    login_normalize,
)
from audit.events import EventType
from audit.services import audit_event_record
from authserver.conf import get_config
from authserver.counters import CacheUnavailable
from branding.selectors import brand_get
from mail.services import mail_enqueue
from mfa import selectors
from mfa.models import Factor, RecoveryCode
from mfa.sealing import SecretUnavailable, secret_open, secret_seal
from passkeys import ceremony
from passkeys.models import Passkey

TOTP_DIGITS = 6
TOTP_INTERVAL = 30  # seconds (RFC 6238 §5.2)
# Codes of the previous and next time step are accepted too (RFC 6238 §5.2, clock drift).
TOTP_DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_GROUP = 5
_RECOVERY_HMAC_SALT = "authserver.mfa.recovery_code"
_TOTP_RE = re.compile(r"^[0-9]{6}$")
MAX_CODE_LENGTH = 64


class SecondFactorFailed(Exception):
    """The code was wrong, replayed or already used. One message for every reason; the reason
    goes to the audit trail only."""

    def __init__(self, reason: str = "bad_code") -> None:
        super().__init__("the second factor was not accepted")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verified:
    method: str  # mfa.selectors TOTP / RECOVERY_CODE
    amr: str  # RFC 8176 value


# --- TOTP ----------------------------------------------------------------------------------------


def totp_secret_new() -> str:
    """160 random bits, base32 (RFC 4226 §4 asks for at least 128; RFC 6238 uses 160)."""
    return pyotp.random_base32(length=32)


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)


def totp_time_step(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_INTERVAL


def totp_code_at(secret: str, step: int) -> str:
    return _totp(secret).generate_otp(step)


def totp_provisioning_uri(*, user, secret: str) -> str:
    """The otpauth:// URI the QR code carries (Key Uri Format, as authenticator apps read it)."""
    return _totp(secret).provisioning_uri(name=user.get_username(), issuer_name=brand_get().name)


@sensitive_variables("secret")
def factor_secret(factor: Factor) -> str:
    try:
        return secret_open(
            factor.secret_sealed, factor_id=str(factor.pk), sealed_with=factor.sealed_with
        ).decode("ascii")
    except (SecretUnavailable, UnicodeDecodeError):
        raise SecretUnavailable("the second factor's secret cannot be opened") from None


@sensitive_variables("secret")
def totp_enrolment_begin(*, user) -> tuple[Factor, str]:
    """A new, unconfirmed TOTP factor (replacing any earlier unconfirmed one) and its secret.
    It counts for nothing until `totp_enrolment_confirm` accepts a first code."""
    secret = totp_secret_new()
    factor = Factor(user=user, method=Factor.Method.TOTP, name="Authenticator app")
    factor.secret_sealed, factor.sealed_with = secret_seal(
        secret.encode("ascii"), factor_id=str(factor.pk)
    )
    with transaction.atomic():
        Factor.objects.filter(
            user=user, method=Factor.Method.TOTP, confirmed_at__isnull=True
        ).delete()
        factor.save(force_insert=True)
    return factor, secret


def totp_enrolment_pending(*, user) -> Factor | None:
    return (
        Factor.objects.filter(user=user, method=Factor.Method.TOTP, confirmed_at__isnull=True)
        .order_by("-created_at")
        .first()
    )


def _totp_matching_steps(factor: Factor, code: str, now: datetime) -> list[int]:
    if not _TOTP_RE.match(code):
        return []
    secret = factor_secret(factor)
    current = totp_time_step(now)
    steps = range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1)
    return [s for s in steps if secrets.compare_digest(totp_code_at(secret, s), code)]


def _totp_accept(factor: Factor, code: str, now: datetime, *, confirming: bool) -> bool:
    """Accept `code` for `factor` at most once: the factor's last used time step moves forward
    with one conditional UPDATE, so a code already used (or an older one) is refused, and of two
    concurrent uses of one code exactly one wins."""
    for step in sorted(_totp_matching_steps(factor, code, now), reverse=True):
        rows = Factor.objects.filter(
            Q(last_used_step__isnull=True) | Q(last_used_step__lt=step),
            pk=factor.pk,
            confirmed_at__isnull=confirming,
        )
        changes = {"last_used_step": step, "last_used_at": now}
        if confirming:
            changes["confirmed_at"] = now
        # Only the newest matching step is tried: if it is used, every older one is too.
        return bool(rows.update(**changes))
    return False


def _verify_totp(user, code: str, now: datetime) -> bool:
    factor = selectors.user_totp_factor(user=user)
    return factor is not None and _totp_accept(factor, code, now, confirming=False)


@transaction.atomic
def totp_enrolment_confirm(*, factor: Factor, code: str, request=None) -> list[str] | None:
    """Confirm a pending TOTP factor with a first code from the app. Returns the new recovery
    codes (shown once), or None if the code is wrong. Any earlier TOTP factor is replaced."""
    now = timezone.now()
    code = _clean_code(code)
    if not _totp_accept(factor, code, now, confirming=True):
        return None
    Factor.objects.filter(user=factor.user, method=Factor.Method.TOTP).exclude(
        pk=factor.pk
    ).delete()
    audit_event_record(
        event=EventType.MFA_ENROLLED,
        user=factor.user,
        request=request,
        details={"method": factor.method, "factor": str(factor.pk)},
    )
    mfa_change_notify(user=factor.user, change=CHANGE_TOTP_ON)
    return recovery_codes_generate(user=factor.user, request=request, notify=False)


# --- Recovery codes ------------------------------------------------------------------------------


def _recovery_digest(user, code: str) -> str:
    return salted_hmac(
        _RECOVERY_HMAC_SALT, f"{user.public_id}:{code}", algorithm="sha256"
    ).hexdigest()


def _recovery_normalize(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch not in " -")


def recovery_codes_generate(*, user, request=None, notify: bool = True) -> list[str]:
    """Ten new single-use codes (returned once, stored as keyed digests); the old set is void.
    The account's address is told unless `notify` is false (the first set, made with a new
    authenticator app, whose own notice says so)."""
    codes = [
        "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(2 * _RECOVERY_GROUP))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    now = timezone.now()
    with transaction.atomic():
        RecoveryCode.objects.filter(user=user).delete()
        RecoveryCode.objects.bulk_create(
            RecoveryCode(user=user, digest=_recovery_digest(user, c), created_at=now) for c in codes
        )
        audit_event_record(
            event=EventType.MFA_RECOVERY_CODES_GENERATED,
            user=user,
            request=request,
            details={"count": len(codes)},
        )
        if notify:
            mfa_change_notify(user=user, change=CHANGE_RECOVERY_CODES_NEW)
    return [f"{c[:_RECOVERY_GROUP]}-{c[_RECOVERY_GROUP:]}" for c in codes]


def _verify_recovery_code(user, code: str, now: datetime) -> bool:
    normalized = _recovery_normalize(code)
    if len(normalized) != 2 * _RECOVERY_GROUP:
        return False
    if not selectors.user_has_second_factor(user=user):
        return False
    return bool(
        RecoveryCode.objects.filter(
            user=user, digest=_recovery_digest(user, normalized), used_at__isnull=True
        ).update(used_at=now)
    )


# --- Passkeys (passkeys/) ----------------------------------------------------------------------


def passkey_response(*, credential_json: str, binding: str) -> str:
    """The `response` of second_factor_verify for a passkey: the browser's answer and this
    browser session's challenge binding (passkeys.ceremony.session_binding), which the view
    takes from the session, never from the request."""
    return json.dumps({"credential": credential_json, "binding": binding})


def _verify_passkey(user, response: str, now: datetime) -> str:
    try:
        data = json.loads(response)
        credential_json, binding = data["credential"], data["binding"]
    except (ValueError, KeyError, TypeError):
        raise SecondFactorFailed("malformed") from None
    try:
        asserted = ceremony.assertion_verify(
            credential_json=credential_json,
            purpose=ceremony.SECOND_FACTOR,
            binding=binding,
            user=user,
        )
    except ceremony.PasskeyRefused as exc:
        raise SecondFactorFailed(exc.reason) from None
    return asserted.passkey.amr


# --- Verification (every method) ---------------------------------------------------------------

# method name -> (RFC 8176 amr value, verifier(user, response, now) -> bool, or the amr value
# of this very factor (a passkey: "hwk" or "swk"); a verifier may raise SecondFactorFailed to
# give the audit trail its reason)
METHOD_VERIFIERS: dict[str, tuple[str, Callable[[object, str, datetime], bool | str]]] = {
    selectors.TOTP: ("otp", _verify_totp),
    selectors.RECOVERY_CODE: ("otp", _verify_recovery_code),
    selectors.PASSKEY: ("hwk", _verify_passkey),
}
# Methods whose response is not a typed code (not normalised, not cut to MAX_CODE_LENGTH).
RAW_RESPONSE_METHODS = frozenset({selectors.PASSKEY})


def _clean_code(code: str) -> str:
    return unicodedata.normalize("NFKC", code or "").strip().replace(" ", "")[:MAX_CODE_LENGTH]


def code_method(code: str) -> str:
    """Which method a typed code is for: six digits are a TOTP code, anything else a recovery
    code (the sign-in form has one field for both)."""
    return selectors.TOTP if _TOTP_RE.match(_clean_code(code)) else selectors.RECOVERY_CODE


def _mail_owner(user, template: str, **context) -> None:
    """Queue `template` to the account's address (if it has one), with the link to its
    two-step verification page."""
    if not user.email:
        return
    mail_enqueue(
        to=user.email,
        template=template,
        context={
            "user": user,
            "account_url": get_config().issuer + reverse("account:mfa"),
            **context,
        },
    )


def _mail_recovery_code_used(user, now: datetime, left: int) -> None:
    _mail_owner(user, "mfa_recovery_code_used", used_at=now, left=left)


# What changed, for the notice to the account's address (templates/email/mfa_changed/).
CHANGE_TOTP_ON = "totp_on"
CHANGE_RECOVERY_CODES_NEW = "recovery_codes_new"
CHANGE_FACTORS_OFF = "factors_off"
CHANGE_PASSKEY_ADDED = "passkey_added"
CHANGE_PASSKEY_REMOVED = "passkey_removed"


def mfa_change_notify(*, user, change: str, passkey_name: str = "") -> None:
    """Tell the account's address that the owner changed how the account signs in, in the
    transaction that made the change: someone holding a stolen session who turns two-step
    verification off, or adds a passkey of their own, is seen by the owner."""
    _mail_owner(
        user, "mfa_changed", change=change, passkey_name=passkey_name, changed_at=timezone.now()
    )


@sensitive_variables("response")
def second_factor_verify(
    *,
    user,
    response: str,
    method: str | None = None,
    ip: str,
    user_agent: str = "",
    client_id: str = "",
    via: str = "",
    now: datetime | None = None,
) -> Verified:
    """Check a second factor for `user` (whose password was just checked) under the sign-in
    throttle and lockout. `method`: one of mfa.selectors' methods, or None to tell TOTP from a
    recovery code by the code's form. Raises SecondFactorFailed, LoginThrottled or
    LoginUnavailable (cache down: fail closed)."""
    now = now or timezone.now()
    context = {"ip": ip, "user_agent": user_agent, "client_id": client_id, "occurred_at": now}
    name = login_normalize(user.get_username())
    reservation = login_attempt_admit(
        name=name,
        context=context,
        user=user,
        details={"login_digest": login_digest(name), "step": "second_factor"},
    )
    response = response if isinstance(response, str) else ""
    method = method or code_method(response)
    if method not in RAW_RESPONSE_METHODS:
        response = _clean_code(response)
    details = {"method": method}
    if via:
        details["via"] = via
    try:
        locked = login_lockout_status(user=user, now=now).locked
    except CacheUnavailable:
        raise LoginUnavailable from None
    reason = "locked" if locked else "bad_code"
    accepted: bool | str = False
    if not locked and user.is_active and method in METHOD_VERIFIERS:
        try:
            accepted = METHOD_VERIFIERS[method][1](user, response, now)
        except SecretUnavailable:
            reason = "secret_unavailable"
        except SecondFactorFailed as exc:
            reason = exc.reason
    if accepted:
        try:
            login_budget_release(reservation)
            login_failures_reset(user=user)
        except CacheUnavailable:
            raise LoginUnavailable from None
        audit_event_record(event=EventType.MFA_SUCCEEDED, user=user, details=details, **context)
        if method == selectors.RECOVERY_CODE:
            left = selectors.recovery_codes_left(user=user)
            audit_event_record(
                event=EventType.MFA_RECOVERY_CODE_USED,
                user=user,
                details={**details, "left": left},
                **context,
            )
            _mail_recovery_code_used(user, now, left)
        amr = accepted if isinstance(accepted, str) else METHOD_VERIFIERS[method][0]
        return Verified(method=method, amr=amr)
    second_factor_failure_record(
        user=user, reason=reason, details=details, context=context, count=not locked
    )
    raise SecondFactorFailed(reason)


def second_factor_failure_record(
    *, user, reason: str, details: dict, context: dict, count: bool = True
) -> None:
    """Audit a refused second factor and count it toward the account's lockout."""
    lockout = None
    if count and user is not None:
        try:
            lockout = login_failure_register(user=user, now=context["occurred_at"])
        except CacheUnavailable:
            raise LoginUnavailable from None
    audit_event_record(
        event=EventType.MFA_FAILED, user=user, details={**details, "reason": reason}, **context
    )
    if lockout is not None:
        audit_event_record(
            event=EventType.ACCOUNT_LOCKED,
            user=user,
            details={
                "locked_until": lockout.locked_until.isoformat(),
                "seconds": lockout.seconds,
                "level": lockout.level,
                "step": "second_factor",
            },
            **context,
        )


# --- Removal and reset ---------------------------------------------------------------------------


@transaction.atomic
def second_factors_remove(*, user, request=None) -> int:
    """The owner removes their second factors (and so their recovery codes). Returns how many."""
    count = Factor.objects.filter(user=user).delete()[1].get("mfa.Factor", 0)
    count += Passkey.objects.filter(user=user).delete()[1].get("passkeys.Passkey", 0)
    RecoveryCode.objects.filter(user=user).delete()
    audit_event_record(
        event=EventType.MFA_REMOVED, user=user, request=request, details={"count": count}
    )
    if count:
        mfa_change_notify(user=user, change=CHANGE_FACTORS_OFF)
    return count


@transaction.atomic
def second_factors_reset(*, user, actor, request=None) -> int:
    """An administrator removes every second factor and recovery code of `user` (who lost
    them); audited, and the user is told by mail. Passkeys are second factors too."""
    count = Factor.objects.filter(user=user).delete()[1].get("mfa.Factor", 0)
    count += Passkey.objects.filter(user=user).delete()[1].get("passkeys.Passkey", 0)
    RecoveryCode.objects.filter(user=user).delete()
    audit_event_record(
        event=EventType.MFA_RESET,
        user=user,
        request=request,
        details={
            "count": count,
            "actor_sub": str(actor.public_id),
            "actor_username": actor.get_username(),
        },
    )
    _mail_owner(user, "mfa_reset", reset_at=timezone.now())
    return count


def mfa_token_refused(
    *, user, reason: str, ip: str, user_agent: str = "", now: datetime | None = None
) -> None:
    """A refused mfa_token (tampered, expired, used twice): audited and counted like a wrong
    code, in the IP's failure budget (and the user's, and their lockout, when it names one).
    Raises LoginThrottled when the budget is spent, LoginUnavailable when the cache is down."""
    now = now or timezone.now()
    context = {"ip": ip, "user_agent": user_agent, "client_id": "", "occurred_at": now}
    name = login_normalize(user.get_username()) if user is not None else ""
    try:
        reservation = login_budget_reserve(ip=ip, login=name, now=now)
    except CacheUnavailable:
        raise LoginUnavailable from None
    if isinstance(reservation, ThrottleHit):
        raise LoginThrottled(reservation.retry_after)
    second_factor_failure_record(
        user=user,
        reason=reason,
        details={"method": "mfa_token", "via": "api"},
        context=context,
        count=user is not None,
    )
