"""brand_get(): the branding in force, the Brand row over the AUTHSERVER_BRAND_* settings.

Read on the pages, emails and admin pages that show it, through a lazy template variable
(branding.context), so a page that never prints it costs nothing. One cache read per page that
does; the cache entry is replaced when the row is saved (branding.services) and its key holds a
digest of the settings, so a changed environment is never shadowed by an older entry.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError

from branding import values

logger = logging.getLogger(__name__)

CACHE_TIMEOUT = 24 * 3600
DEFAULT_NAME = "authserver"


@dataclass(frozen=True)
class BrandValues:
    name: str
    logo_url: str  # "" = the built-in mark
    primary_color: str  # "" = the built-in palette
    primary_color_dark: str  # "" = primary_color, or the built-in palette

    @property
    def version(self) -> str:
        """Cache-busting version of /brand.css: changes whenever a colour does."""
        text = f"{self.primary_color}|{self.primary_color_dark}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def logo_origin(self) -> str | None:
        return values.logo_origin(self.logo_url) if self.logo_url else None


def _from_settings() -> BrandValues:
    return BrandValues(
        name=settings.AUTHSERVER_BRAND_NAME or DEFAULT_NAME,
        logo_url=settings.AUTHSERVER_BRAND_LOGO_URL or "",
        primary_color=settings.AUTHSERVER_BRAND_PRIMARY_COLOR or "",
        primary_color_dark=settings.AUTHSERVER_BRAND_PRIMARY_COLOR_DARK or "",
    )


def brand_from_settings() -> BrandValues:
    """The brand of the settings alone (no cache, no database): for a page shown because the
    database is unreachable, where the admin's Brand row cannot be read quickly."""
    return _from_settings()


def _cache_key(base: BrandValues) -> str:
    digest = hashlib.sha256(repr(asdict(base)).encode()).hexdigest()[:16]
    return f"branding:brand:{digest}"


def brand_cache_key() -> str:
    return _cache_key(_from_settings())


def _merge(base: BrandValues, row) -> BrandValues:
    if row is None:
        return base
    return BrandValues(
        name=row.name or base.name,
        logo_url=row.logo_url or base.logo_url,
        primary_color=row.primary_color or base.primary_color,
        primary_color_dark=row.primary_color_dark or base.primary_color_dark,
    )


def brand_for_request(request) -> BrandValues:
    """brand_get() once per request: the page's template and its CSP header share one read."""
    brand = getattr(request, "_authserver_brand", None)
    if brand is None:
        brand = request._authserver_brand = brand_get()
    return brand


def brand_get() -> BrandValues:
    from branding.models import Brand

    base = _from_settings()
    key = _cache_key(base)
    try:
        cached = cache.get(key)
    except Exception:  # the cache being down must not take the pages down with it
        logger.warning("branding: cache unavailable, reading the Brand row", exc_info=True)
        cached = None
    if isinstance(cached, dict):
        return BrandValues(**cached)
    try:
        row = Brand.objects.filter(pk=Brand.SINGLETON_PK).first()
    except DatabaseError:
        # An error page while the database is down still renders, with the settings' brand.
        return base
    brand = _merge(base, row)
    try:
        cache.set(key, asdict(brand), CACHE_TIMEOUT)
    except Exception:
        logger.warning("branding: cache unavailable, brand not cached", exc_info=True)
    return brand
