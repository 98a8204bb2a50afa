from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

from branding.selectors import brand_get
from branding.stylesheet import brand_stylesheet


@require_safe
def brand_css(request: HttpRequest) -> HttpResponse:
    """GET /brand.css?v=<version>: the brand colours. Pages link it with the current version, so
    a response for that version is cached for a year; any other (or none) for a minute only."""
    brand = brand_get()
    response = HttpResponse(brand_stylesheet(brand), content_type="text/css; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    if request.GET.get("v") == brand.version:
        patch_cache_control(response, public=True, max_age=31_536_000, immutable=True)
    else:
        patch_cache_control(response, public=True, max_age=60)
    return response
