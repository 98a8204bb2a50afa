from django.apps import AppConfig


class MailConfig(AppConfig):
    """Outgoing email: the outbox table and the worker that delivers it (deliver_email)."""

    name = "mail"
    verbose_name = "Mail"
