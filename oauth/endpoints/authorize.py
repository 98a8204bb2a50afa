"""GET/POST /oauth/authorize (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2) and the consent
decision it may lead to (POST /oauth/authorize/decision).

The pipeline: authlib validates the request (client, redirect URI, response type, scope, PKCE,
plus oauth.grants.authorization_code's OpenID checks); then the user must be signed in recently
enough (prompt, max_age), then have approved the scopes (remembered consent, or a first-party
client), and then a code goes back to the redirect URI.

Errors about the client or the redirect URI are shown on a page and never redirect (RFC 6749
§4.1.2.1); every other error goes back to the verified redirect URI with `error` and `state`.

Forced sign-in (prompt=login or select_account, max_age=0, an id_token_hint naming someone other
than the signed-in user) is proven by a login ticket (oauth.login_tickets): bound to this
request and to this browser's session, single use. A max_age above zero is checked against the
sign-in time whenever a code is issued, including after the consent page (a user who lingered
there past max_age signs in again).
"""

from __future__ import annotations

import enum
import hashlib
from urllib.parse import urlencode, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
)
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from accounts.login_flow import auth_time, login_redirect, session_amr
from authserver.conf import get_config
from authserver.pages import page_headers
from branding.selectors import brand_get
from mfa.flow import enrol_url, second_step_url
from mfa.policy import acr_demands_mfa, amr_is_mfa, user_must_enrol
from mfa.selectors import user_has_second_factor
from oauth.consents import consent_covers, consent_deny_record, consent_grant
from oauth.login_tickets import login_ticket_fresh, login_ticket_issue, login_ticket_spend
from oauth.models import Client
from oauth.protocol import FORM_MEDIA_TYPE
from oauth.scopes import scope_describe
from oauth.server import OAuthRequest, authorization_server
from sessions.browser import browser_session

TICKET_PARAM = "login_ticket"
# Satisfied only by a sign-in made for this request (OpenID Connect Core §3.1.2.1: max_age=0
# is prompt=login; select_account is served by the login page).
_FRESH_PROMPTS = frozenset({"login", "select_account"})
# The login page only returns to URLs shorter than this (accounts/views.py NEXT_MAX_LENGTH).
MAX_RESUME_URL_LENGTH = 4000
_FORM_FIELDS_NOT_FORWARDED = {TICKET_PARAM, "csrfmiddlewaretoken", "decision"}

_ERROR_PAGES = {
    "invalid_client": (
        gettext_lazy("Unknown application"),
        gettext_lazy(
            "The application that sent you here is not registered with %(brand)s, or has been "
            "disabled. You have not been signed in to it."
        ),
    ),
    "invalid_request": (
        gettext_lazy("This sign-in link is not valid"),
        gettext_lazy(
            "The application that sent you here made a request %(brand)s cannot accept. You "
            "have not been signed in to it."
        ),
    ),
}


# --- Parameters --------------------------------------------------------------------------------


def _request_parameters(request: HttpRequest) -> QueryDict | None:
    """GET: the query string. POST (OpenID Connect Core §3.1.2.1): the form body only."""
    if request.method == "GET":
        return request.GET
    media_type = request.content_type.split(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        return None
    try:
        return request.POST
    except Exception:  # noqa: BLE001 - too large, too many fields: not a request we can read
        return None


def _forwarded(params: QueryDict) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key in params
        if key not in _FORM_FIELDS_NOT_FORWARDED
        for value in params.getlist(key)
    ]


def _request_digest(pairs: list[tuple[str, str]]) -> str:
    return hashlib.sha256(urlencode(sorted(pairs)).encode()).hexdigest()[:32]


def _resume_url(params: QueryDict, ticket_id: str | None) -> str:
    pairs = _forwarded(params)
    if ticket_id:
        pairs.append((TICKET_PARAM, ticket_id))
    return reverse("oauth:authorize") + "?" + urlencode(pairs)


# --- Responses ---------------------------------------------------------------------------------


def _redirect(location: str) -> HttpResponse:
    # Not HttpResponseRedirect: native apps register private-use schemes it refuses.
    response = HttpResponse(status=302)
    response["Location"] = location
    return response


def _error_response(request: HttpRequest, error: OAuth2Error, state: str | None) -> HttpResponse:
    if error.redirect_uri:
        if state and not error.state:
            error.state = state
        params = [*error.get_body(), ("iss", get_config().issuer)]
        return _redirect(add_params_to_uri(error.redirect_uri, params))
    title, text = _ERROR_PAGES.get(error.error, _ERROR_PAGES["invalid_request"])
    text = str(text) % {"brand": brand_get().name}  # the brand is an argument, never a format
    context = {"title": title, "text": text, "detail": error.description or error.error}
    return render(request, "oauth/error.html", context, status=400)


