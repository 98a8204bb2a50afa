"""The second step of a browser sign-in (README "Multi-factor sign-in").

After the password, a user with a confirmed second factor is not signed in yet: the login page
keeps a pending sign-in in the browser's session (who, when, where to go next) and sends the
browser to /login/mfa, which signs in only once a factor is accepted (mfa/views.py). The pending
sign-in lasts PENDING_MAX_AGE seconds; the session key is rotated when it starts and again at
login(), so a session cookie planted before the password was typed is worth nothing.

A signed-in user whose sign-in lacks a second factor where one is demanded (a client's "require
MFA", `acr_values`, AUTHSERVER_MFA) presents one on the same page in its step-up mode; a user
who has none is sent to enrol (the account page), which counts as presenting it.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

PENDING_SESSION_KEY = "mfa_pending"
PENDING_MAX_AGE = 300  # seconds from the password to the second factor


def second_step_url(next_url: str | None, *, step_up: bool = False) -> str:
    params = {}
    if next_url:
        params["next"] = next_url
    if step_up:
        params["step_up"] = "1"
    return reverse("login-mfa") + ("?" + urlencode(params) if params else "")


def enrol_url(next_url: str | None) -> str:
    params = {"next": next_url} if next_url else {}
    return reverse("account:mfa-totp") + ("?" + urlencode(params) if params else "")


def second_step_start(
    request: HttpRequest, *, user, next_url: str | None, force: bool
) -> HttpResponseRedirect:
    request.session.cycle_key()
    request.session[PENDING_SESSION_KEY] = {
        "user": user.pk,
        "at": int(time.time()),
        "next": next_url or "",
        "force": bool(force),
    }
    return HttpResponseRedirect(second_step_url(next_url), status=303)


def second_step_pending(request: HttpRequest) -> dict | None:
    """The pending sign-in of this browser, or None (none, or older than PENDING_MAX_AGE)."""
    pending = request.session.get(PENDING_SESSION_KEY)
    if not isinstance(pending, dict) or not isinstance(pending.get("user"), int):
        return None
    at = pending.get("at")
    if not isinstance(at, int) or not 0 <= time.time() - at <= PENDING_MAX_AGE:
        return None
    return pending


def second_step_clear(request: HttpRequest) -> None:
    request.session.pop(PENDING_SESSION_KEY, None)
