"""Write-side rules about users: every change to an account goes through here."""

from __future__ import annotations

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import User


class UserCreateError(ValueError):
    """The account cannot be created; the message is safe to show to the operator."""


@transaction.atomic
def user_create(
    *,
    username: str,
    email: str,
    password: str | None,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    """Create an account. The password is validated with the configured validators.

    `password=None` creates an account that cannot sign in with a password.
    """
    username = User.normalize_username(username.strip())
    email = User.objects.normalize_email(email.strip()).lower()
    if not username:
        raise UserCreateError("username must not be empty")
    if not email or "@" not in email:
        raise UserCreateError("email must be an email address")
    if User.objects.filter(username__iexact=username).exists():
        raise UserCreateError(f"a user named {username!r} already exists")
    if User.objects.filter(email__iexact=email).exists():
        raise UserCreateError("a user with this email already exists")
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_superuser)
    if password is None:
        user.set_unusable_password()
    else:
        try:
            password_validation.validate_password(password, user=user)
        except ValidationError as exc:
            raise UserCreateError("password rejected: " + " ".join(exc.messages)) from None
        user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        # A concurrent creation of the same username/email won the race.
        raise UserCreateError("a user with this username or email already exists") from None
    return user
