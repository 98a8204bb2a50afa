"""Email verification: confirmation links for new addresses, and the change of an address.

An address becomes `email_verified` only when the person follows a single-use link sent to it
(or an admin vouches for it, or it came with an invitation, which was itself such a link). A
*changed* address is not written on the account when it is requested: it travels on the link,
and replaces the old one only when the link is confirmed; the old address is then told. The
links are the generic single-use link tokens of mail/ (random, stored only as a hash, consumed
atomically), purpose "verify_email"; the mail goes through the outbox in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.db import transaction
from django.urls import reverse

from accounts import emaillinks
from accounts.emailaddr import EmailInvalid, email_normalize
from accounts.links import account_links_end
from accounts.models import AccountLink, User
from audit.events import EventType
from audit.services import audit_event_record
from authserver.conf import get_config
from mail.services import mail_enqueue


class EmailChangeRejected(ValueError):
    """The new address is not acceptable (shape only; never says whether it is in use)."""


class EmailConfirmFailed(Exception):
    """The link cannot confirm anything. `reason` picks the page's text: invalid (unknown,
    tampered, used or expired: one text, so a probe learns nothing), taken (the new address was
    claimed by another account meanwhile), inactive."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class EmailConfirmed:
    user: User
    changed: bool  # the address on the account changed (a change request was confirmed)
    activated: bool  # a pending sign-up became an active account


def _absolute(request, path: str) -> str:
    """The address of one of our pages in a mail: always under AUTHSERVER_ISSUER, never built
    from the request's Host header (which a client chooses). `request` is unused, kept so
    callers read alike."""
    del request
    return get_config().issuer.rstrip("/") + path


def _actor_details(actor) -> dict[str, str]:
    if actor is None or getattr(actor, "pk", None) is None:
        return {}
    return {"actor_sub": str(actor.public_id), "actor_username": actor.get_username()}


def confirm_url(token: str, request=None) -> str:
    # The token rides in the query string: access logs keep only the path, and the page moves
    # it into the session and redirects to the token-less address at once.
    return _absolute(request, reverse("email_confirm") + "?" + urlencode({"token": token}))


