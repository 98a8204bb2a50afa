"""Browser sign-ins as sessions: the hosted pages' Django session names a Session row.

Every path that signs a browser in goes through django.contrib.auth.login() (the hosted login
page, the admin's login form, the test client), and every sign-out through logout(). Django
announces both with its `user_logged_in` / `user_logged_out` signals, and those are the one
place that sees every path, so the receivers below keep the Session row in step: a sign-in
starts (or, for the same user in the same browser, renews) a browser Session and stores its id
in the Django session; a sign-out ends it, and with it the OAuth grants it approved.

BrowserSessionMiddleware makes the row authoritative: a browser whose row has ended (logout-all,
DELETE /api/v1/sessions/{id}, the admin's revoke action, deactivation, a password change) is
signed out on its next request, so /oauth/authorize?prompt=none answers login_required and no
new code can be minted from it. A browser signed in with no row at all (a session from before
this model existed) is signed out too.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from accounts.network import client_ip
from tokens.models import Session
from tokens.session_models import BROWSER_CLIENT_ID
from tokens.sessions import (
    browser_session_renew,
    browser_session_start,
    session_get,
    session_is_usable,
    session_revoke,
)

# Key in the Django session holding the id of the browser's Session row.
BROWSER_SESSION_KEY = "_authserver_sid"


def _stored_session(request: HttpRequest) -> Session | None:
    session = getattr(request, "session", None)
    sid = session.get(BROWSER_SESSION_KEY) if session is not None else None
    if not sid:
        return None
    found = session_get(sid=sid)
    if found is None or found.client_id != BROWSER_CLIENT_ID:
        return None
    return found


@receiver(user_logged_in, dispatch_uid="tokens.browser.signed_in")
def _signed_in(sender, request: HttpRequest | None, user, **kwargs) -> None:
    if request is None or not hasattr(request, "session"):
        return
    ip = client_ip(request) or None
    user_agent = request.META.get("HTTP_USER_AGENT", "")
    current = _stored_session(request)
    renewed = (
        current is not None
        and current.user_id == user.pk
        and browser_session_renew(session=current, ip=ip, user_agent=user_agent)
    )
    if not renewed:
        started = browser_session_start(user=user, ip=ip, user_agent=user_agent)
        request.session[BROWSER_SESSION_KEY] = str(started.pk)
    # A new session key at every sign-in, re-authentication included: login() keeps the key
    # when the same user signs in again, so a cookie stolen before would carry the fresh
    # auth_time (session fixation).
    request.session.cycle_key()


@receiver(user_logged_out, dispatch_uid="tokens.browser.signed_out")
def _signed_out(sender, request: HttpRequest | None, user, **kwargs) -> None:
    if request is None:
        return
    current = _stored_session(request)
    if current is not None and current.revoked_at is None:
        session_revoke(session=current, reason=Session.RevokeReason.LOGOUT)


def _checked_user(request: HttpRequest):
    user = get_user(request)
    if not user.is_authenticated:
        return user
    current = _stored_session(request)
    if current is None or current.user_id != user.pk or not session_is_usable(session=current):
        # Ended elsewhere: this browser is signed out (the Django session goes too).
        request.session.flush()
        return AnonymousUser()
    request.browser_session = current
    return user


def browser_session(request: HttpRequest) -> Session | None:
    """The live browser sign-in of this request, or None (anonymous)."""
    if not request.user.is_authenticated:
        return None
    return getattr(request, "browser_session", None)


class BrowserSessionMiddleware:
    """After AuthenticationMiddleware: request.user is the signed-in user only while the
    browser's Session row is live. Lazy, like Django's own: pages that never look at the user
    pay nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if hasattr(request, "session"):
            request.user = SimpleLazyObject(lambda: _checked_user(request))
        return self.get_response(request)
