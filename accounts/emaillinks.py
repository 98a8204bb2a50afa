"""The two link purposes of verification and invitations, over mail's single-use links
(accounts/links.py): one place that says what a confirmation or invitation link carries.

A verify_email link carries the address it confirms (for a change: the *new* address, which is
written on the account only when the link is used) and, in `data`, whether it finishes a
sign-up (only such a link may activate the account). An invitation link has no user yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from accounts.links import (
    AccountLinkInvalid,
    account_link_check,
    account_link_consume,
    account_link_issue,
)
from accounts.models import AccountLink, User

VERIFY_EMAIL = AccountLink.Purpose.VERIFY_EMAIL
INVITE = AccountLink.Purpose.INVITE


@dataclass(frozen=True, slots=True)
class Link:
    user_id: int | None
    email: str
    signup: bool
    digest: str  # what a page keeps in the browser's session instead of the token


def _view(link: AccountLink) -> Link:
    return Link(
        user_id=link.user_id,
        email=link.email,
        signup=bool(link.data.get("signup")),
        digest=link.digest,
    )


def link_issue(
    *, purpose: str, user: User | None, email: str, lifetime: int, signup: bool = False
) -> str:
    """A new link (older live ones of the same purpose and user end); returns the token."""
    _, token = account_link_issue(
        purpose=purpose,
        email=email,
        ttl=lifetime,
        user=user,
        data={"signup": True} if signup else None,
    )
    return token


def link_peek(*, purpose: str, token: str | None = None, digest: str | None = None) -> Link | None:
    """The live link for `token` (or its `digest`), not used up; None for unknown, tampered,
    used, ended, expired."""
    try:
        return _view(account_link_check(purpose=purpose, token=token, digest=digest))
    except AccountLinkInvalid:
        return None


def link_consume(*, purpose: str, digest: str) -> Link | None:
    """Use the link up (call inside the transaction of the change it authorises); None when
    it is not live or a concurrent use won."""
    try:
        return _view(account_link_consume(purpose=purpose, digest=digest))
    except AccountLinkInvalid:
        return None
