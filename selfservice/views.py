"""The account pages at /account/: a signed-in person's profile, password, sessions, connected
apps, security log and account deletion. Server-rendered, no JavaScript, CSRF on every form.

Views parse forms, call selfservice.services / selectors and shape pages. Sensitive actions
(change password, end sessions, withdraw an app, delete the account) need a password typed within
AUTHSERVER_REAUTH_MAX_AGE seconds: otherwise the browser goes to the hosted login page in its
"Confirm it's you" mode (`prompt=login`), which comes back to the action's page (GET: the form or
a confirmation). Each action's POST also works straight from the list pages when the sign-in is
recent.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as session_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext, gettext_lazy, ngettext
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts.login_flow import auth_time_record, login_url, session_amr, sign_in_carry
from accounts.models import User
from accounts.services import LoginFailed, LoginThrottled, LoginUnavailable, PasswordRejected
from accounts.views import UNAVAILABLE_RETRY_AFTER, _wait_text
from authserver.conf import get_config
from authserver.languages import default_language, language_from_accept
from authserver.pages import page_headers
from selfservice import selectors, services
from selfservice.forms import DeleteAccountForm, LanguageForm, PasswordChangeForm, ProfileForm
from sessions.browser import browser_session

# The same words whatever the reason (wrong password, account locked): as on the login page.
WRONG_PASSWORD = gettext_lazy("That password is not right.")


def account_page(*methods: str) -> Callable:
    """Signed-in only (others go to the login page and come back), CSRF-checked, the hosted
    pages' headers (strict CSP, no caching), only `methods`."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                target = request.get_full_path() if request.method == "GET" else request.path
                return HttpResponseRedirect(login_url(target), status=303)
            return view(request, *args, **kwargs)

        return csrf_protect(page_headers(require_http_methods([*methods, "HEAD"])(wrapped)))

    return decorate


