"""Write-side rules about users: every change to an account goes through here."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from datetime import datetime

from django.contrib.auth import password_validation
from django.contrib.auth.hashers import check_password, make_password, verify_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.hash_gate import BUSY_RETRY_AFTER, HashGateFull, hash_gate
from accounts.models import User
from accounts.throttling import (
    BudgetReservation,
    ThrottleHit,
    login_budget_release,
    login_budget_reserve,
    login_digest,
    login_failure_register,
    login_failures_reset,
    login_lockout_reset,
    login_lockout_status,
    login_normalize,
)
from audit.events import EventType, FailureReason
from audit.services import audit_event_record
from authserver import metrics
from authserver.counters import CacheUnavailable


class UserCreateError(ValueError):
    """The account cannot be created; the message is safe to show to the operator."""


@transaction.atomic
def user_create(
    *,
    username: str,
    email: str,
    password: str | None,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    """Create an account. The password is validated with the configured validators.

    `password=None` creates an account that cannot sign in with a password.
    """
    username = User.normalize_username(username.strip())
    email = User.objects.normalize_email(email.strip()).lower()
    if not username:
        raise UserCreateError("username must not be empty")
    if not email or "@" not in email:
        raise UserCreateError("email must be an email address")
    if User.objects.matching("username", username).exists():
        raise UserCreateError(f"a user named {username!r} already exists")
    if User.objects.matching("email", email).exists():
        raise UserCreateError("a user with this email already exists")
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_superuser)
    if password is None:
        user.set_unusable_password()
    else:
        try:
            password_validation.validate_password(password, user=user)
        except ValidationError as exc:
            raise UserCreateError("password rejected: " + " ".join(exc.messages)) from None
        user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        # A concurrent creation of the same username/email won the race.
        raise UserCreateError("a user with this username or email already exists") from None
    return user


# --- Login, lockout and account changes (audited) ---------------------------------------------


class LoginFailed(Exception):
    """The login did not succeed. Raised alike for an unknown name, a wrong password, an inactive
    account and a locked account, so a caller cannot tell which (the reason goes to the audit
    trail only)."""

    def __init__(self) -> None:
        super().__init__("invalid username or password")


class LoginThrottled(Exception):
    """Too many attempts from this IP or for this login name; retry after `retry_after` s."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many login attempts; retry after {retry_after} seconds")


class LoginUnavailable(Exception):
    """The shared cache holding throttle and lockout state is down: logins are refused (fail
    closed) rather than allowed without brute-force protection."""

    def __init__(self) -> None:
        super().__init__("login is temporarily unavailable")


class LoginBusy(LoginUnavailable):
    """Every password-hashing slot and queue place of this process is taken (a sign-in flood):
    refused at once, before any password work, with 503 and Retry-After (accounts/hash_gate.py)."""

    retry_after = BUSY_RETRY_AFTER

    def __init__(self) -> None:
        Exception.__init__(self, "login is busy; retry shortly")


class PasswordRejected(ValidationError):
    """The new password fails the configured validators; `messages` says why."""


def _user_for_login(login: str) -> User | None:
    # Unlike selectors.user_get_by_login this finds inactive accounts too, so the service can
    # treat them like everyone else (one hash, same error) and audit the real reason.
    if not login or len(login) > 254:
        return None
    field = "email" if "@" in login else "username"
    return User.objects.matching(field, login).first()


@sensitive_variables("password")
def _password_hash_burn(password: str) -> None:
    """Spend one run of the default hasher, as a real check would (Django ticket #20760)."""
    make_password(password)


def _actor_details(actor) -> dict[str, str]:
    if actor is None or getattr(actor, "pk", None) is None:
        return {}
    return {"actor_sub": str(actor.public_id), "actor_username": actor.get_username()}


def _second_factor_follows(user: User) -> bool:
    # With a second factor the sign-in is not over: the failure count (wrong codes included)
    # is forgotten only when the factor is accepted (mfa/services.py), or else a password
    # typed between guesses would wipe the code guesses' count and the lockout never come.
    from mfa.selectors import user_has_second_factor  # mfa sits above accounts

    return user_has_second_factor(user=user)


