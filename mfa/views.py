"""Pages of the second factor: the sign-in's second step (/login/mfa) and the account pages'
two-step verification section (/account/mfa...). Server-rendered, no JavaScript: the QR code is
an SVG drawn on the server (segno), with the secret beside it as text."""

from __future__ import annotations

from datetime import timedelta

import segno
from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts.login_flow import login_url, session_amr, session_amr_record
from accounts.models import User
from accounts.network import client_ip
from accounts.services import LoginThrottled, LoginUnavailable
from accounts.views import (
    UNAVAILABLE_RETRY_AFTER,
    _client_id_for_audit,
    _wait_text,
    safe_next_url,
    sign_in_complete,
)
from authserver.pages import page_headers
from mfa import selectors, services
from mfa.flow import enrol_url, second_step_clear, second_step_pending
from mfa.policy import amr_with, mfa_policy, user_must_enrol
from mfa.sealing import SecretUnavailable
from selfservice.views import _render, account_page, recent_sign_in

CODE_REFUSED = gettext_lazy("That code is not right, or it was already used.")
ENROL_REUSE_SECONDS = 600  # a reload of the set-up page shows the same secret for this long


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=services.MAX_CODE_LENGTH,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
        error_messages={"required": gettext_lazy("Enter the code.")},
    )