class SignIn(enum.Enum):
    OK = "ok"
    LOGIN = "login"  # not signed in
    REAUTH = "reauth"  # signed in, but the password must be typed (again) for this request
    WRONG_USER = "wrong_user"  # signed in for this request, as someone id_token_hint does not name


def sign_in_state(
    *,
    user,
    signed_in_at: int | None,
    fresh: bool,
    prompts: frozenset,
    max_age: int | None,
    hint_sub: str | None,
    now: int,
) -> SignIn:
    """Whether the browser's sign-in satisfies the request (OpenID Connect Core §3.1.2.1).
    `fresh`: the password was typed in this browser since this request sent it to the login
    page (a valid login ticket)."""
    if user is None:
        return SignIn.LOGIN
    if hint_sub is not None and str(user.sub) != hint_sub:
        # The user just signed in for this request and is still not the hinted one: an answer
        # (login_required), not another round of the login page.
        return SignIn.WRONG_USER if fresh else SignIn.REAUTH
    if signed_in_at is None:
        return SignIn.REAUTH  # signed in some other way (admin): when is unknown
    if (prompts & _FRESH_PROMPTS or max_age == 0) and not fresh:
        return SignIn.REAUTH
    if max_age and now - signed_in_at > max_age:
        # No exemption for a fresh ticket: auth_time must satisfy max_age when the code is issued.
        return SignIn.REAUTH
    return SignIn.OK


def _signed_in_user(request: HttpRequest):
    user = request.user
    return user if user.is_authenticated and user.is_active else None


def _consent_page(request: HttpRequest, client: Client, scopes: list[str], params: QueryDict):
    fields = _forwarded(params)
    if params.get(TICKET_PARAM):
        fields.append((TICKET_PARAM, params[TICKET_PARAM]))
    redirect = urlsplit(params.get("redirect_uri", ""))
    context = {
        "client": client,
        "scopes": scope_describe(scopes),
        "fields": fields,
        # Where the answer goes: the host of a web app, the scheme of a native one.
        "destination": redirect.netloc or redirect.scheme,
    }
    return render(request, "oauth/consent.html", context)


def _issue_code(
    request: HttpRequest, grant, oauth_request: OAuthRequest, user, signed_in_at: int
) -> HttpResponse:
    oauth_request.auth_time = signed_in_at
    oauth_request.amr = session_amr(request)
    # The code, and the grant its exchange starts, hang from this browser's sign-in.
    oauth_request.browser_session = browser_session(oauth_request.django_request)
    status, body, headers = grant.create_authorization_response(grant.redirect_uri, user)
    login_ticket_spend(request=request, ticket_id=oauth_request.form.get(TICKET_PARAM))
    return authorization_server().handle_response(status, body, headers)


# --- Views -------------------------------------------------------------------------------------


def _validated_grant(request: HttpRequest, oauth_request, user, state):
    """authlib's validation of the authorization request: the grant, or the error response
    (an error page, or a redirect with `error` and `state` where RFC 6749 §4.1.2.1 allows it)."""
    try:
        return authorization_server().get_consent_grant(oauth_request, end_user=user)
    except OAuth2Error as error:
        return _error_response(request, error, state)
    except ValueError:
        # authlib refuses to build an error whose text would carry characters outside RFC
        # 6749's set; such a request is malformed, and shown as such (never redirected).
        return _error_response(request, InvalidRequestError(), None)


def _sign_in_gate(
    request: HttpRequest, params: QueryDict, oauth_request: OAuthRequest, grant, user, state
) -> HttpResponse | None:
    """None when the browser's sign-in satisfies the request; else the answer: the login page
    (with a new login ticket where a sign-in must be proven fresh) or a redirected error."""
    now = int(timezone.now().timestamp())
    signed_in_at = auth_time(request) if user else None
    prompts = oauth_request.prompts
    hint_sub = oauth_request.id_token_hint_sub
    ticket_id = params.get(TICKET_PARAM)
    digest = _request_digest(_forwarded(params))
    fresh = user is not None and login_ticket_fresh(
        request=request, ticket_id=ticket_id, request_digest=digest, now=now
    )
    verdict = sign_in_state(
        user=user,
        signed_in_at=signed_in_at,
        fresh=fresh,
        prompts=prompts,
        max_age=oauth_request.max_age,
        hint_sub=hint_sub,
        now=now,
    )
    if verdict is SignIn.OK:
        return _second_factor_gate(request, params, oauth_request, grant, user, state)
    other_user = user is not None and hint_sub is not None and str(user.sub) != hint_sub
    if verdict is SignIn.WRONG_USER or "none" in prompts:
        # OpenID Connect Core §3.1.2.6; a user who signed in for this request as someone the
        # hint does not name gets the same answer rather than the login page in a loop.
        login_ticket_spend(request=request, ticket_id=ticket_id)
        description = (
            "The signed-in user is not the one id_token_hint names." if other_user else None
        )
        error = LoginRequiredError(description=description, redirect_uri=grant.redirect_uri)
        return _error_response(request, error, state)
    # A ticket where the sign-in must be proven to come after this request. An anonymous
    # visitor without such a demand gets none (and so no session): any sign-in will do.
    needs_ticket = (
        user is not None
        or bool(prompts & _FRESH_PROMPTS)
        or oauth_request.max_age == 0
        or hint_sub is not None
    )
    new_ticket = (
        login_ticket_issue(request=request, request_digest=digest, now=now)
        if needs_ticket
        else None
    )
    resume = _resume_url(params, new_ticket)
    if len(resume) > MAX_RESUME_URL_LENGTH:
        error = InvalidRequestError(
            "The authorization request is too long.", redirect_uri=grant.redirect_uri
        )
        return _error_response(request, error, state)
    return login_redirect(request, resume, force=verdict is SignIn.REAUTH)


