"""The outbox: every email authserver sends is first a row here, written in the same database
transaction as the change that caused it, then delivered by `manage.py deliver_email`.

A request never talks to an SMTP server: if the transaction commits, the message will be sent
(possibly late, never lost); if it rolls back, the message never existed.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Outbox(models.Model):
    """One email to one recipient, rendered when it was enqueued (mail.services.mail_enqueue).

    The bodies may hold single-use links: they are blanked once the message is delivered, never
    logged, and not shown in the admin.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    template = models.CharField("template", max_length=100)
    to = models.EmailField("recipient", max_length=254)
    to_name = models.CharField("recipient name", max_length=100, blank=True)
    from_email = models.CharField("from", max_length=320)
    subject = models.CharField(max_length=255)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The worker picks rows whose next_attempt_at has come; each failure pushes it back (capped
    # exponential backoff). A message that keeps failing stays pending: it is never dropped.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "outgoing email"
        verbose_name_plural = "outbox"
        indexes = [
            # The worker's query: pending rows in due order (a partial index stays small).
            models.Index(
                fields=["next_attempt_at"],
                name="mail_outbox_due_idx",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["-created_at"], name="mail_outbox_created_idx"),
        ]

    def __str__(self) -> str:  # no body, no link: safe in logs and the admin
        return f"{self.template} to {self.to} ({self.status})"
