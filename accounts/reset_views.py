"""The password reset pages: /password/forgot (ask for a link) and /password/reset (use it).

The mailed link is /password/reset?token=<token> (in the query string, which the access log never
records). Its GET changes nothing (mail scanners fetch links): it checks the link, keeps only the
token's digest in the browser's session and redirects to the token-less /password/reset, so the
token is not left in the address bar, the history or a Referer. The responses at the token's URL
(the redirect, the "link does not work" page) send Referrer-Policy: no-referrer. The pages with
forms keep the site's same-origin policy: under no-referrer a browser sends `Origin: null` with
the POST, which the CSRF check rightly refuses.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth import logout as session_logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts.forms import PasswordForgotForm, PasswordResetForm
from accounts.links import AccountLinkInvalid
from accounts.network import client_ip
from accounts.password_reset import (
    ResetThrottled,
    ResetUnavailable,
    password_reset_complete,
    password_reset_link_check,
    password_reset_request,
)
from accounts.services import PasswordRejected
from accounts.views import UNAVAILABLE_RETRY_AFTER, _wait_text
from authserver.pages import page_headers

SESSION_KEY = "password_reset_digest"
INVALID_TEXT = {
    "expired": gettext_lazy("This link has expired. Reset links work for a short time only."),
    "used": gettext_lazy("This link has already been used. Each reset link works once."),
    "ended": gettext_lazy(
        "This link no longer works: a newer link was sent, or the password was changed since."
    ),
    "unknown": gettext_lazy("This link is not valid. It may have been copied incompletely."),
}


def _no_referrer(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        return response

    return wrapped


def _invalid(request: HttpRequest, reason: str) -> HttpResponse:
    request.session.pop(SESSION_KEY, None)
    context = {"reason_text": INVALID_TEXT.get(reason, INVALID_TEXT["unknown"])}
    response = render(request, "accounts/password_reset_invalid.html", context, status=400)
    response["Referrer-Policy"] = "no-referrer"
    return response


def _forgot(request, form, *, error=None, status=200) -> HttpResponse:
    context = {"form": form, "error": error}
    return render(request, "accounts/password_forgot.html", context, status=status)


@csrf_protect
@page_headers
@require_http_methods(["GET", "HEAD", "POST"])
def password_forgot_page(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _forgot(request, PasswordForgotForm())
    form = PasswordForgotForm(request.POST)
    if not form.is_valid():
        return _forgot(request, form)
    try:
        password_reset_request(
            login=form.cleaned_data["login"],
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
    except ResetThrottled as exc:
        error = {
            "title": gettext("Too many reset requests."),
            "text": gettext(
                "Please wait %(wait)s before asking again. If a message is already on its way, "
                "it will still arrive."
            )
            % {"wait": _wait_text(exc.retry_after)},
        }
        response = _forgot(request, form, error=error, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except ResetUnavailable:
        error = {
            "title": gettext("Password reset is temporarily unavailable."),
            "text": gettext("This is a problem on our side. Please try again in a minute."),
        }
        response = _forgot(request, form, error=error, status=503)
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        return response
    # The same page whether or not an account matched (and no echo of what was typed).
    return render(request, "accounts/password_forgot_sent.html")


@_no_referrer
def _link_landing(request: HttpRequest, token: str) -> HttpResponse:
    try:
        link = password_reset_link_check(token=token)
    except AccountLinkInvalid as exc:
        return _invalid(request, exc.reason)
    request.session[SESSION_KEY] = link.digest
    return HttpResponseRedirect(reverse("password-reset"))


@sensitive_post_parameters("new_password1", "new_password2")
@csrf_protect
@page_headers
@require_http_methods(["GET", "HEAD", "POST"])
def password_reset_page(request: HttpRequest) -> HttpResponse:
    if request.method in ("GET", "HEAD") and "token" in request.GET:
        return _link_landing(request, request.GET.get("token", ""))
    digest = request.session.get(SESSION_KEY)
    if not isinstance(digest, str):
        return _invalid(request, "unknown")
    try:
        link = password_reset_link_check(digest=digest)
    except AccountLinkInvalid as exc:
        return _invalid(request, exc.reason)
    context = {"account": link.user.get_username()}
    if request.method != "POST":
        context["form"] = PasswordResetForm()
        return render(request, "accounts/password_reset.html", context)
    form = PasswordResetForm(request.POST)
    context["form"] = form
    if not form.is_valid():
        return render(request, "accounts/password_reset.html", context)
    try:
        password_reset_complete(
            digest=digest,
            password=form.cleaned_data["new_password1"],
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
    except AccountLinkInvalid as exc:
        return _invalid(request, exc.reason)
    except PasswordRejected as exc:
        for message in exc.messages:
            form.add_error("new_password1", message)
        return render(request, "accounts/password_reset.html", context)
    # Whoever was signed in in this browser is signed out too (the user's own sessions have
    # all ended already); the next step is a fresh sign-in with the new password.
    session_logout(request)
    return render(request, "accounts/password_reset_done.html")
