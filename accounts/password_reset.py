"""Password reset by email: request a link, then set a new password with it.

Enumeration: `password_reset_request` answers the same, and does the same work, whether or not
the name belongs to an account that may reset. It always looks the name up, issues a link,
renders and queues the mail inside a savepoint, and records one audit event; for a name that
must get no mail (unknown, inactive, no usable password, no address) the savepoint is rolled
back, so the rows vanish but the cost was paid. The throttle counts what was typed (and the
client IP), never the account found, so it behaves alike too.

A link (accounts/links.py) lives AUTHSERVER_PASSWORD_RESET_TTL seconds, works once, and dies when
a newer one is sent or the password changes. Using it sets the password (validators apply), ends
every session of the user (the model's save does that for any password change), lifts a login
lockout, audits password.reset and queues a notice to the address.
"""

from __future__ import annotations

import contextlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.debug import sensitive_variables

from accounts.links import account_link_check, account_link_consume, account_link_issue
from accounts.models import AccountLink, User
from accounts.services import PasswordRejected, _actor_details, _user_for_login
from accounts.throttling import ip_bucket, login_digest, login_lockout_reset, login_normalize
from audit.events import EventType
from audit.services import audit_event_record
from authserver.counters import CacheUnavailable, counter_incr, shared_cache, window_at
from mail.services import mail_enqueue

RESET = AccountLink.Purpose.RESET
# Where a decoy request "sends" its mail (the row is rolled back; nothing is ever sent).
_DECOY_ADDRESS = "nobody@example.invalid"


class ResetThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many reset requests; retry after {retry_after} seconds")


class ResetUnavailable(Exception):
    """The shared cache holding the throttle is down: requests are refused (fail closed)."""


@dataclass(frozen=True, slots=True)
class _Budget:
    scope: str
    key: str
    limit: int


def _throttle(*, ip: str, name: str, now: datetime) -> None:
    window = settings.AUTHSERVER_PASSWORD_RESET_WINDOW_SECONDS
    index, remaining = window_at(now, window)
    ttl = remaining + 60
    budgets = (
        _Budget(
            "ip",
            f"reset:ip:{index}:{login_digest(ip_bucket(ip))}",
            settings.AUTHSERVER_PASSWORD_RESET_PER_IP,
        ),
        _Budget(
            "login",
            f"reset:name:{index}:{login_digest(name)}",
            settings.AUTHSERVER_PASSWORD_RESET_PER_LOGIN,
        ),
    )
    try:
        for budget in budgets:
            count = counter_incr(budget.key, ttl)
            if count > budget.limit:
                first = bool(shared_cache().add(budget.key + ":refused", 1, ttl))
                if first:  # one audit row per bucket and window
                    audit_event_record(
                        event=EventType.PASSWORD_RESET_THROTTLED,
                        ip=ip,
                        details={"scope": budget.scope, "login_digest": login_digest(name)},
                    )
                raise ResetThrottled(remaining)
    except CacheUnavailable:
        raise ResetUnavailable from None


def password_reset_url(token: str) -> str:
    """The link in the mail. Built from AUTHSERVER_ISSUER, never from the request's Host
    header (which an attacker chooses, and would receive the token through)."""
    # In the query string, which the access log never records (deploy/gunicorn.conf.py).
    return (
        settings.AUTHSERVER_ISSUER + reverse("password-reset") + "?" + urlencode({"token": token})
    )


def _may_reset(user: User | None) -> bool:
    return bool(user is not None and user.is_active and user.has_usable_password() and user.email)


