"""Request-wide middleware."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponsePermanentRedirect, HttpResponseRedirectBase
from django.template.loader import render_to_string
from django.urls import (
    NoReverseMatch,
    Resolver404,
    ResolverMatch,
    get_resolver,
    resolve,
    reverse,
)

from accounts.hash_gate import BUSY_RETRY_AFTER, hash_gate
from authserver.errors import method_not_allowed_description
from authserver.logs import (
    REQUEST_ID_HEADER,
    request_id_from_header,
    request_id_reset,
    request_id_set,
)
from authserver.metrics import http_request_observed
from authserver.pages import CONTENT_SECURITY_POLICY

logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Give every request an id: the inbound `X-Request-ID` when well formed, else a new one.

    It is on `request.request_id`, on every log record emitted while the request is served
    (authserver.logs.RequestIdFilter), and echoed in the response's `X-Request-ID`, so a client,
    the proxy's log, gunicorn's access log and the application log can be joined on it. First in
    MIDDLEWARE, so it covers everything below it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from_header(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        token = request_id_set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class RequestMetricsMiddleware:
    """Observe each request's latency by route name (never the raw path: unbounded labels)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        http_request_observed(
            route=(match.view_name if match is not None else "unmatched") or "unnamed",
            method=request.method if request.method in _METHODS else "other",
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class DatabaseUnavailableMiddleware:
    """A database outage in any view becomes 503 `temporarily_unavailable` with Retry-After,
    never a 500 page. DRF APIs already do this in authserver.errors; this covers plain Django
    views (hosted pages, OAuth endpoints) that do not catch it themselves. JSON unless the
    client asked for HTML."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.error("database unavailable: %s", exception.__class__.__name__)
        if "text/html" in request.headers.get("Accept", ""):
            response = HttpResponse(
                _unavailable_page(), status=503, content_type="text/html; charset=utf-8"
            )
            response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        else:
            response = JsonResponse(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "The service is temporarily unavailable.",
                },
                status=503,
            )
        response["Retry-After"] = "5"
        response["Cache-Control"] = "no-store"
        return response


_UNAVAILABLE_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Temporarily unavailable</title>"
    "<h1>Temporarily unavailable</h1><p>Please try again in a few seconds.</p></html>"
)


def _unavailable_page() -> str:
    """templates/503.html in the page's language and with the brand of the settings, rendered
    without the request (no context processor) so that nothing reads the database or waits on
    it; the bare English page if even that fails."""
    from branding.selectors import brand_from_settings

    try:
        return render_to_string("503.html", {"brand": brand_from_settings()})
    except Exception:
        logger.warning("database unavailable: the 503 page did not render", exc_info=True)
        return _UNAVAILABLE_PAGE


class ExactPathViews:
    """`resolve(path)` for a fixed set of exact paths, each resolved once per URLconf.

    Django resolves every request's path by walking the URL patterns in order, one regular
    expression each, nested includes too: 7-30 us per request on the paths the middleware below
    answer themselves (bench/layers.py "URL resolve"; /oauth/token sits behind a dozen patterns).
    A path without parameters always resolves to the same match, so it is kept, with the
    resolver it came from: a new URLconf (override_settings(ROOT_URLCONF=...), which makes
    Django build a new resolver) starts afresh. A request with its own `urlconf` (set by a
    middleware; none before these) is resolved as Django would.
    """

    def __init__(self) -> None:
        # (resolver, {path: match}), replaced as one object: threads never see a mix.
        self._known: tuple[object, dict[str, ResolverMatch]] = (None, {})

    def match(self, request: HttpRequest) -> ResolverMatch:
        path = request.path_info
        if getattr(request, "urlconf", None) is not None:
            return resolve(path, request.urlconf)
        resolver = get_resolver()
        known_resolver, matches = self._known
        if known_resolver is not resolver:
            matches = {}
            self._known = (resolver, matches)
        match = matches.get(path)
        if match is None:
            match = matches[path] = resolver.resolve(path)
        return match


class HttpResponsePermanentRedirectKeepMethod(HttpResponseRedirectBase):
    """308: like 301, but the client repeats the same method and body (RFC 9110 15.4.9)."""

    status_code = 308


class HttpsRedirect308Middleware:
    """Make Django's HTTPS redirect (SecurityMiddleware, SECURE_SSL_REDIRECT) a 308, not a 301:
    a client that POSTs a form or a token request over plain HTTP must not be turned into a GET,
    and nginx's own redirect is 308 as well. Placed just before SecurityMiddleware (which stays
    itself, so `check --deploy` still sees it); only that redirect is changed: a 301 to https://
    answering a plain-HTTP request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            isinstance(response, HttpResponsePermanentRedirect)
            and not request.is_secure()
            and response["Location"].startswith("https://")
        ):
            return HttpResponsePermanentRedirectKeepMethod(response["Location"])
        return response


