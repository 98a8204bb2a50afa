"""Signing keys in the admin: read-only, public facts only; rotate and revoke as explicit actions.

No page shows `private_key_ciphertext` (it is not in any field list) and nothing is editable:
every change goes through tokens/rotation.py, which locks, audits and propagates it.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from tokens.models import SigningKey
from tokens.rotation import SigningKeyError, signing_key_revoke, signing_key_rotate


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    change_list_template = "admin/tokens/signingkey/change_list.html"
    list_display = (
        "kid",
        "alg",
        "key_size",
        "state",
        "created_at",
        "activate_at",
        "retired_at",
        "remove_after",
        "revoked_at",
    )
    list_filter = ("state", "alg")
    search_fields = ("=kid",)
    ordering = ("-created_at",)
    fields = (
        "kid",
        "alg",
        "key_size",
        "state",
        "public_jwk",
        "kek_id",
        "created_at",
        "activate_at",
        "activated_at",
        "retired_at",
        "remove_after",
        "removed_at",
        "revoked_at",
    )
    readonly_fields = fields
    actions = ("revoke_selected",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def get_urls(self):
        return [
            path(
                "rotate/",
                self.admin_site.admin_view(self.rotate_view),
                name="tokens_signingkey_rotate",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {**(extra_context or {}), "can_manage": self.has_manage_permission(request)}
        return super().changelist_view(request, extra_context)

    def rotate_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_manage_permission(request):
            raise PermissionDenied
        changelist = reverse("admin:tokens_signingkey_changelist")
        if request.method == "POST":
            immediate = request.POST.get("immediate") == "1"
            try:
                change = signing_key_rotate(immediate=immediate)
            except SigningKeyError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Rotation: {change.summary()}", messages.SUCCESS)
            return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Rotate the signing key",
            "changelist_url": changelist,
        }
        return TemplateResponse(request, "admin/tokens/signingkey/rotate.html", context)

    @admin.action(description="Revoke selected keys (emergency)", permissions=["manage"])
    def revoke_selected(self, request: HttpRequest, queryset) -> HttpResponse | None:
        keys = list(queryset.filter(state__in=SigningKey.PUBLISHED_STATES))
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Revoke signing keys",
                "keys": keys,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/tokens/signingkey/revoke_confirmation.html", context
            )
        for key in keys:
            try:
                change = signing_key_revoke(kid=key.kid)
            except SigningKeyError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Revoked: {change.summary()}", messages.WARNING)
        return None