def _refusal(exc: Exception) -> tuple[str, int, dict[str, str]]:
    if isinstance(exc, LoginThrottled):
        return (
            gettext("Too many attempts. For your security, try again in %(wait)s.")
            % {"wait": _wait_text(exc.retry_after)},
            429,
            {"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, LoginUnavailable):
        return (
            gettext("Checking codes is temporarily unavailable. Please try again in a minute."),
            503,
            {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
        )
    return CODE_REFUSED, 200, {}


# --- The sign-in's second step -----------------------------------------------------------------


@sensitive_post_parameters("code")
@csrf_protect
@page_headers
@require_http_methods(["GET", "HEAD", "POST"])
def login_second_factor(request: HttpRequest) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    pending = second_step_pending(request)
    step_up = pending is None and source.get("step_up") == "1"
    if pending is not None:
        user = User.objects.filter(pk=pending["user"], is_active=True).first()
        next_url = safe_next_url(pending["next"])
    elif step_up and request.user.is_authenticated:
        user = request.user
        next_url = safe_next_url(source.get("next"))
    else:
        user, next_url = None, safe_next_url(source.get("next"))
    if user is None:
        # Nothing pending (expired, or never started): the password comes first.
        return HttpResponseRedirect(login_url(next_url or reverse("home")), status=303)
    methods = selectors.user_methods(user=user)
    if not methods:
        if step_up:
            return HttpResponseRedirect(enrol_url(next_url), status=303)
        second_step_clear(request)
        return HttpResponseRedirect(login_url(next_url or reverse("home")), status=303)

    form = CodeForm(request.POST if request.method == "POST" else None)
    status, headers, error = 200, {}, None
    if request.method == "POST" and form.is_valid():
        try:
            verified = services.second_factor_verify(
                user=user,
                response=form.cleaned_data["code"],
                ip=client_ip(request),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                client_id=_client_id_for_audit(next_url),
                via="step_up" if step_up else "hosted_login",
            )
        except (services.SecondFactorFailed, LoginThrottled, LoginUnavailable) as exc:
            error, status, headers = _refusal(exc)
        else:
            if step_up:
                session_amr_record(request, amr_with(session_amr(request), verified.amr))
            else:
                second_step_clear(request)
                sign_in_complete(request, user, amr=amr_with(["pwd"], verified.amr))
            return HttpResponseRedirect(next_url or reverse("home"), status=303)
    context = {
        "form": form,
        "error": error,
        "next_url": next_url or "",
        "step_up": step_up,
        "has_totp": selectors.TOTP in methods,
        "has_recovery": selectors.RECOVERY_CODE in methods,
        "has_passkey": selectors.PASSKEY in methods,
    }
    response = render(request, "accounts/login_mfa.html", context, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


# --- Account pages -----------------------------------------------------------------------------


@account_page("GET")
def overview(request: HttpRequest) -> HttpResponse:
    user = request.user
    return _render(
        request,
        "mfa_overview.html",
        "mfa",
        totp=selectors.user_totp_factor(user=user),
        passkeys=selectors.user_passkeys(user=user),
        recovery_left=selectors.recovery_codes_left(user=user),
        must_enrol=user_must_enrol(user),
        policy=mfa_policy(),
    )


def _qr_svg(uri: str) -> str:
    qr = segno.make(uri, error="m")
    return qr.svg_inline(scale=5, border=4, title=gettext("QR code for your authenticator app"))


def _secret_groups(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@sensitive_post_parameters("code")
@account_page("GET", "POST")
@recent_sign_in
def totp_enrol(request: HttpRequest) -> HttpResponse:
    user = request.user
    next_url = safe_next_url(
        (request.POST if request.method == "POST" else request.GET).get("next")
    )
    factor = services.totp_enrolment_pending(user=user)
    fresh = factor is not None and timezone.now() - factor.created_at < timedelta(
        seconds=ENROL_REUSE_SECONDS
    )
    form = CodeForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST" and factor is not None and fresh and form.is_valid():
        codes = services.totp_enrolment_confirm(
            factor=factor, code=form.cleaned_data["code"], request=request
        )
        if codes is not None:
            # Typing a code from the app is presenting it: this sign-in now has two factors.
            session_amr_record(request, amr_with(session_amr(request), "otp"))
            return _render(
                request,
                "mfa_recovery_codes.html",
                "mfa",
                codes=codes,
                enrolled=True,
                next_url=next_url or "",
            )
        form.add_error("code", CODE_REFUSED)
    try:
        if factor is None or not fresh:
            factor, secret = services.totp_enrolment_begin(user=user)
            if request.method == "POST":
                form = CodeForm()
                form.add_error(
                    "code",
                    gettext(
                        "The set-up took too long. Add this new key to your app and try again."
                    ),
                )
        else:
            secret = services.factor_secret(factor)
    except SecretUnavailable:
        factor, secret = services.totp_enrolment_begin(user=user)
    uri = services.totp_provisioning_uri(user=user, secret=secret)
    return _render(
        request,
        "mfa_totp_enrol.html",
        "mfa",
        status=status,
        form=form,
        qr_svg=mark_safe(_qr_svg(uri)),  # noqa: S308 - segno's own SVG of our own URI
        secret=_secret_groups(secret),
        replacing=selectors.user_totp_factor(user=user) is not None,
        must_enrol=user_must_enrol(user) and not selectors.user_has_second_factor(user=user),
        next_url=next_url or "",
    )


@account_page("GET", "POST")
@recent_sign_in
def recovery_codes(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not selectors.user_has_second_factor(user=user):
        return HttpResponseRedirect(reverse("account:mfa"), status=303)
    if request.method == "POST":
        codes = services.recovery_codes_generate(user=user, request=request)
        return _render(request, "mfa_recovery_codes.html", "mfa", codes=codes, enrolled=False)
    return _render(
        request,
        "mfa_recovery_confirm.html",
        "mfa",
        recovery_left=selectors.recovery_codes_left(user=user),
    )


@account_page("GET", "POST")
@recent_sign_in
def remove(request: HttpRequest) -> HttpResponse:
    user = request.user
    if request.method == "POST":
        services.second_factors_remove(user=user, request=request)
        messages.success(
            request,
            gettext(
                "Two-step verification is off: your password alone signs you in. You will be "
                "asked to set it up again at your next sign-in."
            )
            if user_must_enrol(user)
            else gettext("Two-step verification is off: your password alone signs you in."),
        )
        return HttpResponseRedirect(reverse("account:mfa"), status=303)
    return _render(request, "mfa_remove.html", "mfa", must_enrol=user_must_enrol(user))
