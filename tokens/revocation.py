"""Revoked access tokens that have no session (RFC 7009 for client_credentials tokens).

An access token of a session is revoked by ending its session (sessions.services), which every
check of such a token already consults. A token without a session has nothing to end: it is put
on a deny-list by `jti` until it would have expired, and checked there (one primary-key lookup)
wherever a session-less token is accepted. Rows are deleted by purge_expired_sessions once the
token has expired anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone

from tokens.models import RevokedAccessToken


def access_token_deny(*, jti: str, exp: int) -> bool:
    """Refuse the access token `jti` until its expiry `exp` (seconds since the epoch). False if
    it was already refused."""
    expires_at = datetime.fromtimestamp(exp, tz=UTC)
    _, created = RevokedAccessToken.objects.get_or_create(
        jti=jti, defaults={"expires_at": expires_at}
    )
    return created


def access_token_is_denied(*, jti: str) -> bool:
    return RevokedAccessToken.objects.filter(pk=jti).exists()


def revoked_access_tokens_purge(*, now: datetime | None = None, dry_run: bool = False) -> int:
    """Delete deny-list rows of tokens that have expired: signature checks refuse them now."""
    expired = RevokedAccessToken.objects.filter(expires_at__lt=now or timezone.now())
    if dry_run:
        return expired.count()
    return expired.delete()[0]
