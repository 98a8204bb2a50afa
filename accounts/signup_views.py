"""The sign-up, confirmation, invitation and change-of-address pages.

Server-rendered, no JavaScript, CSRF-protected, the hosted pages' frame. The rules are in
accounts/registration.py and accounts/verification.py; these views parse forms and pick pages.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy, ngettext
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts.forms import InviteAcceptForm, SignupForm
from accounts.network import client_ip
from accounts.registration import (
    InviteFailed,
    InviteUsernameTaken,
    SignupThrottled,
    SignupUnavailable,
    invite_accept,
    invite_check,
    registration_mode,
    signup_throttle,
    user_signup,
)
from accounts.verification import (
    EmailConfirmFailed,
    email_confirm,
    email_link_check,
)
from accounts.views import _wait_text
from authserver.conf import get_config
from authserver.pages import page_headers

LINK_PROBLEMS = {
    "invalid": (
        gettext_lazy("This link can’t be used"),
        gettext_lazy(
            "It may have expired, been used already, or been copied incompletely. Links in our "
            "messages work once and for a limited time."
        ),
    ),
    "taken": (
        gettext_lazy("This address is already in use"),
        gettext_lazy(
            "Another account confirmed this email address in the meantime, so it can’t be "
            "used here."
        ),
    ),
    "inactive": (
        gettext_lazy("This account is not active"),
        gettext_lazy(
            "The address can’t be confirmed for an account that was deactivated. Contact an "
            "administrator."
        ),
    ),
}


def _link_problem(request: HttpRequest, reason: str) -> HttpResponse:
    title, text = LINK_PROBLEMS.get(reason, LINK_PROBLEMS["invalid"])
    context = {"title": title, "text": text, "signup_open": registration_mode() == "open"}
    return render(request, "accounts/link_problem.html", context, status=400)


def password_hint() -> str:
    """One line from the configured validators (the minimum length, if one is set)."""
    from django.contrib.auth.password_validation import (
        MinimumLengthValidator,
        get_default_password_validators,
    )

    for validator in get_default_password_validators():
        if isinstance(validator, MinimumLengthValidator):
            return ngettext(
                "At least %(count)d character; not a common password and not like your "
                "username or address.",
                "At least %(count)d characters; not a common password and not like your "
                "username or address.",
                validator.min_length,
            ) % {"count": validator.min_length}
    return gettext("Not a common password and not like your username or address.")


def _unavailable(request: HttpRequest, form, domains, retry_after: int) -> HttpResponse:
    error = {
        "title": gettext("Sign-up is temporarily unavailable."),
        "text": gettext("This is a problem on our side. Please try again in a minute."),
    }
    context = {"form": form, "domains": domains, "error": error, "password_hint": password_hint()}
    response = render(request, "accounts/signup.html", context, status=503)
    response["Retry-After"] = str(retry_after)
    return response


def _require_open() -> None:
    if registration_mode() != "open":
        raise Http404


# --- Sign-up -----------------------------------------------------------------------------------


@sensitive_post_parameters("password1", "password2")
@csrf_protect
@page_headers
@require_http_methods(["GET", "HEAD", "POST"])
def signup_page(request: HttpRequest) -> HttpResponse:
    _require_open()
    domains = get_config().registration_email_domains
    if request.method != "POST":
        return render(
            request,
            "accounts/signup.html",
            {"form": SignupForm(), "domains": domains, "password_hint": password_hint()},
        )
    try:
        # Every submission counts, valid or not: the form's answers are not free to probe.
        signup_throttle(ip=client_ip(request))
    except SignupThrottled as exc:
        error = {
            "title": gettext("Too many sign-up attempts."),
            "text": gettext("Sign-up from your network is paused. Try again in %(wait)s.")
            % {"wait": _wait_text(exc.retry_after)},
        }
        response = render(
            request,
            "accounts/signup.html",
            {
                "form": SignupForm(),
                "domains": domains,
                "error": error,
                "password_hint": password_hint(),
            },
            status=429,
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    except SignupUnavailable as exc:
        return _unavailable(request, SignupForm(), domains, exc.retry_after)
    form = SignupForm(request.POST, allowed_domains=domains)
    if not form.is_valid():
        return render(
            request,
            "accounts/signup.html",
            {"form": form, "domains": domains, "password_hint": password_hint()},
        )
    try:
        user_signup(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
            request=request,
        )
    except SignupUnavailable as exc:
        return _unavailable(request, form, domains, exc.retry_after)
    # The same answer whatever happened (a new account, a known address, a taken name).
    return HttpResponseRedirect(reverse("signup_sent"), status=303)


@page_headers
@require_http_methods(["GET", "HEAD"])
def signup_sent_page(request: HttpRequest) -> HttpResponse:
    _require_open()
    hours = max(1, get_config().email_verify_link_seconds // 3600)
    return render(request, "accounts/signup_sent.html", {"hours": hours})


# --- Confirmation and invitation links ------------------------------------------------------
# The mailed link is /email/confirm?token=... (or /invite?token=...). Its GET changes nothing
# (mail scanners and link previews fetch links): it checks the token, keeps only its digest in
# the browser's session and redirects to the token-less address, so the token is left in no
# address bar, history, Referer or access log (which keeps paths, never query strings). The
# page's POST uses the link up.

CONFIRM_SESSION_KEY = "email_confirm_digest"
INVITE_SESSION_KEY = "invite_digest"


def _no_referrer(response: HttpResponse) -> HttpResponse:
    response["Referrer-Policy"] = "no-referrer"
    return response


def _digest_from_link(request: HttpRequest, key: str, check) -> str | HttpResponse:
    """On a GET with ?token=: check it, keep its digest in the session and redirect to the
    token-less page. Otherwise the digest kept in the session (or "" when there is none)."""
    token = request.GET.get("token")
    if request.method != "POST" and token is not None:
        digest = check(token)
        request.session[key] = digest
        return HttpResponseRedirect(request.path, status=303)
    digest = request.session.get(key)
    return digest if isinstance(digest, str) else ""


@csrf_protect
@page_headers
@require_http_methods(["GET", "HEAD", "POST"])
def email_confirm_page(request: HttpRequest) -> HttpResponse:
    try:
        found = _digest_from_link(
            request, CONFIRM_SESSION_KEY, lambda token: email_link_check(token=token).digest
        )
        if isinstance(found, HttpResponse):
            return _no_referrer(found)
        if request.method != "POST":
            pending = email_link_check(digest=found or None)
            return _no_referrer(
                render(request, "accounts/email_confirm.html", {"pending": pending})
            )
        result = email_confirm(digest=found, request=request)
    except EmailConfirmFailed as exc:
        return _no_referrer(_link_problem(request, exc.reason))
    request.session.pop(CONFIRM_SESSION_KEY, None)
    return _no_referrer(
        render(
            request,
            "accounts/email_confirmed.html",
            {"confirmed": result, "email": result.user.email},
        )
    )


@sensitive_post_parameters("password1", "password2")
@csrf_protect
@page_headers
@require_http_methods(["GET", "HEAD", "POST"])
def invite_accept_page(request: HttpRequest) -> HttpResponse:
    return _no_referrer(_invite_accept(request))


def _invite_accept(request: HttpRequest) -> HttpResponse:
    try:
        found = _digest_from_link(
            request, INVITE_SESSION_KEY, lambda token: invite_check(token=token)[1]
        )
        if isinstance(found, HttpResponse):
            return found
        email, digest = invite_check(digest=found or None)
    except InviteFailed as exc:
        return _link_problem(request, exc.reason)
    if request.method != "POST":
        form = InviteAcceptForm(email=email)
        return render(
            request,
            "accounts/invite_accept.html",
            {"form": form, "email": email, "password_hint": password_hint()},
        )
    form = InviteAcceptForm(request.POST, email=email)
    if form.is_valid():
        try:
            accepted = invite_accept(
                digest=digest,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                request=request,
            )
        except InviteFailed as exc:
            return _link_problem(request, exc.reason)
        except InviteUsernameTaken:
            # Only someone holding a live invitation gets this answer.
            form.add_error("username", gettext("This username is taken. Choose another."))
        except ValidationError as exc:
            for message in exc.messages:
                form.add_error("password1", message)
        except SignupUnavailable as exc:
            response = render(
                request,
                "accounts/invite_accept.html",
                {
                    "form": form,
                    "email": email,
                    "password_hint": password_hint(),
                    "error": {
                        "title": gettext("We’re busy right now."),
                        "text": gettext(
                            "Your invitation is still valid. Please try again in a moment."
                        ),
                    },
                },
                status=503,
            )
            response["Retry-After"] = str(exc.retry_after)
            return response
        else:
            request.session.pop(INVITE_SESSION_KEY, None)
            return render(
                request,
                "accounts/invite_done.html",
                {"username": accepted.user.get_username()},
            )
    return render(
        request,
        "accounts/invite_accept.html",
        {"form": form, "email": email, "password_hint": password_hint()},
    )
