"""The audit trail in the admin: read-only, filterable, searchable."""

from __future__ import annotations

import ipaddress
import json
import uuid

from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html

from audit.events import EventType, FailureReason
from audit.models import AuthEvent


class EventTypeFilter(admin.SimpleListFilter):
    # Choices come from the code, not from SELECT DISTINCT over millions of rows.
    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin):
        return EventType.choices

    def queryset(self, request, queryset):
        if self.value() in EventType.values:
            return queryset.filter(event_type=self.value())
        return queryset


class FailureReasonFilter(admin.SimpleListFilter):
    title = "login failure reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return FailureReason.choices

    def queryset(self, request, queryset):
        if self.value() in FailureReason.values:
            return queryset.filter(event_type=EventType.LOGIN_FAILED, details__reason=self.value())
        return queryset


@admin.register(AuthEvent)
class AuthEventAdmin(admin.ModelAdmin):
    list_display = (
        "occurred_at",
        "event_type",
        "user_display",
        "client_id",
        "ip",
        "session_id",
        "reason",
    )
    list_filter = (EventTypeFilter, FailureReasonFilter, "occurred_at")
    search_fields = ("user__username", "user__email", "client_id")
    search_help_text = (
        "A sub or session id (UUID), an IP address, or part of a username, email or client id."
    )
    list_select_related = ("user",)
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-occurred_at", "-id")
    fields = (
        "occurred_at",
        "event_type",
        "user",
        "user_public_id",
        "client_id",
        "session_id",
        "ip",
        "user_agent",
        "details_pretty",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_search_results(self, request, queryset, search_term):
        # UUID and IP columns cannot be compared with arbitrary text (PostgreSQL would raise), so
        # a term that parses as one is matched exactly against those columns instead.
        term = search_term.strip()
        try:
            value = uuid.UUID(term)
        except ValueError:
            pass
        else:
            return queryset.filter(Q(user_public_id=value) | Q(session_id=value)), False
        try:
            address = ipaddress.ip_address(term)
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(ip=str(address)), False

    @admin.display(description="user", ordering="user__username")
    def user_display(self, obj: AuthEvent) -> str:
        if obj.user is not None:
            return obj.user.get_username()
        return f"(deleted) {obj.user_public_id}" if obj.user_public_id else "-"

    @admin.display(description="reason")
    def reason(self, obj: AuthEvent) -> str:
        return str(obj.details.get("reason", "")) if isinstance(obj.details, dict) else ""

    @admin.display(description="details")
    def details_pretty(self, obj: AuthEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True))
