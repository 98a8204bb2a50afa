from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from branding.selectors import brand_for_request, brand_get


def brand(request: HttpRequest | None = None) -> dict[str, object]:
    """`{{ brand.name }}`, `{{ brand.logo_url }}`, `{{ brand.version }}` in every template;
    lazy, so a template that never prints them reads nothing."""
    if request is None:
        return {"brand": SimpleLazyObject(brand_get)}
    return {"brand": SimpleLazyObject(lambda: brand_for_request(request))}
