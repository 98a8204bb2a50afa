"""Enqueue email (in the caller's transaction) and deliver it (the deliver_email worker).

`mail_enqueue` renders the message from templates/email/<template>/ and writes one Outbox row; it
never opens a network connection, so a request that sends mail costs one INSERT and an SMTP
outage cannot slow it down. `mail_deliver_due` is the worker's step: it claims due rows with
SELECT ... FOR UPDATE SKIP LOCKED (two workers never send one message twice), sends them, and
marks each sent or pushes it back with capped exponential backoff. A message is never dropped.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import formataddr
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import validate_email
from django.db import transaction
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import timezone, translation

from authserver.languages import email_language
from branding.email import brand_email_context
from mail.models import Outbox

logger = logging.getLogger(__name__)

_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,100}$")
# C0 controls, DEL and the Unicode line/paragraph separators: none belongs in a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
SUBJECT_MAX_LENGTH = 255
ERROR_MAX_LENGTH = 500
_RETRY_FIELDS = ["attempts", "last_attempt_at", "last_error", "next_attempt_at"]


class MailAddressInvalid(ValueError):
    """The recipient is not one plain email address (or the name holds control characters)."""


def _clean_address(address: str) -> str:
    address = (address or "").strip()
    if not address or _CONTROL.search(address) or any(ch in address for ch in ",;<>\"'"):
        raise MailAddressInvalid("not a single email address")
    try:
        validate_email(address)
    except ValidationError:
        raise MailAddressInvalid("not a valid email address") from None
    return address


def _one_line(text: str, limit: int) -> str:
    # Every control character (CR and LF included) becomes a space: a value from a user (a
    # display name, a client's name) can never start a new header line.
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


def mail_render(*, template: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text body, HTML body or "") from templates/email/<template>/: subject.txt,
    body.txt and the optional body.html. An operator overrides any of them by putting a file of
    the same name under AUTHSERVER_TEMPLATE_DIR (searched first). The brand's name, colour and
    logo are in the context (branding.email)."""
    if not _TEMPLATE_NAME.match(template):
        raise ValueError(f"bad email template name {template!r}")
    context = {**brand_email_context(), **context}
    base = f"email/{template}/"
    subject = _one_line(render_to_string(base + "subject.txt", context), SUBJECT_MAX_LENGTH)
    text = render_to_string(base + "body.txt", context)
    try:
        html = render_to_string(base + "body.html", context)
    except TemplateDoesNotExist:
        html = ""
    return subject, text, html


def mail_enqueue(
    *,
    to: str,
    template: str,
    context: dict[str, Any],
    to_name: str = "",
    from_email: str | None = None,
    language: str | None = None,
) -> Outbox:
    """Render `template` with `context` and queue the message for `to` (one address).

    Call it inside the transaction that makes the change the mail is about: the row commits or
    rolls back with it. `to_name` is an optional display name; control characters in it are
    replaced, and `to` must be one plain address (MailAddressInvalid otherwise), so neither can
    add a header or a recipient. Nothing is sent here and nothing is logged about the content.

    The message is written in `language` if given, else in the saved language of the user in
    the context (`user`), else in the language of the request that sends it (the active one):
    rendered here, once, so the worker needs no request and no user.
    """
    address = _clean_address(to)
    language = email_language(user=context.get("user"), preferred=language)
    with translation.override(language):
        subject, text, html = mail_render(template=template, context=context)
    name = _one_line(to_name, 100)
    return Outbox.objects.create(
        template=template,
        to=address,
        to_name=name,
        from_email=from_email or settings.DEFAULT_FROM_EMAIL,
        subject=subject,
        body_text=text,
        body_html=html,
    )


# --- Delivery (the worker) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRound:
    sent: int
    failed: int


def mail_retry_delay(attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: base * 2^(attempts-1), capped, with +-20% jitter
    so a queue that failed together does not retry in lockstep."""
    base = settings.AUTHSERVER_EMAIL_RETRY_BASE_SECONDS
    cap = settings.AUTHSERVER_EMAIL_RETRY_MAX_SECONDS
    delay = min(base * 2 ** min(max(attempts - 1, 0), 32), cap)
    return min(delay * random.uniform(0.8, 1.2), cap)  # noqa: S311 - jitter, not a secret


def _message(row: Outbox, connection) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=row.subject,
        body=row.body_text,
        from_email=row.from_email,
        to=[formataddr((row.to_name, row.to)) if row.to_name else row.to],
        connection=connection,
        headers={"Auto-Submitted": "auto-generated"},
    )
    if row.body_html:
        message.attach_alternative(row.body_html, "text/html")
    return message


def _error_text(exc: BaseException) -> str:
    # The class and the server's reply code/text; never the message (it may hold a link).
    code = getattr(exc, "smtp_code", None)
    text = exc.__class__.__name__ + (f" {code}" if code else "")
    detail = getattr(exc, "smtp_error", None) or (str(exc) if not code else "")
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    if detail:
        text += f": {_one_line(str(detail), 300)}"
    return text[:ERROR_MAX_LENGTH]


def mail_deliver_due(*, limit: int = 100, now: datetime | None = None) -> DeliveryRound:
    """Send up to `limit` due messages, one transaction per message.

    Each row is claimed with FOR UPDATE SKIP LOCKED and stays locked until its outcome commits,
    so a second worker skips it. A failure to reach the server ends the round (the rest would
    fail alike); the failed row waits mail_retry_delay(attempts) before its next try.
    """
    sent = failed = 0
    connection = None
    try:
        for _ in range(limit):
            with transaction.atomic():
                moment = now or timezone.now()
                row = (
                    Outbox.objects.select_for_update(skip_locked=True)
                    .filter(status=Outbox.Status.PENDING, next_attempt_at__lte=moment)
                    .order_by("next_attempt_at", "id")
                    .first()
                )
                if row is None:
                    break
                row.attempts += 1
                row.last_attempt_at = moment
                try:
                    if connection is None:
                        connection = get_connection(fail_silently=False)
                        connection.open()
                    _message(row, connection).send()
                except Exception as exc:  # noqa: BLE001 - every failure is retried, none dropped
                    failed += 1
                    row.last_error = _error_text(exc)
                    row.next_attempt_at = moment + timedelta(seconds=mail_retry_delay(row.attempts))
                    row.save(update_fields=_RETRY_FIELDS)
                    logger.warning(
                        "mail: delivery of outbox %s (%s) failed, attempt %s, retry in %.0f s: %s",
                        row.pk,
                        row.template,
                        row.attempts,
                        (row.next_attempt_at - moment).total_seconds(),
                        row.last_error,
                    )
                    if connection is not None:
                        with contextlib.suppress(Exception):  # already broken
                            connection.close()
                        connection = None
                    break
                row.status = Outbox.Status.SENT
                row.sent_at = timezone.now()
                row.last_error = ""
                # The link in the body has done its job: do not keep it at rest.
                row.body_text = row.body_html = ""
                row.save()
                sent += 1
                logger.info("mail: delivered outbox %s (%s)", row.pk, row.template)
    finally:
        if connection is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                connection.close()
    return DeliveryRound(sent=sent, failed=failed)


def mail_sent_purge(*, older_than_days: int, now: datetime | None = None) -> int:
    """Delete delivered rows older than the retention; pending rows are never deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=older_than_days)
    deleted, _ = Outbox.objects.filter(status=Outbox.Status.SENT, sent_at__lt=cutoff).delete()
    return deleted