def _second_factor_gate(
    request: HttpRequest, params: QueryDict, oauth_request: OAuthRequest, grant, user, state
) -> HttpResponse | None:
    """None when the sign-in has the second factor this request needs: the client's "require
    MFA", `acr_values` naming only urn:authserver:acr:mfa (mfa/policy.py), or AUTHSERVER_MFA
    for this user. Otherwise the step-up page (or, for a user with no factor yet, the set-up
    page), which comes back here; prompt=none gets interaction_required instead."""
    client: Client = oauth_request.client
    needed = (
        client.require_mfa
        or acr_demands_mfa(oauth_request.payload.data.get("acr_values"))
        or user_must_enrol(user)
    )
    if not needed or amr_is_mfa(session_amr(request)):
        return None
    if "none" in oauth_request.prompts:
        error = InteractionRequiredError(
            description="A second factor is required.", redirect_uri=grant.redirect_uri
        )
        return _error_response(request, error, state)
    resume = _resume_url(params, params.get(TICKET_PARAM))
    if user_has_second_factor(user=user):
        return HttpResponseRedirect(second_step_url(resume, step_up=True))
    return HttpResponseRedirect(enrol_url(resume))


@csrf_exempt  # the client's page may POST the request (OpenID Connect Core §3.1.2.1)
@page_headers
@require_http_methods(["GET", "POST"])
def authorization_endpoint(request: HttpRequest) -> HttpResponse:
    params = _request_parameters(request)
    if params is None:
        error = InvalidRequestError("A POSTed authorization request must be form-encoded.")
        return _error_response(request, error, None)
    oauth_request = OAuthRequest(request, params)
    state = params.get("state")
    user = _signed_in_user(request)
    grant = _validated_grant(request, oauth_request, user, state)
    if isinstance(grant, HttpResponse):
        return grant
    gate = _sign_in_gate(request, params, oauth_request, grant, user, state)
    if gate is not None:
        return gate

    prompts = oauth_request.prompts
    client: Client = oauth_request.client
    scopes = (oauth_request.scope or "").split()
    if not client.skip_consent and (
        "consent" in prompts or not consent_covers(user=user, client=client, scopes=scopes)
    ):
        if "none" in prompts:
            error = ConsentRequiredError(redirect_uri=grant.redirect_uri)
            return _error_response(request, error, state)
        return _consent_page(request, client, scopes, params)
    return _issue_code(request, grant, oauth_request, user, auth_time(request))


@csrf_protect
@page_headers
@require_POST
def consent_decision(request: HttpRequest) -> HttpResponse:
    """The consent form's answer. The whole authorization request comes back in hidden fields
    and is validated again, the sign-in too (signed out, prompt=login without a fresh sign-in,
    max_age passed while the page was open: back to the login page); CSRF protection makes sure
    the user, not a third site, answered."""
    params = request.POST
    oauth_request = OAuthRequest(request, params)
    state = params.get("state")
    user = _signed_in_user(request)
    grant = _validated_grant(request, oauth_request, user, state)
    if isinstance(grant, HttpResponse):
        return grant
    gate = _sign_in_gate(request, params, oauth_request, grant, user, state)
    if gate is not None:
        return gate
    client: Client = oauth_request.client
    scopes = (oauth_request.scope or "").split()
    if params.get("decision") != "allow":
        consent_deny_record(user=user, client=client, scopes=scopes, request=request)
        login_ticket_spend(request=request, ticket_id=params.get(TICKET_PARAM))
        error = AccessDeniedError(
            description="The user denied the request.", redirect_uri=grant.redirect_uri
        )
        return _error_response(request, error, state)
    if not client.skip_consent:
        consent_grant(user=user, client=client, scopes=scopes, request=request)
    return _issue_code(request, grant, oauth_request, user, auth_time(request))
