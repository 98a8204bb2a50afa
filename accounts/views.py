"""The hosted pages: sign in, sign out, and the small page a signed-in visitor lands on.

They parse the form, call accounts.services.user_authenticate (which owns the throttle, the
lockout and the audit trail) and shape the page. Server-rendered, no JavaScript.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth import login as session_login
from django.contrib.auth import logout as session_logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, gettext_noop, ngettext
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts.forms import LoginForm
from accounts.login_flow import auth_time_record, login_is_forced, login_url, sign_in_carry
from accounts.network import client_ip
from accounts.services import (
    LoginBusy,
    LoginFailed,
    LoginThrottled,
    LoginUnavailable,
    user_authenticate,
)
from audit.events import EventType
from audit.services import audit_event_record
from authserver.conf import get_config
from authserver.pages import page_headers
from mfa.flow import enrol_url, second_step_start
from mfa.policy import user_must_enrol
from mfa.selectors import user_methods

# One message for an unknown name, a wrong password, an inactive and a locked account: the page
# must not tell an attacker which accounts exist or which are locked. In English here, translated
# where shown.
LOGIN_FAILED_MESSAGE = gettext_noop("We couldn’t sign you in with that username and password.")
LOGIN_FAILED_HINT = gettext_noop(
    "Check both and try again. After several failed attempts, sign-in is paused for a while."
)
# Seconds a client should wait when the throttle/lockout store is down (503).
UNAVAILABLE_RETRY_AFTER = 60
# A `next` longer than this is not a URL we produced (authorize requests are far shorter).
NEXT_MAX_LENGTH = 4096


def safe_next_url(raw: str | None) -> str | None:
    """`raw` if it is a path on this site ("/..."), else None.

    Only same-origin relative paths pass: no scheme (`javascript:`, `https:`), no host
    (`//evil`, `/\\evil`, which browsers read as `//evil`), no control characters (header
    injection, and browsers strip tabs and newlines, turning `/\\t/evil` into `//evil`).
    """
    if not raw or len(raw) > NEXT_MAX_LENGTH or not raw.startswith("/"):
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        return None
    if raw.startswith(("//", "/\\")):
        return None
    if not url_has_allowed_host_and_scheme(raw, allowed_hosts=set()):
        return None
    return raw


def _client_id_for_audit(next_url: str | None) -> str:
    # The client on whose behalf the user signs in, when the login interrupts an authorization
    # request. Only a label for the audit trail (which sanitises and truncates it).
    if not next_url:
        return ""
    values = parse_qs(urlsplit(next_url).query).get("client_id")
    return values[0][:200] if values else ""


def _app_name(next_url: str | None) -> str:
    """The name of the app whose authorization request the login interrupts (its `next`), for
    the page to say where the user is going; empty for any other destination."""
    if not next_url or urlsplit(next_url).path != reverse("oauth:authorize"):
        return ""
    from oauth.clients import client_get  # the hosted pages do not otherwise need oauth

    client = client_get(client_id=_client_id_for_audit(next_url))
    return client.name if client is not None else ""


def _wait_text(seconds: int) -> str:
    """ "42 seconds", "3 minutes", in the page's language."""
    if seconds < 60:
        return ngettext("%(count)d second", "%(count)d seconds", seconds) % {"count": seconds}
    minutes = math.ceil(seconds / 60)
    return ngettext("%(count)d minute", "%(count)d minutes", minutes) % {"count": minutes}


def _render_login(
    request: HttpRequest,
    form: LoginForm,
    *,
    next_url: str | None,
    force: bool,
    error: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "form": form,
        "next_url": next_url or "",
        "app_name": _app_name(next_url),
        "force": force,
        "error": error,
        "reauth_user": request.user if force and request.user.is_authenticated else None,
        "signup_open": get_config().registration == "open",
    }
    return render(request, "accounts/login.html", context, status=status)


