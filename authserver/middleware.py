"""Request-wide middleware."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import NoReverseMatch, ResolverMatch, get_resolver, resolve, reverse

from accounts.hash_gate import BUSY_RETRY_AFTER, hash_gate
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
                _UNAVAILABLE_PAGE, status=503, content_type="text/html; charset=utf-8"
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
