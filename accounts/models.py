"""The user model, fixed from the first migration (Django cannot swap it later)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


def language_choices() -> list[tuple[str, str]]:
    """The languages a user may save (settings.LANGUAGES, read when a form is built)."""
    return list(settings.LANGUAGES)


class UserQuerySet(models.QuerySet):
    def matching(self, field: str, value: str) -> UserQuerySet:
        """Users whose `field` (username or email) equals `value` case-insensitively, found
        through the unique index on LOWER(field). Django's `__iexact` compiles to UPPER(...),
        which no index serves: it read every user on each sign-in (the data-scale benchmark
        found a login costing twice as much at a million users)."""
        return self.alias(_folded=Lower(field)).filter(_folded=Lower(models.Value(value)))


class UserManager(DjangoUserManager.from_queryset(UserQuerySet)):
    def get_by_natural_key(self, username: str | None) -> User:
        # Usernames are unique case-insensitively, so look them up the same way.
        return self.matching("username", username or "").get()


class User(AbstractUser):
    """A person who signs in to authserver.

    `public_id` is the token `sub`: a random UUID, stable for the account's life, that reveals
    nothing (the integer primary key would leak sign-up order and the number of accounts).
    """

    public_id = models.UUIDField("public id (sub)", default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField("email address", max_length=254)
    # Whether the person proved they receive mail at `email` (a confirmation link, an
    # invitation, or an admin vouching for it). Released as the OpenID Connect claim
    # email_verified. Accounts that existed before the field start unverified (README).
    email_verified = models.BooleanField("email verified", default=False, db_default=False)
    # Set by accounts.services.user_set_password; sessions started before it cannot refresh.
    password_changed_at = models.DateTimeField("password changed at", null=True, blank=True)
    # The language of the pages and emails this person gets, a code of settings.LANGUAGES;
    # empty: the browser's (authserver/languages.py has the whole order).
    language = models.CharField(
        "language",
        max_length=16,
        blank=True,
        default="",
        db_default="",
        choices=language_choices,
        help_text="Pages and emails in this language; empty: the browser's language.",
    )

    objects = UserManager()

    REQUIRED_FIELDS = ["email"]

    class Meta:
        verbose_name = "user"
        verbose_name_plural = "users"
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with this email address already exists.",
            ),
            models.UniqueConstraint(
                Lower("username"),
                name="accounts_user_username_ci_unique",
                violation_error_message="A user with this username already exists.",
            ),
        ]

    @property
    def sub(self) -> str:
        return str(self.public_id)

    # --- Every password change and deactivation ends the user's sessions -------------------
    # Not only the services in accounts/services.py change passwords: `manage.py
    # changepassword`, a shell's set_password() and third-party code call the model directly.
    # So the rule lives at the one place they all pass through, save(). Django's hasher upgrade
    # at sign-in (check_password's setter) is not a change: it calls set_password() and then
    # clears `_password` before saving, which is how it is told apart here.
    _password_replaced = False
    _password_disabled = False
    _stored_active: bool | None = None

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        if "is_active" in field_names:
            instance._stored_active = instance.is_active
        return instance

    def set_password(self, raw_password) -> None:
        super().set_password(raw_password)
        self._password_replaced = True

    def set_unusable_password(self) -> None:
        super().set_unusable_password()
        self._password_replaced = self._password_disabled = True

    def save(self, *args, **kwargs) -> None:
        existing = self.pk is not None and not self._state.adding
        password_changed = (
            existing
            and self._password_replaced
            and (self._password is not None or self._password_disabled)
        )
        deactivated = existing and self._stored_active is True and not self.is_active
        if password_changed:
            self.password_changed_at = timezone.now()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "password_changed_at"}
        super().save(*args, **kwargs)
        self._password_replaced = self._password_disabled = False
        self._stored_active = self.is_active
        if password_changed or deactivated:
            # accounts sits below tokens; the import is local so the layers stay one-way.
            from sessions.models import Session
            from sessions.services import user_sessions_revoke

            reason = Session.RevokeReason.PASSWORD_CHANGED
            if deactivated:
                reason = Session.RevokeReason.USER_INACTIVE
            user_sessions_revoke(user=self, reason=reason)

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()


class AccountLink(models.Model):
    """A single-use link mailed to someone: password reset, address verification, invitation.

    Only the SHA-256 of the random token is stored, so a copy of the table opens nothing. A link
    is live until `expires_at`, until it is used (`used_at`, set by one atomic UPDATE, so of
    several concurrent uses exactly one wins) or until it is ended (`ended_at`: a newer link for
    the same purpose was issued, or the password changed). Services: accounts/links.py.
    """

    class Purpose(models.TextChoices):
        RESET = "reset", "Password reset"
        VERIFY_EMAIL = "verify_email", "Email verification"
        INVITE = "invite", "Invitation"

    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    user = models.ForeignKey(
        User, on_delete=models.CASCADE, null=True, blank=True, related_name="account_links"
    )
    # The address the link was sent to (for verify_email: the address being confirmed).
    email = models.EmailField("email address", max_length=254, blank=True)
    digest = models.CharField("token SHA-256", max_length=64, unique=True, editable=False)
    # Purpose-specific data the link carries (never a secret).
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "account link"
        verbose_name_plural = "account links"
        indexes = [
            models.Index(fields=["user", "purpose"], name="accounts_link_user_purpose_idx"),
            models.Index(fields=["expires_at"], name="accounts_link_expires_idx"),
        ]

    def __str__(self) -> str:  # never the token (the digest is not shown either)
        return f"{self.get_purpose_display()} link {self.pk}"
