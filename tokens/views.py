"""GET /.well-known/jwks.json: the public signing keys (RFC 7517 §5) from the in-process ring."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from authserver.conf import get_config
from tokens.keys import KeyStoreUnavailable, jwks_document

logger = logging.getLogger("authserver.keys")


def _etag_matches(header: str, etag: str) -> bool:
    # RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(item.strip().removeprefix("W/") == wanted for item in header.split(","))


@require_safe
def jwks(request: HttpRequest) -> HttpResponse:
    try:
        body, etag = jwks_document()
    except KeyStoreUnavailable as exc:
        logger.error("jwks: unavailable: %s", exc.reason)
        response = JsonResponse(
            {
                "error": "temporarily_unavailable",
                "error_description": "Signing keys are unavailable; see /readyz.",
            },
            status=503,
        )
        response["Cache-Control"] = "no-store"
        response["Retry-After"] = "5"
        return response
    headers = {
        "Cache-Control": f"public, max-age={get_config().jwks_max_age}",
        "ETag": etag,
    }
    if_none_match = request.META.get("HTTP_IF_NONE_MATCH")  # not request.headers: built per call
    if if_none_match and _etag_matches(if_none_match, etag):
        return HttpResponse(status=304, headers=headers)
    return HttpResponse(body, content_type="application/json", headers=headers)
