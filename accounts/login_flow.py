"""The contract between the OAuth layer and the hosted login page (accounts/views.py).

- The authorization endpoint sends a visitor who must sign in to `login_redirect(...)`:
  `/login?next=<url-encoded authorize URL>`, plus `prompt=login` when the password must be asked
  for even though the browser is already signed in (OIDC `prompt=login`, an exceeded `max_age`,
  or a session whose sign-in time is unknown).
- After a successful password check the login page signs the user in (django.contrib.auth) and
  stores the time of that check, in whole epoch seconds, under `AUTH_TIME_SESSION_KEY`
  (`auth_time_record`). It becomes the ID token's `auth_time`; `auth_time(request)` reads it.
  It also stores a random id for that sign-in (`sign_in_id`): the authorization endpoint notes
  the id it saw when it sent the browser here, and a different id on return proves the password
  was typed since, in this browser, whatever the clock says.
- The authorization endpoint keeps the requests waiting on a sign-in in the session under
  `PENDING_SESSION_KEY`. They must outlive the sign-in: login() keeps the session for an
  anonymous visitor or the same user, but flushes it when a different user signs in, so the
  login page takes them with `sign_in_carry` before login() and hands them to `auth_time_record`.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

# Query parameter of the login URL that asks for the password even when already signed in.
FORCE_PARAM, FORCE_VALUE = "prompt", "login"
# Session key holding when the signed-in user last typed their password (int epoch seconds).
AUTH_TIME_SESSION_KEY = "auth_time"
# Session key holding a random id of that sign-in (changes with every password check).
SIGN_IN_ID_SESSION_KEY = "sign_in_id"
# Session key under which the authorization endpoint keeps requests waiting on a sign-in.
PENDING_SESSION_KEY = "oauth_login_tickets"
# Session key holding the RFC 8176 `amr` values of the sign-in ("pwd", then "otp", "mfa" after a
# second factor: mfa/policy.py). Read by the authorization endpoint into codes and tokens.
AMR_SESSION_KEY = "amr"


def login_url(next_url: str, *, force: bool = False) -> str:
    params = {"next": next_url}
    if force:
        params[FORCE_PARAM] = FORCE_VALUE
    return reverse("login") + "?" + urlencode(params)


def login_redirect(
    request: HttpRequest, next_url: str, *, force: bool = False
) -> HttpResponseRedirect:
    """Send the visitor to the login page, which returns to `next_url` (a local path) after."""
    return HttpResponseRedirect(login_url(next_url, force=force))


def login_is_forced(request: HttpRequest) -> bool:
    source = request.POST if request.method == "POST" else request.GET
    return source.get(FORCE_PARAM) == FORCE_VALUE


def sign_in_carry(request: HttpRequest) -> dict:
    """Call before django.contrib.auth.login(): the session state that must survive it."""
    pending = request.session.get(PENDING_SESSION_KEY)
    return {PENDING_SESSION_KEY: pending} if isinstance(pending, dict) and pending else {}


def auth_time_record(
    request: HttpRequest,
    *,
    now: float | None = None,
    carried: dict | None = None,
    amr: list[str] | tuple[str, ...] = ("pwd",),
) -> int:
    """Call right after django.contrib.auth.login(): the password was checked just now.
    `carried`: what sign_in_carry took before login(). `amr`: the methods of this sign-in."""
    value = int(time.time() if now is None else now)
    request.session[AUTH_TIME_SESSION_KEY] = value
    request.session[SIGN_IN_ID_SESSION_KEY] = secrets.token_urlsafe(16)
    request.session[AMR_SESSION_KEY] = list(amr)
    for key, kept in (carried or {}).items():
        request.session[key] = kept
    return value


def auth_time(request: HttpRequest) -> int | None:
    """When the signed-in user last authenticated, or None (not signed in, or signed in some
    other way, e.g. the admin login, whose time we do not know)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    value = request.session.get(AUTH_TIME_SESSION_KEY)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def sign_in_id(request: HttpRequest) -> str | None:
    """The id of the signed-in user's last password check in this browser, or None."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    value = request.session.get(SIGN_IN_ID_SESSION_KEY)
    return value if isinstance(value, str) and value else None


def session_amr(request: HttpRequest) -> list[str]:
    """The `amr` of the signed-in user's sign-in in this browser ([] when not signed in; a
    sign-in recorded before amr was kept counts as a password sign-in)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    value = request.session.get(AMR_SESSION_KEY)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return ["pwd"] if auth_time(request) is not None else []
    return value


def session_amr_record(request: HttpRequest, amr: list[str]) -> None:
    """A second factor was presented by the signed-in user (step-up): new amr, new session key."""
    request.session[AMR_SESSION_KEY] = list(amr)
    request.session.cycle_key()
