from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from branding.selectors import brand_get


def brand(request: HttpRequest | None = None) -> dict[str, object]:
    """`{{ brand.name }}`, `{{ brand.logo_url }}`, `{{ brand.version }}` in every template;
    lazy, so a template that never prints them reads nothing."""
    return {"brand": SimpleLazyObject(brand_get)}
