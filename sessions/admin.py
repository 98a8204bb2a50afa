"""Sessions in the admin: who is signed in where, and a way to end a session at once.

Read-only: a session changes only through sessions/services.py. Neither a refresh token nor its
digest is shown; the inline lists the timestamps of old-format token rows (before issue 15.1).
"""

from __future__ import annotations

import re

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from audit.events import EventType
from audit.services import audit_event_record
from authserver.admin_display import EMPTY, compact_time, shortened
from sessions.models import BROWSER_CLIENT_ID, FIRST_PARTY_CLIENT_ID, RefreshToken, Session
from sessions.services import session_app_names, session_revoke


class RefreshTokenInline(admin.TabularInline):
    model = RefreshToken
    fields = ("id", "parent", "created_at", "expires_at", "consumed_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("created_at",)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class SessionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("live", "live (not revoked)"), ("revoked", "revoked")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "live":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class SessionKindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return Session.Kind.choices

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == Session.Kind.BROWSER:
            return queryset.filter(client_id=BROWSER_CLIENT_ID)
        if self.value() == Session.Kind.FIRST_PARTY:
            return queryset.filter(client_id=FIRST_PARTY_CLIENT_ID)
        if self.value() == Session.Kind.OAUTH:
            return queryset.exclude(client_id__in=[BROWSER_CLIENT_ID, FIRST_PARTY_CLIENT_ID])
        return queryset


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    # Compact columns (authserver/admin_display.py): the list fits 1280 px without scrolling
    # sideways (tests/flows/test_admin_lists.py). The full values are on each session's page.
    list_display = (
        "short_id",
        "user",
        "kind_and_app",
        "device",
        "address",
        "started",
        "last_used",
        "state",
    )
    list_display_links = ("short_id",)
    list_filter = (SessionStateFilter, SessionKindFilter, "revoke_reason", "created_at")
    search_fields = ("=id", "user__username", "user__email", "=user__public_id", "ip")
    list_select_related = ("user",)
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    # Never the current refresh token's digest; its generation (rotations) and timestamps show.
    exclude = ("refresh_digest",)
    readonly_fields = [f.name for f in Session._meta.fields if f.name != "refresh_digest"]
    inlines = [RefreshTokenInline]
    actions = ["revoke_sessions"]

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        # The app names of the page's sessions in one query, not one per row.
        self._app_names = session_app_names(list(changelist.result_list))
        return changelist

    @admin.display(description="kind")
    def kind(self, session: Session) -> str:
        return Session.Kind(session.kind).label

    @admin.display(description="app")
    def app(self, session: Session) -> str:
        names = getattr(self, "_app_names", None) or session_app_names([session])
        return names.get(session.client_id, session.client_id)

    @admin.display(description="device")
    def device(self, session: Session) -> str:
        return shortened(session.user_agent, 32)

    @admin.display(description="kind / app")
    def kind_and_app(self, session: Session) -> str:
        """The kind; for an app's grant, the app's name (shortened)."""
        if session.kind == Session.Kind.OAUTH:
            return "app: " + shortened(self.app(session), 40)
        return self.kind(session)

    @admin.display(description="IP", ordering="ip")
    def address(self, session: Session) -> str:
        """The address, breakable only after its separators (an IPv6 address is long)."""
        if not session.ip:
            return EMPTY
        parts = re.split(r"(?<=[:.])", str(session.ip))
        return format_html_join(mark_safe("<wbr>"), "{}", ((part,) for part in parts))

    @admin.display(description="session", ordering="id")
    def short_id(self, session: Session) -> str:
        return str(session.id)[:8] + "\u2026"

    @admin.display(description="started", ordering="created_at")
    def started(self, session: Session) -> str:
        return compact_time(session.created_at)

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, session: Session) -> str:
        return compact_time(session.last_used_at)

    @admin.display(description="state", ordering="revoked_at")
    def state(self, session: Session) -> str:
        """ "live", or when and why it was revoked."""
        if session.revoked_at is None:
            return "live"
        ended = f"revoked {compact_time(session.revoked_at)}"
        # The reason's short name (the filter on the right, and the session's page, say more).
        reason = (session.revoke_reason or "").replace("_", " ")
        return f"{ended} ({reason})" if reason else ended

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Ended sessions are kept for investigation and removed by purge_expired_sessions.
        return False

    @admin.action(description="Revoke selected sessions now", permissions=["change"])
    def revoke_sessions(self, request: HttpRequest, queryset: QuerySet) -> None:
        ended = 0
        for session in queryset.select_related("user"):
            if session_revoke(session=session, reason=Session.RevokeReason.ADMIN):
                ended += 1
                audit_event_record(
                    event=EventType.SESSION_REVOKED,
                    user=session.user,
                    request=request,
                    client_id=session.client_id,
                    session_id=session.id,
                    details={"reason": "admin", "actor": request.user.get_username()},
                )
        self.message_user(request, f"Revoked {ended} session(s).", messages.SUCCESS)