def recent_sign_in(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The password was typed within AUTHSERVER_REAUTH_MAX_AGE, or ask for it again and come
    back to this page (GET: its form or confirmation)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not selectors.sign_in_is_recent(request=request):
            return HttpResponseRedirect(login_url(request.path, force=True), status=303)
        return view(request, *args, **kwargs)

    return wrapped


def _render(request: HttpRequest, template: str, section: str, status: int = 200, **context):
    config = get_config()
    context.update(
        section=section,
        reauth_minutes=max(1, config.reauth_max_age // 60),
        audit_retention_days=ngettext(
            "%(count)d day", "%(count)d days", config.audit_retention_days
        )
        % {"count": config.audit_retention_days},
    )
    return render(request, f"selfservice/{template}", context, status=status)


def _password_error(exc: Exception) -> tuple[str, int, dict[str, str]]:
    """(message, status, headers) for a failed password check, as the login page says it."""
    if isinstance(exc, LoginThrottled):
        wait = _wait_text(exc.retry_after)
        return (
            gettext("Too many attempts. For your security, try again in %(wait)s.")
            % {"wait": wait},
            429,
            {"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, LoginUnavailable):
        return (
            gettext(
                "Checking your password is temporarily unavailable. Please try again in a minute."
            ),
            503,
            {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
        )
    return WRONG_PASSWORD, 200, {}


# --- Profile -----------------------------------------------------------------------------------


@account_page("GET", "POST")
def profile(request: HttpRequest) -> HttpResponse:
    user = request.user
    if request.method == "POST":
        form = ProfileForm(request.POST)
        if form.is_valid():
            changed = services.account_profile_update(
                user=user,
                first_name=form.cleaned_data["first_name"],
                last_name=form.cleaned_data["last_name"],
                request=request,
            )
            messages.success(
                request, gettext("Your name was saved.") if changed else gettext("Nothing changed.")
            )
            return HttpResponseRedirect(reverse("account:profile"), status=303)
    else:
        form = ProfileForm(initial={"first_name": user.first_name, "last_name": user.last_name})
    return _render(
        request,
        "profile.html",
        "profile",
        form=form,
        language_form=LanguageForm(initial={"language": user.language}),
        email_verified=getattr(user, "email_verified", None),
    )


@account_page("POST")
def language(request: HttpRequest) -> HttpResponse:
    """The language of the person's pages and emails (authserver/languages.py)."""
    form = LanguageForm(request.POST)
    if not form.is_valid():  # not one of the offered choices: a hand-made request
        return HttpResponseRedirect(reverse("account:profile"), status=303)
    chosen = form.cleaned_data["language"]
    changed = services.account_language_set(user=request.user, language=chosen, request=request)
    # The confirmation is read on the next page, which is in the chosen language.
    page_language = chosen or language_from_accept(request.META.get("HTTP_ACCEPT_LANGUAGE", ""))
    with translation.override(page_language or default_language()):
        messages.success(
            request, gettext("Your language was saved.") if changed else gettext("Nothing changed.")
        )
    return HttpResponseRedirect(reverse("account:profile") + "#language-heading", status=303)


# --- Password ----------------------------------------------------------------------------------


@sensitive_post_parameters("current_password", "new_password", "new_password_again")
@account_page("GET", "POST")
@recent_sign_in
def password_change(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render(request, "password.html", "password", form=PasswordChangeForm())
    form = PasswordChangeForm(request.POST)
    status, headers = 200, {}
    if form.is_valid():
        user = User.objects.get(pk=request.user.pk)
        try:
            ended = services.account_password_change(
                user=user,
                current_password=form.cleaned_data["current_password"],
                new_password=form.cleaned_data["new_password"],
                request=request,
            )
        except PasswordRejected as exc:
            for message in exc.messages:
                form.add_error("new_password", message)
        except (LoginFailed, LoginThrottled, LoginUnavailable) as exc:
            message, status, headers = _password_error(exc)
            form.add_error("current_password", message)
        else:
            # Every session ended with the change, this browser's too; it signs in again now,
            # after the change, so it stays signed in and its password check is fresh.
            carried = sign_in_carry(request)
            amr = session_amr(request) or ["pwd"]  # a second factor presented still counts
            session_login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
            auth_time_record(request, carried=carried, amr=amr)
            others = max(0, ended - 1)
            messages.success(
                request,
                ngettext(
                    "Your password was changed. %(count)d other session ended; apps you use "
                    "will ask you to sign in again.",
                    "Your password was changed. %(count)d other sessions ended; apps you use "
                    "will ask you to sign in again.",
                    others,
                )
                % {"count": others}
                if others
                else gettext(
                    "Your password was changed. Apps you use will ask you to sign in again."
                ),
            )
            return HttpResponseRedirect(reverse("account:password"), status=303)
    response = _render(request, "password.html", "password", status=status, form=form)
    for name, value in headers.items():
        response[name] = value
    return response


# --- Sessions ----------------------------------------------------------------------------------


@account_page("GET")
def sessions(request: HttpRequest) -> HttpResponse:
    rows = selectors.account_sessions(user=request.user, current=browser_session(request))
    return _render(
        request,
        "sessions.html",
        "sessions",
        rows=rows,
        others=sum(1 for row in rows if not row.current),
    )


@account_page("GET", "POST")
@recent_sign_in
def session_end(request: HttpRequest, session_id: str) -> HttpResponse:
    session = selectors.account_session_get(user=request.user, session_id=session_id)
    if session is None:
        raise Http404("no such session")
    current = browser_session(request)
    is_current = current is not None and current.pk == session.pk
    if request.method == "POST":
        services.account_session_end(user=request.user, session=session, request=request)
        if is_current:
            return HttpResponseRedirect(reverse("logout"), status=303)
        messages.success(request, gettext("The session was ended."))
        return HttpResponseRedirect(reverse("account:sessions"), status=303)
    row = next(
        (
            r
            for r in selectors.account_sessions(user=request.user, current=current)
            if r.id == str(session.pk)
        ),
        None,
    )
    return _render(request, "session_end.html", "sessions", row=row, is_current=is_current)


@account_page("GET", "POST")
@recent_sign_in
def sessions_end_others(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        ended = services.account_sessions_end_others(
            user=request.user, keep=browser_session(request), request=request
        )
        messages.success(
            request,
            ngettext(
                "%(count)d other session ended. You are still signed in here.",
                "%(count)d other sessions ended. You are still signed in here.",
                ended,
            )
            % {"count": ended},
        )
        return HttpResponseRedirect(reverse("account:sessions"), status=303)
    rows = selectors.account_sessions(user=request.user, current=browser_session(request))
    others = sum(1 for row in rows if not row.current)
    return _render(request, "sessions_end_others.html", "sessions", others=others)


# --- Connected apps ----------------------------------------------------------------------------


@account_page("GET")
def apps(request: HttpRequest) -> HttpResponse:
    return _render(
        request, "apps.html", "apps", apps=selectors.account_connected_apps(user=request.user)
    )


@account_page("GET", "POST")
@recent_sign_in
def app_withdraw(request: HttpRequest, client_id: str) -> HttpResponse:
    app = selectors.account_connected_app_get(user=request.user, client_id=client_id)
    if app is None:
        raise Http404("no such app")
    if request.method == "POST":
        services.account_app_withdraw(user=request.user, client_id=client_id, request=request)
        messages.success(
            request,
            gettext(
                "%(name)s can no longer use your account. It will ask for your permission again "
                "if you sign in to it."
            )
            % {"name": app.name},
        )
        return HttpResponseRedirect(reverse("account:apps"), status=303)
    return _render(request, "app_withdraw.html", "apps", app=app)


# --- Security log ------------------------------------------------------------------------------


@account_page("GET")
def activity(request: HttpRequest) -> HttpResponse:
    page = selectors.account_security_log(user=request.user, page_number=request.GET.get("page"))
    return _render(request, "activity.html", "activity", page=page)


# --- Delete ------------------------------------------------------------------------------------


@sensitive_post_parameters("password")
@account_page("GET", "POST")
@recent_sign_in
def delete(request: HttpRequest) -> HttpResponse:
    if not services.account_may_delete(user=request.user):
        return _render(request, "delete.html", "delete", status=403, refused=True)
    if request.method != "POST":
        return _render(request, "delete.html", "delete", form=DeleteAccountForm())
    form = DeleteAccountForm(request.POST)
    status, headers = 200, {}
    if form.is_valid():
        try:
            services.account_delete(
                user=User.objects.get(pk=request.user.pk),
                password=form.cleaned_data["password"],
                request=request,
            )
        except (LoginFailed, LoginThrottled, LoginUnavailable) as exc:
            message, status, headers = _password_error(exc)
            form.add_error("password", message)
        else:
            request.session.flush()
            return HttpResponseRedirect(reverse("account:deleted"), status=303)
    response = _render(request, "delete.html", "delete", status=status, form=form)
    for name, value in headers.items():
        response[name] = value
    return response


@page_headers
@require_http_methods(["GET", "HEAD"])
def deleted(request: HttpRequest) -> HttpResponse:
    return render(request, "selfservice/deleted.html")
