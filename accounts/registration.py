"""Sign-up (AUTHSERVER_REGISTRATION=open) and invitations (any mode; the only way in for
`invite`).

The sign-up page answers every well-formed submission the same way ("check your email"), with
the same work behind it, so it tells nobody which addresses or usernames have accounts:

- a new address and a free username: the account is created (inactive until its address is
  confirmed, when AUTHSERVER_REGISTRATION_REQUIRE_VERIFIED) and a confirmation link mailed;
- an address that already has an account: that address gets a mail saying someone tried to
  sign up with it (sign in, or reset the password), nothing is created;
- a free address but a taken username: the address gets a mail saying the name is taken.
  Only the owner of the mailbox learns it; the page does not. This is the part that cannot be
  hidden from someone who controls a mailbox (they must be told to pick another name), and it
  costs them a mail round trip per probe within the per-IP throttle (README).

A pending sign-up (never confirmed, never signed in) whose link has expired holds neither its
address nor its username any more: the next sign-up for either deletes it.
"""

from __future__ import annotations

import secrets
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts import emaillinks
from accounts.hash_gate import BUSY_RETRY_AFTER, HashGateFull, hash_gate
from accounts.models import User
from accounts.throttling import _digest, ip_bucket
from accounts.verification import _absolute, _actor_details, email_verification_send
from audit.events import EventType
from audit.services import audit_event_record
from authserver.conf import get_config
from authserver.counters import CacheUnavailable, cache_guard, counter_incr, shared_cache, window_at
from authserver.languages import chosen_language
from mail.services import mail_enqueue

USERNAME_MAX_LENGTH = 150


class SignupThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many sign-ups; retry after {retry_after} seconds")


class SignupUnavailable(Exception):
    """The shared cache holding the throttle is down, or every password-hashing slot of this
    process is taken (accounts/hash_gate.py): sign-up is refused for now (fail closed)."""

    def __init__(self, retry_after: int = 60) -> None:
        self.retry_after = retry_after
        super().__init__("sign-up is temporarily unavailable")


@contextmanager
def _hashing_slot():
    """A slot of the per-process password-hashing bound, as a sign-in takes one: a flood of
    sign-ups cannot take every thread either."""
    gate = hash_gate()
    try:
        gate.acquire()
    except HashGateFull:
        raise SignupUnavailable(BUSY_RETRY_AFTER) from None
    try:
        yield
    finally:
        gate.release()


class InviteRejected(ValueError):
    """The invitation cannot be sent; the message is safe to show to the admin."""