def _send_link(*, user: User, email: str, now: datetime) -> AccountLink:
    ttl = settings.AUTHSERVER_PASSWORD_RESET_TTL
    owner = user if user.pk is not None else None  # the decoy is never saved
    link, token = account_link_issue(purpose=RESET, user=owner, email=email, ttl=ttl, now=now)
    mail_enqueue(
        to=email,
        template="password_reset",
        context={"user": user, "link": password_reset_url(token), "ttl_minutes": ttl // 60},
    )
    return link


def password_reset_request(
    *, login: str, ip: str, user_agent: str = "", now: datetime | None = None
) -> None:
    """Queue a reset mail if `login` (a username or an address) names an account that may reset
    its password; otherwise do the same work and discard it. Returns nothing either way.
    Raises ResetThrottled (per IP and per typed name) or ResetUnavailable (cache down)."""
    now = now or timezone.now()
    name = login_normalize(login)
    _throttle(ip=ip, name=name, now=now)
    user = _user_for_login(unicodedata.normalize("NFKC", login or "").strip())
    send = _may_reset(user)
    with transaction.atomic():
        savepoint = transaction.savepoint()
        # The decoy is a real User object, never saved, so the mail renders the same.
        target = user if user is not None else User(username=name[:150], email=_DECOY_ADDRESS)
        _send_link(user=target, email=target.email if send else _DECOY_ADDRESS, now=now)
        if send:
            transaction.savepoint_commit(savepoint)
        else:
            transaction.savepoint_rollback(savepoint)
        details = {"login_digest": login_digest(name), "sent": send}
        audit_event_record(
            event=EventType.PASSWORD_RESET_REQUESTED,
            user=user,
            ip=ip,
            user_agent=user_agent,
            occurred_at=now,
            details=details,
        )


def password_reset_send(*, user: User, actor, request=None) -> bool:
    """The admin action: mail `user` a reset link now (no throttle; audited with the actor).
    False (and nothing sent) when the account cannot reset: inactive, no usable password or
    no address."""
    if not _may_reset(user):
        return False
    with transaction.atomic():
        _send_link(user=user, email=user.email, now=timezone.now())
        audit_event_record(
            event=EventType.ADMIN_PASSWORD_RESET_SENT,
            user=user,
            request=request,
            details=_actor_details(actor),
        )
    return True


def password_reset_link_check(*, token: str | None = None, digest: str | None = None):
    """The live reset link (AccountLinkInvalid otherwise), for showing the form."""
    return account_link_check(purpose=RESET, token=token, digest=digest)


@sensitive_variables("password")
def password_reset_complete(
    *, digest: str, password: str, ip: str = "", user_agent: str = "", request=None
) -> User:
    """Set a new password with the link whose digest is `digest`.

    Raises AccountLinkInvalid (dead link; also for the losers of a race on one link: the
    UPDATE that uses it admits one winner) or PasswordRejected (the validators; the link stays
    usable). The password is hashed before the transaction, so the link's row is locked only
    for milliseconds (concurrent submissions wait on it, under the database lock_timeout). The
    use of the link, the change (whose save ends every session of the user), the audit events
    and the notice commit together."""
    link = account_link_check(purpose=RESET, digest=digest)
    user = link.user
    try:
        password_validation.validate_password(password, user=user)
    except ValidationError as exc:
        raise PasswordRejected(exc.error_list) from None
    user.set_password(password)  # the hash: CPU work, done before any lock is taken
    with transaction.atomic():
        link = account_link_consume(purpose=RESET, digest=digest)
        user.password_changed_at = timezone.now()
        # Sets password_changed_at; User.save ends every session (browser and tokens).
        user.save(update_fields=["password", "password_changed_at"])
        audit_event_record(
            event=EventType.PASSWORD_CHANGED,
            user=user,
            request=request,
            ip=ip or None,
            user_agent=user_agent,
            details={"change": "reset"},
        )
        audit_event_record(
            event=EventType.PASSWORD_RESET,
            user=user,
            request=request,
            ip=ip or None,
            user_agent=user_agent,
            details={"link_id": link.pk},
        )
        if user.email:
            mail_enqueue(
                to=user.email,
                template="password_changed",
                context={
                    "user": user,
                    "changed_at": user.password_changed_at,
                    "how": "reset",
                    "reset_url": settings.AUTHSERVER_ISSUER + reverse("password-forgot"),
                },
            )
    with contextlib.suppress(CacheUnavailable):  # else the lockout expires on its own
        login_lockout_reset(user=user, now=timezone.now())
    return user
