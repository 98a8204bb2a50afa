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

from authserver.admin_display import EMPTY, compact_time, shortened
from tokens.models import SigningKey
from tokens.rotation import SigningKeyError, signing_key_revoke, signing_key_rotate


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    change_list_template = "admin/tokens/signingkey/change_list.html"
    # Compact columns (authserver/admin_display.py): the list fits 1280 px without scrolling
    # sideways (tests/flows/test_admin_lists.py). Every value in full is on the key's page.
    list_display = (
        "key_id",
        "algorithm",
        "key_size",
        "state_name",
        "created",
        "signs_from",
        "ends",
    )
    list_display_links = ("key_id",)
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

    @admin.display(description="key ID", ordering="kid")
    def key_id(self, key: SigningKey) -> str:
        return shortened(key.kid, 14)

    @admin.display(description="alg", ordering="alg")
    def algorithm(self, key: SigningKey) -> str:
        return key.alg

    @admin.display(description="state", ordering="state")
    def state_name(self, key: SigningKey) -> str:
        return key.state

    @admin.display(description="created", ordering="created_at")
    def created(self, key: SigningKey) -> str:
        return compact_time(key.created_at)

    @admin.display(description="signs from", ordering="activate_at")
    def signs_from(self, key: SigningKey) -> str:
        return compact_time(key.activate_at)

    @admin.display(description="retired / revoked")
    def ends(self, key: SigningKey) -> str:
        parts = []
        if key.revoked_at:
            parts.append(f"revoked {compact_time(key.revoked_at)}")
        if key.retired_at:
            parts.append(f"retired {compact_time(key.retired_at)}")
        if key.remove_after:
            parts.append(f"published until {compact_time(key.remove_after)}")
        return "; ".join(parts) or EMPTY

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
