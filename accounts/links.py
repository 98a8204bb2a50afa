"""Single-use links (accounts.models.AccountLink): issue, check, consume.

The token is 32 random bytes (urlsafe base64, 43 characters) handed to the caller once, to put in
a mail; the table keeps its SHA-256. Checking looks the digest up (an index probe, nothing to time
against a secret). Consuming is one conditional UPDATE: PostgreSQL re-checks the condition on the
row after a concurrent winner commits, so of N simultaneous uses exactly one gets the link.

Reset links also die when the password changes after they were issued (checked against
User.password_changed_at, which every password change stamps) and when the account is inactive.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import AccountLink, User

TOKEN_BYTES = 32
# What a token from account_link_issue looks like; anything else is rejected without a query.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class AccountLinkInvalid(Exception):
    """The link cannot be used. `reason` ("unknown", "expired", "used", "ended") is for the
    page's wording and the audit trail; none of them says whether an account exists."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"account link {reason}")


def account_link_digest(token: str) -> str:
    """The stored form of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _digest_of(token: str | None, digest: str | None) -> str:
    if digest is not None:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise AccountLinkInvalid("unknown")
        return digest
    if not token or not _TOKEN_SHAPE.match(token):
        raise AccountLinkInvalid("unknown")
    return account_link_digest(token)


@transaction.atomic
def account_link_issue(
    *,
    purpose: str,
    email: str,
    ttl: int | timedelta,
    user: User | None = None,
    data: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[AccountLink, str]:
    """Create a link and return (row, token). The token exists only in the return value: put
    it in the mail, never in a log. Earlier live links of the same purpose for the same user
    (or, without a user, the same address) are ended: only the newest works."""
    now = now or timezone.now()
    if isinstance(ttl, int):
        ttl = timedelta(seconds=ttl)
    live = AccountLink.objects.filter(purpose=purpose, used_at__isnull=True, ended_at__isnull=True)
    if user is not None:
        live = live.filter(user=user)
    else:
        live = live.filter(user__isnull=True, email=email)
    live.update(ended_at=now)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = AccountLink.objects.create(
        purpose=purpose,
        user=user,
        email=email,
        digest=account_link_digest(token),
        data=data or {},
        created_at=now,
        expires_at=now + ttl,
    )
    return link, token


def _why_dead(link: AccountLink, now: datetime) -> str | None:
    if link.used_at is not None:
        return "used"
    if link.ended_at is not None:
        return "ended"
    if link.expires_at <= now:
        return "expired"
    if link.purpose == AccountLink.Purpose.RESET:
        user = link.user
        if user is None or not user.is_active:
            return "ended"
        if user.password_changed_at is not None and user.password_changed_at >= link.created_at:
            return "ended"
    return None


def account_link_check(
    *,
    purpose: str,
    token: str | None = None,
    digest: str | None = None,
    now: datetime | None = None,
) -> AccountLink:
    """The live link for `token` (or its `digest`), without using it up; AccountLinkInvalid
    otherwise. For showing a form; the action that follows calls account_link_consume."""
    now = now or timezone.now()
    found = _digest_of(token, digest)
    link = AccountLink.objects.select_related("user").filter(digest=found, purpose=purpose).first()
    if link is None:
        raise AccountLinkInvalid("unknown")
    if reason := _why_dead(link, now):
        raise AccountLinkInvalid(reason)
    return link


def account_link_consume(
    *,
    purpose: str,
    token: str | None = None,
    digest: str | None = None,
    now: datetime | None = None,
) -> AccountLink:
    """Use the link up, atomically: of concurrent calls with one token exactly one returns the
    link, the others raise AccountLinkInvalid("used"). Run it in the transaction of the change
    the link authorises, so a failure there gives the link back."""
    now = now or timezone.now()
    link = account_link_check(purpose=purpose, token=token, digest=digest, now=now)
    won = (
        AccountLink.objects.filter(
            Q(pk=link.pk, used_at__isnull=True, ended_at__isnull=True, expires_at__gt=now)
        ).update(used_at=now)
        == 1
    )
    if not won:
        raise AccountLinkInvalid("used")
    link.used_at = now
    return link


def account_links_end(*, user: User, purpose: str, now: datetime | None = None) -> int:
    """End every live link of `purpose` for `user` (e.g. after the address changed)."""
    return AccountLink.objects.filter(
        user=user, purpose=purpose, used_at__isnull=True, ended_at__isnull=True
    ).update(ended_at=now or timezone.now())


def account_links_purge(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete links that expired more than `older_than` ago."""
    cutoff = (now or timezone.now()) - older_than
    deleted, _ = AccountLink.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
