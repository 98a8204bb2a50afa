"""The user model, fixed from the first migration (Django cannot swap it later)."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import models
from django.db.models.functions import Lower


class UserManager(DjangoUserManager):
    def get_by_natural_key(self, username: str | None) -> User:
        # Usernames are unique case-insensitively, so look them up the same way.
        return self.get(username__iexact=username)


class User(AbstractUser):
    """A person who signs in to authserver.

    `public_id` is the token `sub`: a random UUID, stable for the account's life, that reveals
    nothing (the integer primary key would leak sign-up order and the number of accounts).
    """

    public_id = models.UUIDField("public id (sub)", default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField("email address", max_length=254)
    # Set by accounts.services.user_set_password; sessions started before it cannot refresh.
    password_changed_at = models.DateTimeField("password changed at", null=True, blank=True)

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

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()