class InviteFailed(Exception):
    """The invitation link cannot be used: `reason` is invalid (unknown, tampered, used or
    expired) or taken (its address got an account meanwhile)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def registration_mode() -> str:
    return get_config().registration


def username_normalize(raw: str) -> str:
    return User.normalize_username(unicodedata.normalize("NFKC", raw or "").strip())


def signup_throttle(*, ip: str, now: datetime | None = None) -> None:
    """Count one sign-up attempt for the client's IP bucket; raise SignupThrottled past the
    budget (every attempt counts, whatever became of it) or SignupUnavailable."""
    config = get_config()
    now = now or timezone.now()
    index, remaining = window_at(now, config.registration_throttle_window_seconds)
    key = f"signup:ip:{index}:{_digest(ip_bucket(ip))}"
    try:
        count = counter_incr(key, remaining + 60)
        if count > config.registration_throttle_per_ip:
            with cache_guard():
                first = bool(shared_cache().add(key + ":refused", 1, remaining + 60))
            if first:
                audit_event_record(
                    event=EventType.SIGNUP_THROTTLED,
                    ip=ip,
                    details={"retry_after": remaining},
                )
            raise SignupThrottled(remaining)
    except CacheUnavailable:
        raise SignupUnavailable from None


def _stale_pending(user: User, now: datetime) -> bool:
    """A sign-up that was never confirmed and whose link has expired."""
    lifetime = timedelta(seconds=get_config().email_verify_link_seconds)
    return (
        not user.is_active
        and not user.email_verified
        and user.last_login is None
        and user.date_joined < now - lifetime
        and not user.is_staff
        and not user.is_superuser
    )


@sensitive_variables("password")
def user_signup(*, username: str, email: str, password: str, request=None) -> None:
    """Handle a sign-up form that passed its shape checks (address normalised and allowed,
    passwords equal and accepted by the validators). Returns nothing: the caller's answer must
    not depend on what happened. Every path costs one password hash and writes one outbox row.
    Raises SignupUnavailable when every hashing slot is taken.
    """
    now = timezone.now()
    username = username_normalize(username)
    # The one hash of every path, before the transaction: no row is locked while it runs.
    with _hashing_slot():
        hashed = make_password(password)
    with transaction.atomic():
        for field, value in (("email", email), ("username", username)):
            holder = User.objects.matching(field, value).first()
            if holder is not None and _stale_pending(holder, now):
                # Conditional, so an account confirmed or signed in meanwhile stays.
                User.objects.filter(
                    pk=holder.pk,
                    is_active=False,
                    email_verified=False,
                    last_login__isnull=True,
                    date_joined=holder.date_joined,
                ).delete()
        if User.objects.matching("email", email).exists():
            outcome, notice = "existing_email", "signup_existing"
        elif User.objects.matching("username", username).exists():
            outcome, notice = "username_taken", "signup_username_taken"
        else:
            outcome, notice = "created", None
        # The same writes in every path: the account, its link, its confirmation mail and its
        # audit row are made for real, or, when the address or name is taken, for a throwaway
        # account inside a savepoint that is rolled back. Then the notice of the other paths
        # is queued. The answer's timing does not tell the paths apart.
        real = notice is None
        try:
            with transaction.atomic():
                _account_create(
                    username=username if real else f"~{secrets.token_hex(8)}",
                    email=email if real else f"{secrets.token_hex(8)}@example.invalid",
                    hashed=hashed,
                    request=request,
                )
                if not real:
                    raise _Rehearsal
        except _Rehearsal:
            pass
        except IntegrityError:
            # A concurrent sign-up took the name or address between the check and here.
            outcome, notice = "race", "signup_username_taken"
        if notice is not None:
            mail_enqueue(
                to=email,
                template=notice,
                context={
                    "username": username,
                    "login_url": _absolute(request, reverse("login")),
                    "reset_url": _reset_url(request),
                    "signup_url": _absolute(request, reverse("signup")),
                },
            )
        audit_event_record(
            event=EventType.SIGNUP_SUBMITTED,
            request=request,
            details={"outcome": outcome, "email_domain": email.rsplit("@", 1)[1]},
        )


class _Rehearsal(Exception):
    """Rolls back the throwaway account of a sign-up whose address or name is taken."""


def _account_create(*, username: str, email: str, hashed: str, request) -> User:
    user = User(
        username=username,
        email=email,
        is_active=not get_config().registration_require_verified,
        language=chosen_language(request),
    )
    user.password = hashed
    with transaction.atomic():
        user.save()
    email_verification_send(user=user, request=request, signup=True)
    audit_event_record(
        event=EventType.USER_SIGNED_UP,
        user=user,
        request=request,
        details={"active": user.is_active},
    )
    return user


def _reset_url(request) -> str:
    return _absolute(request, reverse("password-forgot"))


# --- Invitations --------------------------------------------------------------------------------


def invite_url(token: str, request=None) -> str:
    # In the query string, for the reason given at verification.confirm_url.
    return _absolute(request, reverse("invite_accept") + "?" + urlencode({"token": token}))


def invite_send(*, email: str, actor=None, request=None, language: str | None = None) -> None:
    """Mail a single-use invitation link to `email`, in one transaction with its audit row,
    written in `language` (a code of settings.LANGUAGES; None: LANGUAGE_CODE, since the invitee
    has no saved language and the admin's page is not theirs).

    Raises InviteRejected for a bad address or one that already has an account (an admin may
    know that; the invitee page never says it), or a language that is not served."""
    from accounts.emailaddr import EmailInvalid, email_normalize

    try:
        email = email_normalize(email)
    except EmailInvalid as exc:
        raise InviteRejected(str(exc)) from None
    if User.objects.matching("email", email).exists():
        raise InviteRejected("an account with this email address already exists")
    served = [code for code, _ in settings.LANGUAGES]
    if language is not None and language not in served:
        raise InviteRejected(f"the language must be one of {', '.join(served)}")
    lifetime = get_config().invite_link_seconds
    with transaction.atomic():
        token = emaillinks.link_issue(
            purpose=emaillinks.INVITE, user=None, email=email, lifetime=lifetime
        )
        inviter = ""
        if actor is not None and getattr(actor, "pk", None) is not None:
            inviter = actor.get_full_name().strip() or actor.get_username()
        mail_enqueue(
            to=email,
            template="invite",
            context={
                "url": invite_url(token, request),
                "inviter": inviter,
                "days": max(1, lifetime // 86_400),
            },
            language=language or settings.LANGUAGE_CODE,
        )
        audit_event_record(
            event=EventType.INVITE_SENT,
            request=request,
            details={**_actor_details(actor), "email_domain": email.rsplit("@", 1)[1]},
        )


def invite_check(*, token: str | None = None, digest: str | None = None) -> tuple[str, str]:
    """(invited address, digest) of a live invitation link, or InviteFailed("invalid")."""
    link = emaillinks.link_peek(purpose=emaillinks.INVITE, token=token, digest=digest)
    if link is None:
        raise InviteFailed("invalid")
    return link.email, link.digest


class InviteUsernameTaken(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class InviteAccepted:
    user: User


@sensitive_variables("password")
def invite_accept(*, digest: str, username: str, password: str, request=None) -> InviteAccepted:
    """Create the invited account (active, its address verified: the invitation came to it).

    The link is consumed in the same transaction as the account is created: a refused
    username or password leaves the link usable, and of concurrent acceptances exactly one
    wins. Raises InviteFailed, InviteUsernameTaken or ValidationError (password)."""
    username = username_normalize(username)
    with _hashing_slot(), transaction.atomic():
        link = emaillinks.link_consume(purpose=emaillinks.INVITE, digest=digest)
        if link is None:
            raise InviteFailed("invalid")
        email = link.email.lower()
        if User.objects.matching("email", email).exists():
            raise InviteFailed("taken")
        if User.objects.matching("username", username).exists():
            raise InviteUsernameTaken(username)
        user = User(
            username=username,
            email=email,
            email_verified=True,
            is_active=True,
            language=chosen_language(request),
        )
        try:
            password_validation.validate_password(password, user=user)
        except ValidationError:
            raise
        user.set_password(password)
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:
            raise InviteUsernameTaken(username) from None
        audit_event_record(event=EventType.INVITE_ACCEPTED, user=user, request=request)
    return InviteAccepted(user=user)
