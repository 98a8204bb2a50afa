"""The OpenAPI schema (/api/schema/) and the Swagger UI (/api/docs/) of the first-party API.

Who may read them is AUTHSERVER_API_DOCS: "public" (the development default), "staff" (signed-in
staff accounts, e.g. through /admin/) or "off" (the production default: 404). The schema is a
map of the API for an attacker and cost about 13 times a /healthz to generate, so it is built once
per process and version and served from memory.

Only the versions in API_VERSIONS exist; anything else is a JSON 404. Nothing from the query
string reaches a response header (drf-spectacular's own view put `?version=` into
Content-Disposition: a CR/LF was a 500, a quote broke the header).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularSwaggerView

from authserver.conf import get_config

API_VERSIONS = frozenset({"1"})
DEFAULT_API_VERSION = "1"
_FORMATS = {
    "json": (OpenApiJsonRenderer, "application/vnd.oai.openapi+json"),
    "yaml": (OpenApiYamlRenderer, "application/vnd.oai.openapi"),
}


def _refusal(error: str, description: str, status: int) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    response["Cache-Control"] = "no-store"
    return response


def api_docs_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when this caller may read the schema and the docs, else the response to send."""
    mode = get_config().api_docs
    if mode == "public":
        return None
    if mode == "staff":
        user = getattr(request, "user", None)
        if user is not None and user.is_active and user.is_staff:
            return None
        return _refusal(
            "access_denied", "The API documentation is for staff accounts (sign in first).", 403
        )
    return _refusal("not_found", "The API documentation is not enabled.", 404)


def api_docs_guard(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        refusal = api_docs_refusal(request)
        if refusal is not None:
            return refusal
        return view(request, *args, **kwargs)

    return wrapped


@lru_cache(maxsize=len(API_VERSIONS) * len(_FORMATS))
def api_schema_document(version: str, fmt: str) -> bytes:
    """The rendered schema; generated on first use, then kept for the life of the process."""
    schema = SchemaGenerator(api_version=version).get_schema(request=None, public=True)
    renderer, media_type = _FORMATS[fmt]
    return renderer().render(schema, media_type, {})


def _format(request: HttpRequest) -> str | None:
    requested = request.GET.get("format")
    if requested is not None:
        return requested if requested in _FORMATS else None
    return "json" if "json" in request.headers.get("Accept", "") else "yaml"


@require_GET
@never_cache
@api_docs_guard
def api_schema(request: HttpRequest) -> HttpResponse:
    version = request.GET.get("version", DEFAULT_API_VERSION)
    if version not in API_VERSIONS:
        return _refusal("not_found", "Unknown API version.", 404)
    fmt = _format(request)
    if fmt is None:
        return _refusal("not_found", "Unknown schema format (json or yaml).", 404)
    response = HttpResponse(api_schema_document(version, fmt), content_type=_FORMATS[fmt][1])
    # A fixed name: nothing the client sent goes into a header.
    response["Content-Disposition"] = f'inline; filename="authserver-api-v{version}.{fmt}"'
    return response


class ApiDocsView(SpectacularSwaggerView):
    """Swagger UI on the default version's schema, whatever the query string says."""

    def _get_schema_url(self, request):
        return reverse("schema")


api_docs = never_cache(api_docs_guard(ApiDocsView.as_view()))
