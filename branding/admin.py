from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from branding.models import Brand
from branding.services import brand_delete, brand_save


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    """One row, superusers only; fields left empty fall back to the AUTHSERVER_BRAND_* settings."""

    fields = ("name", "logo_url", "primary_color", "primary_color_dark", "updated_at")
    readonly_fields = ("updated_at",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request) and not Brand.objects.exists()

    def save_model(self, request: HttpRequest, obj: Brand, form, change: bool) -> None:
        brand_save(brand=obj)

    def delete_model(self, request: HttpRequest, obj: Brand) -> None:
        brand_delete()

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        brand_delete()