@sensitive_post_parameters("password")
@csrf_protect
@page_headers
@require_http_methods(["GET", "HEAD", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    next_url = safe_next_url(source.get("next"))
    force = login_is_forced(request)
    destination = next_url or reverse("home")

    if request.method != "POST":
        if request.user.is_authenticated and not force:
            return HttpResponseRedirect(destination)
        initial = {"username": request.user.get_username()} if force and request.user.pk else {}
        return _render_login(request, LoginForm(initial=initial), next_url=next_url, force=force)

    form = LoginForm(request.POST)
    if not form.is_valid():
        return _render_login(request, form, next_url=next_url, force=force)
    try:
        user = user_authenticate(
            login=form.cleaned_data["username"],
            password=form.cleaned_data["password"],
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            client_id=_client_id_for_audit(next_url),
        )
    except LoginFailed:
        error = {"title": gettext(LOGIN_FAILED_MESSAGE), "text": gettext(LOGIN_FAILED_HINT)}
        return _render_login(request, form, next_url=next_url, force=force, error=error)
    except LoginThrottled as exc:
        error = {
            "title": gettext("Too many sign-in attempts."),
            "text": gettext("For your security, sign-in is paused. Try again in %(wait)s.")
            % {"wait": _wait_text(exc.retry_after)},
        }
        response = _render_login(
            request, form, next_url=next_url, force=force, error=error, status=429
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    except LoginBusy as exc:
        error = {
            "title": gettext("Sign-in is busy right now."),
            "text": gettext(
                "Too many people are signing in at this moment. Please try again in a few seconds."
            ),
        }
        response = _render_login(
            request, form, next_url=next_url, force=force, error=error, status=503
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    except LoginUnavailable:
        error = {
            "title": gettext("Sign-in is temporarily unavailable."),
            "text": gettext("This is a problem on our side. Please try again in a minute."),
        }
        response = _render_login(
            request, form, next_url=next_url, force=force, error=error, status=503
        )
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        return response

    methods = user_methods(user=user)
    if methods:
        # A second factor is enrolled: the sign-in completes only on the second step's page.
        return second_step_start(request, user=user, next_url=next_url, force=force)
    sign_in_complete(request, user, amr=["pwd"])
    if user_must_enrol(user):
        # AUTHSERVER_MFA asks this account for a second factor: set one up first.
        return HttpResponseRedirect(enrol_url(destination))
    return HttpResponseRedirect(destination)


def sign_in_complete(request: HttpRequest, user, *, amr: list[str]) -> None:
    """Sign the browser in as `user`, who has just presented the methods `amr`."""
    carried = sign_in_carry(request)  # pending authorization requests survive a change of user
    if request.user.is_authenticated and request.user.pk != user.pk:
        # Another account was signed in here: end that sign-in (and what it approved) rather
        # than let login() silently drop the browser's reference to it.
        session_logout(request)
    # The session key is rotated at every sign-in and the browser's Session row started or
    # renewed (sessions/browser.py). The password was checked by user_authenticate above, so the
    # sign-in is attributed to the configured backend (which would run the same service)
    # without a second check.
    session_login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    # OpenID Connect auth_time: when the user last typed their password (max_age, prompt=login).
    auth_time_record(request, carried=carried, amr=amr)


@csrf_protect
@page_headers
@require_http_methods(["GET", "HEAD", "POST"])
def logout_page(request: HttpRequest) -> HttpResponse:
    """GET asks for confirmation and changes nothing; only the POST signs out."""
    if request.method == "POST":
        if request.user.is_authenticated:
            audit_event_record(
                event=EventType.LOGOUT,
                user=request.user,
                request=request,
                details={"via": "hosted_logout"},
            )
        session_logout(request)
        # Post/Redirect/Get: a reload does not re-submit the form.
        return HttpResponseRedirect(reverse("logout"), status=303)
    return render(request, "accounts/logout.html")


@page_headers
@require_http_methods(["GET", "HEAD"])
def home_page(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return HttpResponseRedirect(login_url(request.get_full_path()))
    return render(request, "accounts/home.html")