class InfrastructureEndpointsMiddleware:
    """Answer /healthz, /readyz and /metrics before host validation and the HTTPS redirect.

    Orchestrators probe and scrape each instance directly, by pod or container address, over
    plain HTTP: the Host header is that address, not one of ALLOWED_HOSTS, and a 301 to https
    would count as a passing probe. Host validation guards the URLs Django builds from Host;
    these three build none, and /metrics has its own access rule (authserver/metrics.py).
    """

    PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.views = ExactPathViews()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in self.PATHS:
            return self.get_response(request)
        match = self.views.match(request)
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)


# Paths whose clients are programs, not people with a browser: the first-party token API, the
# OAuth back channel, userinfo (a bearer-token resource: no cookie, no CSRF, JSON only) and the
# published keys. Exact paths; anything else (the hosted pages, the admin, /api/v1/auth/csrf
# which sets the CSRF cookie) takes the full chain.
MACHINE_PATHS = frozenset(
    {
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/oauth/token",
        "/oauth/introspect",
        "/oauth/revoke",
        "/oauth/userinfo",
    }
)


API_LOGIN_PATH = "/api/v1/auth/login"


def sign_in_busy_response() -> JsonResponse:
    """The first-party login API's 503 while every password-hashing slot is taken (the same
    answer AuthLoginApi gives for LoginBusy)."""
    from authserver import metrics

    metrics.login_attempted(outcome="busy")
    response = JsonResponse(
        {
            "error": "temporarily_unavailable",
            "error_description": "Sign-in is busy; try again in a few seconds.",
        },
        status=503,
    )
    response["Retry-After"] = str(BUSY_RETRY_AFTER)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    # No "Service Unavailable" ERROR line from django.request per refusal: in a flood that was
    # one line per request, half the cost of the refusal, and a way to flood the log. The
    # access log still has each one, and the busy count is the metric above.
    response._has_been_logged = True  # read by django.utils.log.log_response
    return response


class MachinePathsMiddleware:
    """Serve MACHINE_PATHS without the browser middleware that follows it in MIDDLEWARE.

    Sessions, the CSRF cookie, request.user, messages and X-Frame-Options serve pages; on these
    paths they did nothing but cost about a quarter of a millisecond per request, a sizeable
    share of a token request (bench/README.md). What still applies: everything before this
    middleware (request id, metrics, HTTPS redirect and security headers), the ALLOWED_HOSTS
    check CommonMiddleware would make, and each view's own rules: these views are CSRF-exempt
    (cookie-mode refresh checks CSRF itself, sessions/apis.py) and answer database outages with
    their own 503 (DRF's exception handler, oauth.protocol).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.views = ExactPathViews()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in MACHINE_PATHS:
            return self.get_response(request)
        request.get_host()  # DisallowedHost -> 400, as on every other path
        if request.path_info == API_LOGIN_PATH and request.method == "POST" and hash_gate().full:
            # A sign-in flood: refused before the body is even parsed (accounts/hash_gate.py),
            # so each refusal gives its thread back within a fraction of a millisecond.
            return sign_in_busy_response()
        match = self.views.match(request)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        if callable(getattr(response, "render", None)):  # DRF responses are rendered lazily
            response = response.render()
        return response


# The Django admin (5.2) runs only its own static scripts (no inline <script>, no on* handler;
# its data blocks are data-* attributes) and sets styles through the CSSOM, which CSP allows, so
# neither script-src nor style-src needs 'unsafe-inline'. connect-src: the autocomplete widgets
# fetch from the admin itself. form-action: every admin form posts to the admin.
ADMIN_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


class AdminSecurityHeadersMiddleware:
    """A strict Content-Security-Policy on every admin response (issue 14.10).

    Only paths under the admin's prefix: the hosted pages set their own (authserver.pages) and
    the machine paths serve no HTML. It replaces any policy a view set, since the admin holds
    the most powerful session there is. Below MachinePathsMiddleware, so token requests never
    reach it; above the session, CSRF and auth middleware, so their refusals get it too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self._prefix: str | None = None

    def _admin_prefix(self) -> str | None:
        # Resolved on first use, not at start-up: the URLconf may not be importable yet then.
        # None where the URLconf mounts no admin (a test's own URLconf, for one).
        if self._prefix is None:
            try:
                self._prefix = reverse("admin:index")
            except NoReverseMatch:
                return None
        return self._prefix

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        prefix = self._admin_prefix()
        if prefix is not None and request.path.startswith(prefix):
            response["Content-Security-Policy"] = ADMIN_CONTENT_SECURITY_POLICY
        return response


