"""Write side of the account pages (/account/): what a signed-in person changes about their own
account. Each service acts only on the user it is given, and audits what it did.

The views (selfservice/views.py) check the CSRF token and the recent sign-in before calling
these; the services check the password where the action asks for it again, through
accounts.services.user_authenticate (throttled, counted by the lockout, audited).
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from accounts.models import User
from accounts.network import client_ip
from accounts.services import (
    LoginFailed,
    LoginThrottled,
    LoginUnavailable,
    PasswordRejected,
    user_authenticate,
    user_set_password,
)
from audit.events import EventType
from audit.services import audit_event_record
from oauth.consents import consent_withdraw
from oauth.models import Consent
from sessions.models import Session
from sessions.services import client_sessions_revoke, session_revoke, user_sessions_revoke

NAME_MAX_LENGTH = 150


class AccountDeleteRefused(Exception):
    """An account with admin rights is not deleted from the account pages: another
    administrator deletes it in the admin (so the last superuser cannot remove itself by a
    stolen session and a password)."""


__all__ = [
    "AccountDeleteRefused",
    "LoginFailed",
    "LoginThrottled",
    "LoginUnavailable",
    "PasswordRejected",
    "account_app_withdraw",
    "account_delete",
    "account_may_delete",
    "account_password_change",
    "account_password_check",
    "account_profile_update",
    "account_session_end",
    "account_sessions_end_all",
    "account_sessions_end_others",
]


@sensitive_variables("password")
def account_password_check(*, user: User, password: str, request) -> None:
    """Check `user`'s own password again. Raises LoginFailed, LoginThrottled or
    LoginUnavailable exactly as the login page would (same throttle, lockout and audit)."""
    user_authenticate(
        login=user.get_username(),
        password=password,
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )


def account_profile_update(*, user: User, first_name: str, last_name: str, request) -> bool:
    """Set the person's name; audited with the names of the changed fields. False if nothing
    changed."""
    values = {"first_name": first_name.strip(), "last_name": last_name.strip()}
    changed = sorted(field for field, value in values.items() if getattr(user, field) != value)
    if not changed:
        return False
    for field in changed:
        setattr(user, field, values[field])
    user.save(update_fields=changed)
    audit_event_record(
        event=EventType.ACCOUNT_PROFILE_CHANGED,
        user=user,
        request=request,
        details={"fields": changed},
    )
    return True


def account_language_set(*, user: User, language: str, request) -> bool:
    """Save the language of the person's pages and emails ("" for the browser's); audited as a
    profile change. False if nothing changed. `language` must be a code of LANGUAGES or ""."""
    if language and language not in dict(settings.LANGUAGES):
        raise ValueError(f"not a language of LANGUAGES: {language!r}")
    if user.language == language:
        return False
    user.language = language
    user.save(update_fields=["language"])
    audit_event_record(
        event=EventType.ACCOUNT_PROFILE_CHANGED,
        user=user,
        request=request,
        details={"fields": ["language"]},
    )
    return True


@sensitive_variables("current_password", "new_password")
def account_password_change(
    *, user: User, current_password: str, new_password: str, request
) -> int:
    """Change the password after checking the current one; every session of the user ends
    (browser sign-ins, first-party and OAuth grants: their refresh tokens stop working). Returns
    how many sessions ended. The caller signs the current browser in again (a new sign-in,
    started after the change), which is how this one stays.

    Raises LoginFailed/LoginThrottled/LoginUnavailable (current password) or PasswordRejected
    (the validators); nothing changes then."""
    account_password_check(user=user, password=current_password, request=request)
    with transaction.atomic():
        user_set_password(user=user, password=new_password, actor=user, request=request)
        return user_sessions_revoke(user=user, reason=Session.RevokeReason.PASSWORD_CHANGED)


def _actor_details(user: User, actor) -> dict[str, str]:
    """Who acted, when it is not the user (an administrator on the user's admin page)."""
    if actor is None or getattr(actor, "pk", None) in (None, user.pk):
        return {"via": "account_page"}
    return {"via": "admin", "actor": actor.get_username(), "actor_sub": str(actor.public_id)}


def account_session_end(*, user: User, session: Session, request, actor=None) -> bool:
    """End one of the user's sessions (and, for a browser sign-in, the app sign-ins it
    approved); audited. The caller looked `session` up for this user
    (selfservice.selectors.account_session_get). `actor`: an administrator acting for the user
    (None: the user). False if it had already ended."""
    if session.user_id != user.pk:
        raise PermissionError("not the user's session")
    by_admin = actor is not None and actor.pk != user.pk
    reason = Session.RevokeReason.ADMIN if by_admin else Session.RevokeReason.USER_ENDED
    ended = session_revoke(session=session, reason=reason)
    if ended:
        audit_event_record(
            event=EventType.SESSION_REVOKED,
            user=user,
            request=request,
            client_id=session.client_id,
            session_id=session.pk,
            details={"reason": reason.value, **_actor_details(user, actor)},
        )
    return ended


def account_sessions_end_all(*, user: User, actor, request) -> int:
    """An administrator ends every session of the user; audited as logout_all."""
    ended = user_sessions_revoke(user=user, reason=Session.RevokeReason.ADMIN)
    audit_event_record(
        event=EventType.LOGOUT_ALL,
        user=user,
        request=request,
        details={"sessions_ended": ended, **_actor_details(user, actor)},
    )
    return ended


def account_sessions_end_others(*, user: User, keep: Session | None, request) -> int:
    """End every session of the user except `keep` (the browser sign-in in use); audited as
    logout_all. Returns how many ended."""
    ended = user_sessions_revoke(user=user, reason=Session.RevokeReason.LOGOUT_ALL, keep=keep)
    audit_event_record(
        event=EventType.LOGOUT_ALL,
        user=user,
        request=request,
        session_id=keep.pk if keep is not None else None,
        details={"sessions_ended": ended, "kept_current": keep is not None, "via": "account_page"},
    )
    return ended


def account_app_withdraw(*, user: User, client_id: str, request, actor=None) -> int | None:
    """Withdraw what the user allowed the client `client_id`: the consent goes and the client's
    grants for this user end (refresh tokens refused, unredeemed codes expired; see
    oauth.consents.consent_withdraw). For a client holding grants without a consent (it skips
    the consent page) the grants end. Audited as consent.withdrawn. `actor`: an administrator
    acting for the user (None: the user). Returns how many sessions ended, or None if the user
    has nothing with that client."""
    actor = actor if actor is not None else user
    found = (
        Consent.objects.filter(user=user, client__client_id=client_id)
        .select_related("client", "user")
        .first()
    )
    if found is not None:
        return consent_withdraw(consent=found, actor=actor, request=request)
    by_admin = actor.pk != user.pk
    ended = client_sessions_revoke(
        client_id=client_id,
        user=user,
        reason=Session.RevokeReason.ADMIN if by_admin else Session.RevokeReason.USER_ENDED,
    )
    if not ended:
        return None
    audit_event_record(
        event=EventType.CONSENT_WITHDRAWN,
        user=user,
        client_id=client_id,
        request=request,
        details={"sessions_ended": len(ended), "consent": "none", **_actor_details(user, actor)},
    )
    return len(ended)


def account_may_delete(*, user: User) -> bool:
    return not (user.is_staff or user.is_superuser)


@sensitive_variables("password")
def account_delete(*, user: User, password: str, request) -> None:
    """Delete the account after checking its password: the user row goes, and with it every
    session (refresh tokens dead, access tokens refused wherever the session is checked),
    consent and authorization code. The audit trail keeps its rows (the user reference cleared,
    the `sub` kept) until AUTHSERVER_AUDIT_RETENTION_DAYS, with an account.deleted event.

    Raises AccountDeleteRefused (an account with admin rights) or
    LoginFailed/LoginThrottled/LoginUnavailable; nothing changes then."""
    if not account_may_delete(user=user):
        raise AccountDeleteRefused
    account_password_check(user=user, password=password, request=request)
    with transaction.atomic():
        ended = user_sessions_revoke(user=user, reason=Session.RevokeReason.USER_ENDED)
        audit_event_record(
            event=EventType.ACCOUNT_DELETED,
            user=user,
            request=request,
            details={"username": user.get_username(), "sessions_ended": ended},
        )
        user.delete()