@sensitive_variables("password")
def user_authenticate(
    *,
    login: str,
    password: str,
    ip: str,
    user_agent: str = "",
    client_id: str = "",
    now: datetime | None = None,
) -> User:
    """Check a login name (username or email) and password under the throttle and lockout.

    Raises LoginThrottled (when the IP's or the name's failure budget is spent; before any
    password work), LoginFailed (the same for every reason; each path costs one password hash,
    and each spends one slot of both failure budgets), or LoginUnavailable (cache down: fail
    closed), or LoginBusy (a LoginUnavailable: this process's password-hashing slots and queue
    are full, accounts/hash_gate.py; refused at once, before anything else). On success the
    budget slots are given back and the failure count is reset, a PBKDF2
    hash is upgraded to Argon2id, `last_login` is stamped and login.succeeded is audited.
    """
    now = now or timezone.now()
    context = {"ip": ip, "user_agent": user_agent, "client_id": client_id, "occurred_at": now}
    name = login_normalize(login)
    # A hashing slot first (accounts/hash_gate.py): during a flood most attempts are refused
    # here, at once and before any other work (the cache, the database), so that the threads
    # they take return to the pool as fast as possible.
    gate = hash_gate()
    try:
        gate.acquire()
    except HashGateFull:
        metrics.login_attempted(outcome="busy")
        raise LoginBusy from None
    try:
        return _user_authenticate_gated(
            login=login, name=name, password=password, now=now, context=context
        )
    finally:
        gate.release()


@sensitive_variables("password")
def _password_verified(gate, user: User, password: str) -> bool:
    """user.check_password, with the hash on the gate's low-priority thread. A right password
    stored with an outdated hasher or parameters is re-hashed and saved by Django's own
    check_password (here, on this thread: rare, and it needs the database)."""
    correct, must_update = gate.run(verify_password, password, user.password)
    if correct and must_update:
        return user.check_password(password)
    return correct


def login_attempt_admit(
    *, name: str, context: dict, user: User | None = None, details: dict | None = None
) -> BudgetReservation:
    """Reserve this sign-in attempt's slots in the IP's and the login name's failure budgets
    (accounts/throttling.py), before any secret is checked: by a password, a second factor or a
    passkey. The caller gives the reservation back (login_budget_release) if the attempt succeeds.

    `name` is the normalised login name ("" when no account is named); `context` the audit
    context (ip, user_agent, client_id, occurred_at). Raises LoginThrottled when a budget is
    spent: the first refusal of a budget in its window is audited as login.throttled (one row
    per budget and window, so a flood cannot flood the trail), with `user` and `details`
    besides the budget's scope and retry_after. Raises LoginUnavailable when the cache is down
    (fail closed)."""
    try:
        reservation = login_budget_reserve(ip=context["ip"], login=name, now=context["occurred_at"])
    except CacheUnavailable:
        raise LoginUnavailable from None
    if isinstance(reservation, ThrottleHit):
        if reservation.first:
            audit_event_record(
                event=EventType.LOGIN_THROTTLED,
                user=user,
                details={
                    "scope": reservation.scope,
                    "retry_after": reservation.retry_after,
                    **(details or {}),
                },
                **context,
            )
        raise LoginThrottled(reservation.retry_after)
    return reservation


@sensitive_variables("password")
def _user_authenticate_gated(
    *, login: str, name: str, password: str, now: datetime, context: dict
) -> User:
    try:
        reservation = login_attempt_admit(
            name=name, context=context, details={"login_digest": login_digest(name)}
        )
    except LoginThrottled:
        metrics.login_attempted(outcome="throttled")
        raise
    except LoginUnavailable:
        metrics.login_attempted(outcome="unavailable")
        raise

    gate = hash_gate()  # the caller holds one of its slots
    user = _user_for_login(unicodedata.normalize("NFKC", login or "").strip())
    if user is None:
        gate.run(_password_hash_burn, password)
        reason = FailureReason.UNKNOWN_USER
    elif not user.is_active:
        gate.run(check_password, password, user.password)  # same cost; result irrelevant
        reason = FailureReason.INACTIVE
    else:
        try:
            locked = login_lockout_status(user=user, now=now).locked
        except CacheUnavailable:
            metrics.login_attempted(outcome="unavailable")
            raise LoginUnavailable from None
        if locked:
            # Even the right password fails while locked, after the same hash work.
            gate.run(check_password, password, user.password)
            reason = FailureReason.LOCKED
        elif _password_verified(gate, user, password):
            try:
                login_budget_release(reservation)
                if not _second_factor_follows(user):
                    login_failures_reset(user=user)
            except CacheUnavailable:
                metrics.login_attempted(outcome="unavailable")
                raise LoginUnavailable from None
            user.last_login = now
            user.save(update_fields=["last_login"])
            audit_event_record(event=EventType.LOGIN_SUCCEEDED, user=user, **context)
            metrics.login_attempted(outcome="succeeded")
            return user
        else:
            reason = FailureReason.BAD_CREDENTIALS

    lockout = None
    if reason == FailureReason.BAD_CREDENTIALS:
        try:
            lockout = login_failure_register(user=user, now=now)
        except CacheUnavailable:
            metrics.login_attempted(outcome="unavailable")
            raise LoginUnavailable from None
    details = {"reason": reason.value}
    if user is None:
        details["login_digest"] = login_digest(name)
    audit_event_record(event=EventType.LOGIN_FAILED, user=user, details=details, **context)
    metrics.login_attempted(outcome="failed", reason=reason.value)
    if lockout is not None:
        metrics.lockout_started()
        audit_event_record(
            event=EventType.ACCOUNT_LOCKED,
            user=user,
            details={
                "locked_until": lockout.locked_until.isoformat(),
                "seconds": lockout.seconds,
                "level": lockout.level,
            },
            **context,
        )
    raise LoginFailed


