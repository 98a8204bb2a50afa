"""GET/POST /oauth/authorize (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2) and the consent
decision it may lead to (POST /oauth/authorize/decision).

The pipeline: authlib validates the request (client, redirect URI, response type, scope, PKCE,
plus oauth.grants.authorization_code's OpenID checks); then the user must be signed in recently
enough (prompt, max_age), then have approved the scopes (remembered consent, or a first-party
client), and then a code goes back to the redirect URI.

Errors about the client or the redirect URI are shown on a page and never redirect (RFC 6749
§4.1.2.1); every other error goes back to the verified redirect URI with `error` and `state`.

Forced sign-in (prompt=login, an exceeded max_age, an unknown sign-in time) must not loop: the
URL the login page returns to carries a `login_ticket`, signed with SECRET_KEY, that binds to
this exact request the sign-in time seen when the password was asked for. Back here, a sign-in
newer than that one satisfies the request.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from django.core import signing
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from accounts.login_flow import auth_time, login_redirect
from authserver.conf import get_config
from authserver.pages import page_headers
from oauth.consents import consent_covers, consent_deny_record, consent_grant
from oauth.models import Client
from oauth.protocol import FORM_MEDIA_TYPE
from oauth.scopes import scope_describe
from oauth.server import OAuthRequest, authorization_server
from tokens.browser import browser_session

TICKET_PARAM = "login_ticket"
TICKET_SALT = "oauth.authorize.login-ticket"
TICKET_MAX_AGE = 900
# The login page only returns to URLs shorter than this (accounts/views.py NEXT_MAX_LENGTH).
MAX_RESUME_URL_LENGTH = 4000
_FORM_FIELDS_NOT_FORWARDED = {TICKET_PARAM, "csrfmiddlewaretoken", "decision"}

_ERROR_PAGES = {
    "invalid_client": (
        "Unknown application",
        "The application that sent you here is not registered with authserver, or has been "
        "disabled. You have not been signed in to it.",
    ),
    "invalid_request": (
        "This sign-in link is not valid",
        "The application that sent you here made a request authserver cannot accept. You have "
        "not been signed in to it.",
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


def _ticket_time(params: QueryDict) -> int | None:
    """The sign-in time seen when a sign-in was asked for on behalf of exactly this request (0:
    none), if it carries a valid ticket (any problem: as if it carried none)."""
    raw = params.get(TICKET_PARAM)
    if not raw or len(raw) > 300:
        return None
    try:
        data = signing.loads(raw, salt=TICKET_SALT, max_age=TICKET_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("q") != _request_digest(_forwarded(params)):
        return None
    seen = data.get("a")
    return seen if isinstance(seen, int) else None


def _resume_url(params: QueryDict, signed_in_at: int | None) -> str:
    pairs = _forwarded(params)
    ticket = signing.dumps({"a": signed_in_at or 0, "q": _request_digest(pairs)}, salt=TICKET_SALT)
    return reverse("oauth:authorize") + "?" + urlencode([*pairs, (TICKET_PARAM, ticket)])


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
    context = {"title": title, "text": text, "detail": error.description or error.error}
    return render(request, "oauth/error.html", context, status=400)


def _login_needed(
    *, user, signed_in_at: int | None, prompts: frozenset, max_age: int | None, ticket_seen, now
) -> tuple[bool, bool]:
    """(must sign in, must type the password even though signed in)."""
    if user is None:
        return True, False
    if signed_in_at is None:
        return True, True  # signed in some other way (admin): when is unknown
    # Signed in again since the login page was asked to check the password for this request.
    fresh = ticket_seen is not None and signed_in_at > ticket_seen
    if prompts & {"login", "select_account"} and not fresh:
        return True, True
    if max_age is not None and now - signed_in_at > max_age and not fresh:
        return True, True
    return False, False


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


def _issue_code(grant, oauth_request: OAuthRequest, user, signed_in_at: int) -> HttpResponse:
    oauth_request.auth_time = signed_in_at
    # The code, and the grant its exchange starts, hang from this browser's sign-in.
    oauth_request.browser_session = browser_session(oauth_request.django_request)
    status, body, headers = grant.create_authorization_response(grant.redirect_uri, user)
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

    now = int(timezone.now().timestamp())
    signed_in_at = auth_time(request) if user else None
    prompts = oauth_request.prompts
    must_login, force = _login_needed(
        user=user,
        signed_in_at=signed_in_at,
        prompts=prompts,
        max_age=oauth_request.max_age,
        ticket_seen=_ticket_time(params),
        now=now,
    )
    if must_login:
        if "none" in prompts:
            error = LoginRequiredError(redirect_uri=grant.redirect_uri)
            return _error_response(request, error, state)
        resume = _resume_url(params, signed_in_at)
        if len(resume) > MAX_RESUME_URL_LENGTH:
            error = InvalidRequestError(
                "The authorization request is too long.", redirect_uri=grant.redirect_uri
            )
            return _error_response(request, error, state)
        return login_redirect(request, resume, force=force)

    client: Client = oauth_request.client
    scopes = (oauth_request.scope or "").split()
    if not client.skip_consent and (
        "consent" in prompts or not consent_covers(user=user, client=client, scopes=scopes)
    ):
        if "none" in prompts:
            error = ConsentRequiredError(redirect_uri=grant.redirect_uri)
            return _error_response(request, error, state)
        return _consent_page(request, client, scopes, params)
    return _issue_code(grant, oauth_request, user, signed_in_at)


@csrf_protect
@page_headers
@require_POST
def consent_decision(request: HttpRequest) -> HttpResponse:
    """The consent form's answer. The whole authorization request comes back in hidden fields
    and is validated again; CSRF protection makes sure the user, not a third site, answered."""
    params = request.POST
    oauth_request = OAuthRequest(request, params)
    state = params.get("state")
    user = _signed_in_user(request)
    grant = _validated_grant(request, oauth_request, user, state)
    if isinstance(grant, HttpResponse):
        return grant
    signed_in_at = auth_time(request) if user else None
    if user is None or signed_in_at is None:
        # Signed out (or the session expired) while the consent page was open.
        resume = _resume_url(params, signed_in_at)
        return login_redirect(request, resume, force=user is not None)
    client: Client = oauth_request.client
    scopes = (oauth_request.scope or "").split()
    if params.get("decision") != "allow":
        consent_deny_record(user=user, client=client, scopes=scopes, request=request)
        error = AccessDeniedError(
            description="The user denied the request.", redirect_uri=grant.redirect_uri
        )
        return _error_response(request, error, state)
    if not client.skip_consent:
        consent_grant(user=user, client=client, scopes=scopes, request=request)
    return _issue_code(grant, oauth_request, user, signed_in_at)
