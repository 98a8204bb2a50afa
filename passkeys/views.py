"""Passkey endpoints and pages (README "Passkeys").

JSON: the WebAuthn options the page script (static passkeys/passkey.js) hands to the browser,
POST only, CSRF-checked, never cached. Pages and form posts: the browser's answer comes back in
an ordinary form post (field `credential`), so the result is an ordinary page or redirect and
every message is server-rendered. Without JavaScript the passkey buttons stay hidden and the
password path is untouched.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from accounts.forms import LoginForm
from accounts.login_flow import login_is_forced, session_amr, session_amr_record
from accounts.models import User
from accounts.network import client_ip
from accounts.services import LoginThrottled, LoginUnavailable
from accounts.views import (
    UNAVAILABLE_RETRY_AFTER,
    _client_id_for_audit,
    _render_login,
    _wait_text,
    safe_next_url,
    sign_in_complete,
)
from authserver.counters import CacheUnavailable
from authserver.pages import page_headers
from mfa import selectors as mfa_selectors
from mfa import services as mfa_services
from mfa.flow import second_step_clear, second_step_pending
from mfa.policy import amr_with
from mfa.views import CodeForm
from passkeys import ceremony, services
from passkeys.models import Passkey
from selfservice.selectors import sign_in_is_recent
from selfservice.views import _render, account_page, recent_sign_in


def _json(data: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status)
    add_never_cache_headers(response)
    return response


def _unavailable() -> JsonResponse:
    response = _json(
        {
            "error": "temporarily_unavailable",
            "error_description": gettext("Try again in a minute."),
        },
        503,
    )
    response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    return response


# Sign-in options (a challenge kept in the shared cache, often a new session row) are cheap but
# not free: at most services.OPTIONS_PER_IP_PER_MINUTE per client IP and minute.
def _options_throttled(request: HttpRequest) -> JsonResponse | None:
    retry_after = services.passkey_options_retry_after(ip=client_ip(request))
    if retry_after is None:
        return None
    response = _json(
        {
            "error": "slow_down",
            "error_description": gettext("Too many passkey requests; wait a minute."),
        },
        429,
    )
    response["Retry-After"] = str(retry_after)
    return response


class NameForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=services.NAME_MAX_LENGTH,
        required=False,
        strip=True,
        help_text=gettext_lazy(
            "So you can tell your passkeys apart, e.g. “Work laptop” or “Blue key”."
        ),
    )


# --- Account pages: register, rename, remove ---------------------------------------------------


@account_page("POST")
def register_options(request: HttpRequest) -> HttpResponse:
    if not sign_in_is_recent(request=request):
        return _json(
            {
                "error": "reauthentication_required",
                "error_description": gettext("Sign in again first."),
            },
            403,
        )
    try:
        options = ceremony.registration_options(
            user=request.user, binding=ceremony.session_binding(request)
        )
    except CacheUnavailable:
        return _unavailable()
    return _json(options)


@account_page("GET", "POST")
@recent_sign_in
def add(request: HttpRequest) -> HttpResponse:
    form = NameForm(request.POST if request.method == "POST" else None)
    error, status = None, 200
    if request.method == "POST" and form.is_valid():
        first = not mfa_selectors.user_has_second_factor(user=request.user)
        try:
            passkey = services.passkey_register(
                user=request.user,
                credential_json=request.POST.get("credential", ""),
                binding=ceremony.session_binding(request),
                name=form.cleaned_data["name"],
                request=request,
            )
        except ceremony.PasskeyRefused as exc:
            error, status = str(exc), 400
        except CacheUnavailable:
            error = gettext("Adding a passkey is temporarily unavailable. Try again soon.")
            status = 503
        else:
            messages.success(
                request, gettext("Your passkey “%(name)s” was added.") % {"name": passkey.name}
            )
            if first:
                # The account's first second factor: recovery codes, shown once, as for TOTP,
                # so losing the passkey does not lock its owner out. The passkey's notice
                # covers them (one mail, not two).
                codes = mfa_services.recovery_codes_generate(
                    user=request.user, request=request, notify=False
                )
                return _render(
                    request, "mfa_recovery_codes.html", "mfa", codes=codes, enrolled=True
                )
            return HttpResponseRedirect(reverse("account:mfa"), status=303)
    return _render(request, "passkey_add.html", "mfa", status=status, form=form, error=error)


def _own_passkey(request: HttpRequest, passkey_id) -> Passkey:
    passkey = Passkey.objects.filter(pk=passkey_id, user=request.user).first()
    if passkey is None:
        raise Http404("no such passkey")
    return passkey


@account_page("GET", "POST")
def rename(request: HttpRequest, passkey_id) -> HttpResponse:
    passkey = _own_passkey(request, passkey_id)
    if request.method == "POST":
        form = NameForm(request.POST)
        if form.is_valid():
            services.passkey_rename(passkey=passkey, name=form.cleaned_data["name"])
            messages.success(
                request,
                gettext("Your passkey is now called “%(name)s”.") % {"name": passkey.name},
            )
            return HttpResponseRedirect(reverse("account:mfa"), status=303)
    else:
        form = NameForm(initial={"name": passkey.name})
    return _render(request, "passkey_rename.html", "mfa", form=form, passkey=passkey)


@account_page("GET", "POST")
@recent_sign_in
def remove(request: HttpRequest, passkey_id) -> HttpResponse:
    passkey = _own_passkey(request, passkey_id)
    if request.method == "POST":
        services.passkey_remove(passkey=passkey, request=request)
        messages.success(
            request, gettext("Your passkey “%(name)s” was removed.") % {"name": passkey.name}
        )
        return HttpResponseRedirect(reverse("account:mfa"), status=303)
    return _render(request, "passkey_remove.html", "mfa", passkey=passkey)


# --- Passwordless sign-in ------------------------------------------------------------------------


@csrf_protect
@require_http_methods(["POST"])
def sign_in_options(request: HttpRequest) -> HttpResponse:
    try:
        if (throttled := _options_throttled(request)) is not None:
            return throttled
        options = ceremony.authentication_options(
            purpose=ceremony.PASSWORDLESS, binding=ceremony.session_binding(request)
        )
    except CacheUnavailable:
        return _unavailable()
    return _json(options)


@csrf_protect
@page_headers
@require_http_methods(["POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    next_url = safe_next_url(request.POST.get("next"))
    force = login_is_forced(request)
    try:
        result = services.passkey_sign_in(
            credential_json=request.POST.get("credential", ""),
            binding=ceremony.session_binding(request),
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            client_id=_client_id_for_audit(next_url),
        )
    except services.PasskeySignInFailed as exc:
        error = {
            "title": gettext("We couldn’t sign you in with that passkey."),
            "text": str(exc),
        }
        return _render_login(
            request, LoginForm(), next_url=next_url, force=force, error=error, status=400
        )
    except LoginThrottled as exc:
        error = {
            "title": gettext("Too many sign-in attempts."),
            "text": gettext("For your security, sign-in is paused. Try again in %(wait)s.")
            % {"wait": _wait_text(exc.retry_after)},
        }
        response = _render_login(
            request, LoginForm(), next_url=next_url, force=force, error=error, status=429
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    except LoginUnavailable:
        error = {
            "title": gettext("Sign-in is temporarily unavailable."),
            "text": gettext("This is a problem on our side. Please try again in a minute."),
        }
        response = _render_login(
            request, LoginForm(), next_url=next_url, force=force, error=error, status=503
        )
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        return response
    second_step_clear(request)
    sign_in_complete(request, result.user, amr=result.amr)
    return HttpResponseRedirect(next_url or reverse("home"), status=303)


# --- The second step: a passkey instead of a code ----------------------------------------------


def _second_step_user(request: HttpRequest):
    """(user, next_url, step_up) of the sign-in waiting on a second factor, or (None, ...)."""
    source = request.POST
    pending = second_step_pending(request)
    if pending is not None:
        user = User.objects.filter(pk=pending["user"], is_active=True).first()
        return user, safe_next_url(pending["next"]), False
    if source.get("step_up") == "1" and request.user.is_authenticated:
        return request.user, safe_next_url(source.get("next")), True
    return None, safe_next_url(source.get("next")), False


@csrf_protect
@require_http_methods(["POST"])
def second_factor_options(request: HttpRequest) -> HttpResponse:
    user, _, _ = _second_step_user(request)
    if user is None:
        return _json(
            {
                "error": "no_pending_sign_in",
                "error_description": gettext("Sign in with a password first."),
            },
            400,
        )
    try:
        if (throttled := _options_throttled(request)) is not None:
            return throttled
        options = ceremony.authentication_options(
            purpose=ceremony.SECOND_FACTOR, binding=ceremony.session_binding(request), user=user
        )
    except CacheUnavailable:
        return _unavailable()
    return _json(options)


@csrf_protect
@page_headers
@require_http_methods(["POST"])
def second_factor(request: HttpRequest) -> HttpResponse:
    user, next_url, step_up = _second_step_user(request)
    if user is None:
        return HttpResponseRedirect(reverse("login"), status=303)
    try:
        verified = mfa_services.second_factor_verify(
            user=user,
            response=mfa_services.passkey_response(
                credential_json=request.POST.get("credential", ""),
                binding=ceremony.session_binding(request),
            ),
            method=mfa_selectors.PASSKEY,
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            client_id=_client_id_for_audit(next_url),
            via="step_up" if step_up else "hosted_login",
        )
    except mfa_services.SecondFactorFailed as exc:
        error = ceremony.REASONS.get(exc.reason, ceremony.REASONS["invalid"])
        return _second_step_page(request, user, next_url, step_up, error, 400, {})
    except LoginThrottled as exc:
        error = gettext("Too many attempts. For your security, try again in %(wait)s.") % {
            "wait": _wait_text(exc.retry_after)
        }
        return _second_step_page(
            request, user, next_url, step_up, error, 429, {"Retry-After": str(exc.retry_after)}
        )
    except LoginUnavailable:
        error = gettext(
            "Checking passkeys is temporarily unavailable. Please try again in a minute."
        )
        return _second_step_page(
            request,
            user,
            next_url,
            step_up,
            error,
            503,
            {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
        )
    if step_up:
        session_amr_record(request, amr_with(session_amr(request), verified.amr))
    else:
        second_step_clear(request)
        sign_in_complete(request, user, amr=amr_with(["pwd"], verified.amr))
    return HttpResponseRedirect(next_url or reverse("home"), status=303)


def _second_step_page(request, user, next_url, step_up, error, status, headers) -> HttpResponse:
    methods = mfa_selectors.user_methods(user=user)
    context = {
        "form": CodeForm(),
        "passkey_error": error,
        "next_url": next_url or "",
        "step_up": step_up,
        "has_totp": mfa_selectors.TOTP in methods,
        "has_recovery": mfa_selectors.RECOVERY_CODE in methods,
        "has_passkey": mfa_selectors.PASSKEY in methods,
    }
    response = render(request, "accounts/login_mfa.html", context, status=status)
    for name, value in headers.items():
        response[name] = value
    return response