@sensitive_variables("password")
def user_set_password(*, user: User, password: str, actor=None, request=None) -> None:
    """Validate and set a new password; stamp `password_changed_at` (sessions older than it can
    no longer refresh) and audit password.changed. Raises PasswordRejected."""
    try:
        password_validation.validate_password(password, user=user)
    except ValidationError as exc:
        raise PasswordRejected(exc.error_list) from None
    user.set_password(password)
    user.password_changed_at = timezone.now()
    user.save(update_fields=["password", "password_changed_at"])
    audit_event_record(
        event=EventType.PASSWORD_CHANGED,
        user=user,
        request=request,
        details={**_actor_details(actor), "change": "set"},
    )


def user_password_disable(*, user: User, actor=None, request=None) -> None:
    """Make password sign-in impossible for the account (an unusable hash); audited as a
    password change, which also ends sessions started before it."""
    user.set_unusable_password()
    user.password_changed_at = timezone.now()
    user.save(update_fields=["password", "password_changed_at"])
    audit_event_record(
        event=EventType.PASSWORD_CHANGED,
        user=user,
        request=request,
        details={**_actor_details(actor), "change": "disabled"},
    )


def user_deactivate(*, user: User, actor=None, request=None) -> None:
    """Deactivate the account (it can no longer sign in or refresh); audited. No-op if it is
    already inactive."""
    if not user.is_active:
        return
    user.is_active = False
    user.save(update_fields=["is_active"])
    audit_event_record(
        event=EventType.ADMIN_USER_DEACTIVATED,
        user=user,
        request=request,
        details=_actor_details(actor),
    )


def user_admin_save(
    *, user: User, changed_fields: Collection[str], actor=None, request=None
) -> None:
    """Save an account edited (or created) in the admin and audit it.

    Creation is audited as admin.user_created, an edit as admin.user_changed with the names of
    the changed fields (never their values); clearing `is_active` is also audited as
    admin.user_deactivated.
    """
    created = user.pk is None
    was_active = (
        True
        if created
        else User.objects.filter(pk=user.pk).values_list("is_active", flat=True).first()
    )
    user.save()
    fields = sorted(set(changed_fields) - {"password", "password1", "password2"})
    details = {**_actor_details(actor), "fields": fields}
    event = EventType.ADMIN_USER_CREATED if created else EventType.ADMIN_USER_CHANGED
    audit_event_record(event=event, user=user, request=request, details=details)
    if not created and was_active and not user.is_active:
        audit_event_record(
            event=EventType.ADMIN_USER_DEACTIVATED,
            user=user,
            request=request,
            details=_actor_details(actor),
        )


def user_delete(*, user: User, actor=None, request=None) -> None:
    """Delete the account. Its audit rows stay, keyed by the `sub` snapshot."""
    with transaction.atomic():
        audit_event_record(
            event=EventType.ADMIN_USER_DELETED,
            user=user,
            request=request,
            details={**_actor_details(actor), "username": user.get_username()},
        )
        user.delete()


def login_lockout_clear(
    *, user: User, actor=None, request=None, now: datetime | None = None
) -> None:
    """Lift the account's lockout, forget its failures and this window's login-name throttle
    for its username and email; audited as account.unlocked. Raises LoginUnavailable if the
    cache is down."""
    try:
        was_locked = login_lockout_reset(user=user, now=now or timezone.now())
    except CacheUnavailable:
        raise LoginUnavailable from None
    audit_event_record(
        event=EventType.ACCOUNT_UNLOCKED,
        user=user,
        request=request,
        details={**_actor_details(actor), "was_locked": was_locked},
    )