# Paths whose clients are programs: their errors are JSON, never the HTML pages people see.
# /api/docs/ is a page; /oauth/authorize, its decision and end-session are pages too.
API_PREFIXES = ("/api/", "/.well-known/")
API_EXACT_PATHS = frozenset(
    {"/oauth/token", "/oauth/revoke", "/oauth/introspect", "/oauth/userinfo"}
)
API_PAGE_PREFIXES = ("/api/docs/",)
_ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_token",
    403: "access_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "invalid_request",
    415: "invalid_request",
    429: "too_many_requests",
    500: "server_error",
    503: "temporarily_unavailable",
}
_ERROR_DESCRIPTIONS = {
    400: "The request is invalid.",
    403: "Access to this endpoint is denied.",
    404: "No such endpoint.",
    413: "The request body is too large.",
    429: "Too many requests.",
    500: "The server could not complete the request.",
    503: "The service is temporarily unavailable.",
}


def is_api_path(path: str) -> bool:
    if path in API_EXACT_PATHS or path.rstrip("/") in API_EXACT_PATHS:
        return True
    return path.startswith(API_PREFIXES) and not path.startswith(API_PAGE_PREFIXES)


def _not_found_description(request: HttpRequest) -> str:
    """A 404's description; for a trailing slash on an endpoint that exists without it, say so."""
    path = request.path_info
    if path.endswith("/") and len(path) > 1:
        try:
            resolve(path.rstrip("/"), getattr(request, "urlconf", None))
        except Resolver404:
            pass
        else:
            return f"No such endpoint. API paths have no trailing slash: {path.rstrip('/')}."
    return _ERROR_DESCRIPTIONS[404]


class ApiErrorsAsJsonMiddleware:
    """API paths answer every error in their JSON shape, {"error", "error_description"}
    (authserver/errors.py): an unknown path or a trailing slash under /api/v1/ is a JSON 404,
    a wrong method on the discovery document or the JWKS a JSON 405 (Allow kept), and so on.
    Django's own error pages (HTML, for people) would otherwise answer them.

    Only responses that are errors and not JSON already are touched: one status test per
    response on the paths that succeed, nothing else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400 or not is_api_path(request.path_info):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        status = response.status_code
        if status == 405:
            allowed = response.get("Allow", "")
            description = method_not_allowed_description(request.method, allowed or "another")
        elif status == 404:
            description = _not_found_description(request)
        else:
            description = _ERROR_DESCRIPTIONS.get(status, "The request failed.")
        body = {
            "error": _ERROR_CODES.get(status, "invalid_request"),
            "error_description": description,
        }
        replacement = JsonResponse(body, status=status)
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if response.get(name):
                replacement[name] = response[name]
        replacement["Cache-Control"] = "no-store"
        return replacement
