"""Remembered consent: what a user approved for a client, so they are asked only once."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.events import EventType
from audit.services import audit_event_record
from oauth.models import AuthorizationCode, Client, Consent
from sessions.models import Session
from sessions.services import client_sessions_revoke


def consent_covers(*, user, client: Client, scopes: list[str]) -> bool:
    """Whether `user` already approved every one of `scopes` for `client`."""
    consent = Consent.objects.filter(user=user, client_id=client.pk).first()
    return consent is not None and consent.covers(scopes)


@transaction.atomic
def consent_grant(
    *, user, client: Client, scopes: list[str], request=None, now: datetime | None = None
) -> Consent:
    """Record approval of `scopes` (added to what was approved before) and audit it."""
    now = now or timezone.now()
    consent, created = Consent.objects.select_for_update().get_or_create(
        user=user,
        client_id=client.pk,
        defaults={"scope": " ".join(scopes), "created_at": now, "updated_at": now},
    )
    if not created:
        merged = list(dict.fromkeys([*consent.scope.split(), *scopes]))
        consent.scope = " ".join(merged)
        consent.updated_at = now
        consent.save(update_fields=["scope", "updated_at"])
    audit_event_record(
        event=EventType.CONSENT_GRANTED,
        user=user,
        client_id=client.client_id,
        request=request,
        details={"scope": " ".join(scopes)},
    )
    return consent


def consent_deny_record(*, user, client: Client, scopes: list[str], request=None) -> None:
    audit_event_record(
        event=EventType.CONSENT_DENIED,
        user=user,
        client_id=client.client_id,
        request=request,
        details={"scope": " ".join(scopes)},
    )


@transaction.atomic
def consent_withdraw(
    *, consent: Consent, actor=None, request=None, now: datetime | None = None
) -> int:
    """Withdraw what `consent.user` approved for `consent.client` and end the grant (issue
    13.7): the user's sessions with the client are revoked (refresh tokens stop working, access
    tokens are refused at introspection and userinfo), and their unredeemed authorization codes
    for it expire, so the client keeps nothing the user had approved. The next authorization
    asks again. Called by the admin (one row or many) and the user's own account page. Returns
    how many sessions ended."""
    now = now or timezone.now()
    user, client = consent.user, consent.client
    AuthorizationCode.objects.filter(user=user, client=client, consumed_at__isnull=True).update(
        expires_at=now
    )
    ended = client_sessions_revoke(
        client_id=client.client_id,
        user=user,
        reason=Session.RevokeReason.USER_ENDED if actor == user else Session.RevokeReason.ADMIN,
        now=now,
    )
    Consent.objects.filter(pk=consent.pk).delete()
    details: dict = {"scope": consent.scope, "sessions_ended": len(ended)}
    if actor is not None and actor != user:
        details["actor"] = actor.get_username()
    audit_event_record(
        event=EventType.CONSENT_WITHDRAWN,
        user=user,
        client_id=client.client_id,
        request=request,
        details=details,
    )
    return len(ended)
