"""Response headers for the HTML pages authserver serves to people (login, logout, consent)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views import csrf, defaults

# The pages load only our own stylesheet, images and scripts (files under /static/, never inline:
# the one script is passkeys/passkey.js, which calls the WebAuthn API and fetches its options
# from this origin). There is no `form-action`: browsers apply it to the redirects that follow a
# form post, and the login and consent forms legitimately end in a redirect to the client's
# registered redirect_uri.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def content_security_policy(request: HttpRequest) -> str:
    """The policy above; with an absolute logo URL (README "Branding"), img-src also names that
    one origin, so the logo loads and nothing else does. The brand is a cached read, and these
    pages print it anyway."""
    from branding.selectors import brand_for_request

    origin = brand_for_request(request).logo_origin
    if origin is None:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace("img-src 'self'", f"img-src 'self' {origin}")


def page_headers(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Strict Content-Security-Policy and no caching (pages carry CSRF tokens and who is signed
    in). Clickjacking is already refused site-wide (X-Frame-Options: DENY)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.headers.setdefault("Content-Security-Policy", content_security_policy(request))
        add_never_cache_headers(response)
        return response

    return wrapped


# Django's error views (templates/404.html, 500.html, ...) and CSRF failure page, with the same
# headers as every other page: they render the same frame, and an error page is where injected
# markup would most likely land.
bad_request = page_headers(defaults.bad_request)
permission_denied = page_headers(defaults.permission_denied)
page_not_found = page_headers(defaults.page_not_found)
server_error = page_headers(defaults.server_error)
csrf_failure = page_headers(csrf.csrf_failure)
