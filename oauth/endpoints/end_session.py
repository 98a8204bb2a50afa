"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): /oauth/end-session.

GET or POST from the relying party shows a confirmation page and changes nothing; the user's
POST to /oauth/end-session/confirm (CSRF-protected) signs the browser out of authserver, which
ends its sign-in and every grant that sign-in approved, and returns to the client's registered
post_logout_redirect_uri with `state`. "Stay signed in" (decision=stay) keeps the authserver
sign-in, ends only the app's hinted session, and returns to the app the same way. A
post_logout_redirect_uri that is not registered for the client identified by id_token_hint or
client_id is never redirected to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.common.urls import add_params_to_uri
from django.contrib.auth import logout as browser_logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from audit.events import EventType
from audit.services import audit_event_record
from authserver.pages import page_headers
from branding.selectors import brand_get
from oauth.clients import client_get
from oauth.models import Client
from oauth.oidc import id_token_hint_verify
from sessions.browser import browser_session
from sessions.models import Session
from sessions.services import session_revoke

# The confirmation page's second button: keep the authserver sign-in, go back to the app.
STAY = "stay"
_PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")
MAX_STATE_LENGTH = 2048


class EndSessionError(Exception):
    pass


@dataclass(frozen=True)
class EndSessionRequest:
    client: Client | None
    redirect_uri: str | None
    state: str
    hint: dict[str, Any] | None


def _parse(params: QueryDict) -> EndSessionRequest:
    for name in _PARAMETERS:
        if len(params.getlist(name)) > 1:
            raise EndSessionError(f"The {name} parameter must not be repeated.")
    hint = None
    raw_hint = params.get("id_token_hint")
    if raw_hint:
        hint = id_token_hint_verify(raw_hint)
        if hint is None:
            raise EndSessionError("The id_token_hint is not an ID token issued by authserver.")
    client_id = params.get("client_id") or None
    if hint is not None:
        audience = hint["aud"] if isinstance(hint["aud"], list) else [hint["aud"]]
        if client_id is not None and client_id not in audience:
            raise EndSessionError("client_id does not match the id_token_hint.")
        client_id = client_id or hint.get("azp") or audience[0]
    client = client_get(client_id=client_id) if client_id else None
    if client_id and client is None:
        raise EndSessionError("The application is not registered with authserver.")
    redirect_uri = params.get("post_logout_redirect_uri") or None
    if redirect_uri is not None:
        if client is None:
            raise EndSessionError(
                "A post_logout_redirect_uri needs id_token_hint or client_id to name the app."
            )
        if redirect_uri not in client.post_logout_redirect_uri_list:
            raise EndSessionError("The post_logout_redirect_uri is not registered for this app.")
    state = params.get("state", "")
    if len(state) > MAX_STATE_LENGTH or any(ord(ch) < 0x20 for ch in state):
        raise EndSessionError("The state parameter is not acceptable.")
    return EndSessionRequest(client=client, redirect_uri=redirect_uri, state=state, hint=hint)


def _hint_session(parsed: EndSessionRequest) -> Session | None:
    sid = (parsed.hint or {}).get("sid")
    if not isinstance(sid, str) or parsed.client is None:
        return None
    try:
        session = Session.objects.select_related("user").filter(pk=sid).first()
    except (ValueError, TypeError):
        return None
    if session is None or session.client_id != parsed.client.client_id:
        return None
    if session.user.sub != parsed.hint.get("sub"):
        return None
    return session


def _finish(parsed: EndSessionRequest) -> HttpResponse:
    if parsed.redirect_uri:
        params = [("state", parsed.state)] if parsed.state else []
        response = HttpResponse(status=302)
        response["Location"] = add_params_to_uri(parsed.redirect_uri, params)
        return response
    return HttpResponseRedirect(reverse("logout"))  # "You're signed out"


def _stay(request, parsed: EndSessionRequest, user, signed_in, session) -> HttpResponse:
    """ "Stay signed in": the browser keeps its authserver sign-in, the app's own sign-in (the
    hinted session, when this browser's sign-in approved it) ends as the app asked, and the
    browser goes back to the app, which already signed the user out, with `state`; without a
    registered post-logout URI, to the signed-in page."""
    own = session is not None and signed_in is not None and session.parent_id == signed_in.pk
    if user is not None:
        if own:
            session_revoke(session=session, reason=Session.RevokeReason.LOGOUT)
        audit_event_record(
            event=EventType.OIDC_LOGOUT,
            user=user,
            client_id=parsed.client.client_id if parsed.client else "",
            session_id=session.id if own else None,
            request=request,
            details={"browser_session": False, "session_revoked": own},
        )
    if parsed.redirect_uri:
        return _finish(parsed)
    return HttpResponseRedirect(reverse("home"))


def _error_page(request: HttpRequest, message: str) -> HttpResponse:
    context = {
        "title": gettext("This sign-out link is not valid"),
        "text": gettext(
            "The application that sent you here asked for something %(brand)s cannot do, so you "
            "were not sent back to it. You can still sign out of %(brand)s."
        )
        % {"brand": brand_get().name},
        "detail": message,
        "offer_logout": True,
    }
    return render(request, "oauth/error.html", context, status=400)


def _fields(params: QueryDict) -> list[tuple[str, str]]:
    return [(name, params[name]) for name in _PARAMETERS if params.get(name)]


@csrf_exempt  # the relying party may POST the request; nothing changes until the user confirms
@page_headers
@require_http_methods(["GET", "POST"])
def end_session_endpoint(request: HttpRequest) -> HttpResponse:
    params = request.GET if request.method == "GET" else request.POST
    try:
        parsed = _parse(params)
    except EndSessionError as exc:
        return _error_page(request, str(exc))
    if not request.user.is_authenticated:
        # Nothing of this browser's to end. A hint alone never ends anything: anyone may hold
        # someone's (even expired) ID token.
        return _finish(parsed)
    context = {"client": parsed.client, "fields": _fields(params)}
    return render(request, "oauth/end_session.html", context)


@csrf_protect
@page_headers
@require_POST
def end_session_confirm(request: HttpRequest) -> HttpResponse:
    try:
        parsed = _parse(request.POST)
    except EndSessionError as exc:
        return _error_page(request, str(exc))
    user = request.user if request.user.is_authenticated else None
    signed_in = browser_session(request)
    session = _hint_session(parsed)
    if request.POST.get("decision") == STAY:
        return _stay(request, parsed, user, signed_in, session)
    # Only what hangs from this browser's own sign-in ends: signing the browser out ends its
    # Session row and every grant it approved (sessions/browser.py), the hinted one included
    # when it is one of them. A hint for someone else's session only signs this browser out.
    own = session is not None and signed_in is not None and session.parent_id == signed_in.pk
    if user is not None:
        audit_event_record(
            event=EventType.OIDC_LOGOUT,
            user=user,
            client_id=parsed.client.client_id if parsed.client else "",
            session_id=session.id if own else None,
            request=request,
            details={"browser_session": True, "session_revoked": own},
        )
    browser_logout(request)
    return _finish(parsed)
