"""Which language a page or an email is written in (docs: Reference > Languages).

The order, first match wins:

1. OpenID Connect `ui_locales` (Core §3.1.2.1: "End-User's preferred languages and scripts for
   the user interface, represented as a space-separated list of BCP47 language tag values,
   ordered by preference") of the authorization request the page belongs to. The request
   travels with the flow: it is the authorization endpoint's own query (or form body), and
   every page of the flow (login, second step, set-up of a second factor) carries it in its
   `next` parameter, so it holds through the login, MFA and consent steps without state on the
   server and ends with the flow. RP-Initiated Logout 1.0 §2 gives the logout endpoint the same
   parameter. Tags we do not serve are skipped silently, as Core asks; none served: next step.
2. The signed-in user's saved language (User.language, set on /account/ or in the admin).
3. The browser's Accept-Language.
4. settings.LANGUAGE_CODE.

Machine-facing responses are not negotiated: the JSON APIs (/api/) and the token endpoints
never reach this middleware (authserver.middleware.MachinePathsMiddleware), and the admin, a
staff tool whose own pages are not in the catalog, stays in LANGUAGE_CODE.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import NoReverseMatch, get_urlconf, reverse
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation.trans_real import parse_accept_lang_header

# A BCP47 tag as far as we need it: letters and digits in dash-separated pieces.
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
# ui_locales is a short preference list; more than this is not a preference, and is ignored.
MAX_UI_LOCALES = 10
# How many `next` hops (login -> second step -> set-up page -> authorize) are followed.
MAX_NEXT_DEPTH = 3
# The bodies of the pages' forms (and of passkey.js's FormData requests); never JSON.
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
_NOT_NEGOTIATED_PREFIXES = ("/admin/", "/api/")


def supported_language(tag: str) -> str | None:
    """The code of LANGUAGES that serves the BCP47 `tag` ("de", "de-AT" -> "de"), or None."""
    if not tag or len(tag) > 35 or not _TAG.match(tag):
        return None
    try:
        return translation.get_supported_language_variant(tag.lower())
    except LookupError:
        return None


def language_from_ui_locales(value: str | None) -> str | None:
    """The first language of a `ui_locales` value we serve; None when there is none (an
    unknown or malformed list falls back silently, OpenID Connect Core §3.1.2.1)."""
    if not value or not isinstance(value, str):
        return None
    for tag in value.split()[:MAX_UI_LOCALES]:
        if code := supported_language(tag):
            return code
    return None


def language_from_accept(header: str) -> str | None:
    for tag, _quality in parse_accept_lang_header(header or "")[:MAX_UI_LOCALES]:
        if tag != "*" and (code := supported_language(tag)):
            return code
    return None


def language_of_user(user) -> str | None:
    """The saved language of `user`, if it is one we serve (a removed language is skipped)."""
    saved = getattr(user, "language", "") or ""
    return supported_language(saved) if saved else None


_FLOW_URL_NAMES = (
    "oauth:authorize",
    "oauth:consent",
    "oauth:end-session",
    "oauth:end-session-confirm",
)


@functools.cache
def _flow_paths_of(urlconf: str) -> frozenset[str]:
    paths = set()
    for name in _FLOW_URL_NAMES:
        try:
            paths.add(reverse(name, urlconf=urlconf))
        except NoReverseMatch:  # a URLconf without the OAuth app (a test's, a trimmed deployment)
            continue
    return frozenset(paths)


def _flow_paths() -> frozenset[str]:
    """Endpoints whose own parameters are an OpenID Connect request carrying ui_locales (looked
    up once per URLconf, not on every request)."""
    return _flow_paths_of(get_urlconf() or settings.ROOT_URLCONF)


def _params(request: HttpRequest) -> Iterable[QueryDict]:
    """The query string, then a form body."""
    yield request.GET
    if request.method != "POST":
        return
    if request.content_type.split(";")[0].strip().lower() not in _FORMS:
        return
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return  # the view answers that one; reading it here would change its answer
    try:
        post = request.POST
    except Exception:  # noqa: BLE001 - a body Django refuses: the view answers it
        # A form body that failed is parsed again (and refused again) when the view reads it;
        # a broken multipart body reads as empty from here on, as Django leaves it.
        return
    yield post


def _ui_locales_of_url(url: str, flow_paths: frozenset[str], depth: int) -> str | None:
    """ui_locales of a local URL of the flow (an authorization request, or a page whose own
    `next` leads to one)."""
    if not url.startswith("/") or url.startswith("//") or depth > MAX_NEXT_DEPTH:
        return None
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.path in flow_paths:
        return (query.get("ui_locales") or [None])[0]
    for nxt in query.get("next", [])[:1]:
        return _ui_locales_of_url(nxt, flow_paths, depth + 1)
    return None


def ui_locales_of_request(request: HttpRequest) -> str | None:
    """The ui_locales of the authorization (or logout) request this page belongs to."""
    flow_paths = _flow_paths()
    own = request.path_info in flow_paths
    for params in _params(request):
        if own and params.get("ui_locales"):
            return params.get("ui_locales")
        nxt = params.get("next")
        if nxt and (found := _ui_locales_of_url(nxt, flow_paths, 1)):
            return found
    return None


def request_language(request: HttpRequest) -> str:
    """The language of the page answering `request` (the order in this module's docstring)."""
    code = language_from_ui_locales(ui_locales_of_request(request))
    if code is None:
        try:
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                code = language_of_user(user)
        except DatabaseError:
            # The view answers a database outage (authserver.middleware); the page it shows
            # then is in the browser's language.
            pass
    if code is None:
        code = language_from_accept(request.META.get("HTTP_ACCEPT_LANGUAGE", ""))
    return code or default_language()


def chosen_language(request: HttpRequest | None) -> str:
    """The language a new account starts with (User.language): the one the person asked for on
    the page that created it, by the authorization request's ui_locales or the browser's
    Accept-Language; empty when neither names one we serve (then it stays the browser's
    choice). Saved, so the mails that reach the account later without a page of theirs (a
    security notice, an admin's reset) are in the language they signed up in."""
    if request is None:
        return ""
    return (
        language_from_ui_locales(ui_locales_of_request(request))
        or language_from_accept(request.META.get("HTTP_ACCEPT_LANGUAGE", ""))
        or ""
    )


def default_language() -> str:
    return supported_language(settings.LANGUAGE_CODE) or settings.LANGUAGES[0][0]


def email_language(*, user=None, preferred: str | None = None) -> str:
    """The language of an email: `preferred` (a caller that knows better), else the recipient's
    saved language, else the language of the request that caused it (the active one), else
    LANGUAGE_CODE."""
    return (
        (supported_language(preferred) if preferred else None)
        or language_of_user(user)
        or supported_language(translation.get_language() or "")
        or default_language()
    )


class LanguageMiddleware:
    """Activates request_language() for the pages; after AuthenticationMiddleware (it reads
    request.user) and the browser-session middleware that may replace it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(_NOT_NEGOTIATED_PREFIXES):
            language = default_language()
            negotiated = False
        else:
            language = request_language(request)
            negotiated = True
        translation.activate(language)
        request.LANGUAGE_CODE = language
        try:
            response = self.get_response(request)
        finally:
            translation.deactivate()
        if negotiated and response.get("Content-Type", "").startswith("text/html"):
            # Pages only: the brand stylesheet and the discovery document are the same in
            # every language, and cached as one.
            patch_vary_headers(response, ("Accept-Language",))
            response.headers.setdefault("Content-Language", language)
        return response
