from __future__ import annotations

from django.core.cache import cache
from django.db import transaction

from branding.models import Brand
from branding.selectors import brand_cache_key


def brand_cache_clear() -> None:
    """Drop the cached brand once the transaction commits (not before: a page rendered in
    between would cache the old row again)."""
    key = brand_cache_key()
    transaction.on_commit(lambda: cache.delete(key))


def brand_save(*, brand: Brand) -> Brand:
    """Validate and save the one Brand row (pk 1), then invalidate the cached brand."""
    brand.pk = Brand.SINGLETON_PK
    brand.full_clean()
    with transaction.atomic():
        brand.save()
        brand_cache_clear()
    return brand


def brand_delete() -> None:
    """Back to the settings' brand."""
    with transaction.atomic():
        Brand.objects.filter(pk=Brand.SINGLETON_PK).delete()
        brand_cache_clear()
