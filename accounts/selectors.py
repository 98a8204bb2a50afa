"""Read-side queries about users."""

from __future__ import annotations

import uuid

from accounts.models import User


def user_get_by_login(*, login: str) -> User | None:
    """The active user whose username or email equals `login`, compared case-insensitively."""
    login = login.strip()
    if not login:
        return None
    field = "email" if "@" in login else "username"
    return User.objects.matching(field, login).filter(is_active=True).first()


def user_get_by_sub(*, sub: str) -> User | None:
    """The active user whose public id (token `sub`) is `sub`, or None for anything else."""
    try:
        public_id = uuid.UUID(sub)
    except (TypeError, ValueError):
        return None
    return User.objects.filter(public_id=public_id, is_active=True).first()
