"""The audit trail: one append-only row per security event."""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

USER_AGENT_MAX_LENGTH = 512
CLIENT_ID_MAX_LENGTH = 255


class AuthEvent(models.Model):
    """A security event. Written only by `audit.services.audit_event_record`; never edited.

    `user` is cleared if the account is deleted, `user_public_id` (the `sub`) is kept so the
    history of a deleted account stays searchable. `details` never holds a secret: the service
    redacts password/token/secret/code keys before anything is stored or logged.

    On PostgreSQL the table is partitioned by week on `occurred_at` (audit/partitions.py,
    migration 0002): there its primary key is (occurred_at, id) and `audit_event_id_idx` indexes
    `id`, which stays the primary key for Django. Nothing here changes with it.
    """

    # Free text, not `choices`: new event names (audit.events.EventType) need no migration.
    event_type = models.CharField(max_length=64)
    occurred_at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="auth_events",
        db_index=False,  # covered by the (user, -occurred_at) index below
    )
    user_public_id = models.UUIDField("user sub", null=True, blank=True)
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH, blank=True, default="")
    session_id = models.UUIDField(null=True, blank=True)
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    user_agent = models.CharField(max_length=USER_AGENT_MAX_LENGTH, blank=True, default="")
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        verbose_name = "auth event"
        verbose_name_plural = "auth events"
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["-occurred_at"], name="audit_event_occurred_idx"),
            models.Index(fields=["event_type", "-occurred_at"], name="audit_event_type_idx"),
            models.Index(fields=["user", "-occurred_at"], name="audit_event_user_idx"),
            models.Index(fields=["user_public_id", "-occurred_at"], name="audit_event_sub_idx"),
            models.Index(fields=["ip", "-occurred_at"], name="audit_event_ip_idx"),
            models.Index(fields=["client_id", "-occurred_at"], name="audit_event_client_idx"),
            models.Index(fields=["session_id"], name="audit_event_session_idx"),
        ]

    def __str__(self) -> str:
        when = self.occurred_at.strftime("%Y-%m-%d %H:%M:%S") if self.occurred_at else "-"
        return f"{self.event_type} at {when}"