def email_verification_send(
    *, user: User, email: str | None = None, request=None, actor=None, signup: bool = False
) -> None:
    """Mail a confirmation link for `email` (default: the account's own address) to that
    address, in the caller's transaction, and audit it. A newer link for the same account
    makes the older ones useless (mail's link model keeps one live link per user and purpose).
    `signup`: the link also activates the pending account made by the sign-up page."""
    target = email or user.email
    with transaction.atomic():
        token = emaillinks.link_issue(
            purpose=emaillinks.VERIFY_EMAIL,
            user=user,
            email=target,
            lifetime=get_config().email_verify_link_seconds,
            signup=signup,
        )
        mail_enqueue(
            to=target,
            template="verify_email",
            context={
                "username": user.get_username(),
                "url": confirm_url(token, request),
                "change": target.lower() != (user.email or "").lower(),
                "signup": signup,
                "hours": max(1, get_config().email_verify_link_seconds // 3600),
            },
            language=user.language,
        )
        audit_event_record(
            event=EventType.EMAIL_VERIFICATION_SENT,
            user=user,
            request=request,
            details={
                **_actor_details(actor),
                "change": target.lower() != (user.email or "").lower(),
                "signup": signup,
            },
        )


def email_signup_pending(user: User) -> bool:
    """Whether `user` is a sign-up waiting for its confirmation (inactive, unverified, never
    signed in, and its latest confirmation link was a sign-up's): a new link for it must also
    activate it. An account an admin deactivated is not one."""
    if user.is_active or user.email_verified or user.last_login is not None:
        return False
    latest = (
        AccountLink.objects.filter(user=user, purpose=AccountLink.Purpose.VERIFY_EMAIL)
        .order_by("-created_at", "-id")
        .only("data")
        .first()
    )
    return bool(latest and latest.data.get("signup"))


def email_change_request(*, user: User, new_email: str, request=None) -> None:
    """Ask to change the account's address to `new_email`: a confirmation link goes to the new
    address, which replaces the current one only when it is confirmed (email_confirm).

    The answer is the same whether or not another account holds `new_email` (the page must not
    be a way to test addresses): then that address is told someone tried to use it instead,
    and nothing else happens. Raises EmailChangeRejected for an address of a bad shape.
    """
    try:
        new_email = email_normalize(new_email)
    except EmailInvalid as exc:
        raise EmailChangeRejected(str(exc)) from None
    with transaction.atomic():
        audit_event_record(
            event=EventType.EMAIL_CHANGE_REQUESTED,
            user=user,
            request=request,
            details={"new_domain": new_email.rsplit("@", 1)[1]},
        )
        if new_email == (user.email or "").lower():
            if not user.email_verified:
                email_verification_send(user=user, request=request)
            return
        holder = User.objects.matching("email", new_email).exclude(pk=user.pk).exists()
        if holder:
            mail_enqueue(
                to=new_email,
                template="email_in_use",
                context={"login_url": _absolute(request, reverse("login"))},
            )
            return
        email_verification_send(user=user, email=new_email, request=request)


@dataclass(frozen=True, slots=True)
class PendingConfirmation:
    digest: str
    email: str  # the address the link confirms
    username: str  # the account it is for (the mail named it too)
    signup: bool


def email_link_check(*, token: str | None = None, digest: str | None = None) -> PendingConfirmation:
    """What a live confirmation link (given its token or digest) would confirm, for the page a
    GET shows (only the POST consumes it); EmailConfirmFailed("invalid") otherwise."""
    link = emaillinks.link_peek(purpose=emaillinks.VERIFY_EMAIL, token=token, digest=digest)
    user = User.objects.filter(pk=link.user_id).first() if link is not None else None
    if link is None or user is None:
        raise EmailConfirmFailed("invalid")
    return PendingConfirmation(
        digest=link.digest, email=link.email, username=user.get_username(), signup=link.signup
    )


def email_confirm(*, digest: str, request=None) -> EmailConfirmed:
    """Consume a confirmation link: its address becomes the account's verified address.

    One transaction: the link is consumed (atomically: of any number of concurrent
    confirmations exactly one gets it), the account row locked and updated, the old address
    told when it changed, and the event audited. If anything refuses, nothing changes and the
    link stays usable (except when it was invalid to begin with)."""
    with transaction.atomic():
        link = emaillinks.link_consume(purpose=emaillinks.VERIFY_EMAIL, digest=digest)
        if link is None:
            raise EmailConfirmFailed("invalid")
        user = User.objects.select_for_update().filter(pk=link.user_id).first()
        if user is None:
            raise EmailConfirmFailed("invalid")
        target = link.email.lower()
        old = (user.email or "").lower()
        changed = target != old
        activated = False
        if changed:
            if User.objects.matching("email", target).exclude(pk=user.pk).exists():
                raise EmailConfirmFailed("taken")
            user.email = target
        user.email_verified = True
        fields = ["email", "email_verified"]
        if not user.is_active:
            if link.signup and user.last_login is None:
                user.is_active = True
                fields.append("is_active")
                activated = True
            else:
                # An account an admin deactivated is not brought back by a link.
                raise EmailConfirmFailed("inactive")
        user.save(update_fields=fields)
        if changed:
            # A reset link mailed to the old address no longer opens the account.
            account_links_end(user=user, purpose=AccountLink.Purpose.RESET)
        if changed and old:
            mail_enqueue(
                to=old,
                template="email_changed",
                context={
                    "username": user.get_username(),
                    "new_email": target,
                    "login_url": _absolute(request, reverse("login")),
                },
                language=user.language,
            )
        audit_event_record(
            event=EventType.EMAIL_CHANGED if changed else EventType.EMAIL_VERIFIED,
            user=user,
            request=request,
            details={"activated": activated}
            if not changed
            else {"old_domain": old.rsplit("@", 1)[-1], "new_domain": target.rsplit("@", 1)[1]},
        )
    return EmailConfirmed(user=user, changed=changed, activated=activated)


def email_admin_prepare(*, user: User, changed_fields, created: bool) -> bool:
    """Before an admin's save: a new or changed address is unverified unless the admin set the
    state in the same form (vouching for it). True when a confirmation link should follow."""
    if "email_verified" in changed_fields:
        return False
    if (created or "email" in changed_fields) and user.email:
        user.email_verified = False
        return True
    return False


def email_admin_saved(
    *, user: User, changed_fields, send_link: bool, actor=None, request=None
) -> None:
    """After an admin's save: audit a change of the verified state (email.verified_set, with
    the new value), and mail a confirmation link to a new unverified address."""
    if "email_verified" in changed_fields:
        audit_event_record(
            event=EventType.EMAIL_VERIFIED_SET,
            user=user,
            request=request,
            details={**_actor_details(actor), "email_verified": bool(user.email_verified)},
        )
    if send_link:
        email_verification_send(user=user, request=request, actor=actor)
