"""The outbox in the admin: what is queued, what failed and why, what was sent. Bodies are
never shown (they may hold single-use links); rows are written only by mail_enqueue."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from mail.models import Outbox


@admin.register(Outbox)
class OutboxAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "template",
        "to",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "sent_at",
    )
    list_filter = ("status", "template", "created_at")
    search_fields = ("=to", "template")
    ordering = ("-created_at",)
    fields = (
        "template",
        "to",
        "to_name",
        "from_email",
        "subject",
        "status",
        "attempts",
        "created_at",
        "last_attempt_at",
        "next_attempt_at",
        "last_error",
        "sent_at",
    )
    readonly_fields = fields
    actions = ["retry_now"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Retry the selected pending messages now", permissions=["change"])
    def retry_now(self, request, queryset) -> None:
        count = queryset.filter(status=Outbox.Status.PENDING).update(next_attempt_at=timezone.now())
        self.message_user(request, f"{count} pending message(s) will be retried at the next poll.")
