"""Staff users with exactly the admin permissions a test names, and a snapshot of the database
to prove an admin request changed nothing."""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session as BrowserSession


def permissions(*names: str) -> list[Permission]:
    """`app_label.codename` names -> Permission rows (each must exist)."""
    rows = []
    for name in names:
        app_label, codename = name.split(".")
        rows.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return rows


def staff_with(make_user, *names: str, username: str = "staff"):
    """An active staff user (not a superuser) holding only the permissions `names`."""
    user = make_user(username=username, is_staff=True)
    user.user_permissions.set(permissions(*names))
    return user


def view_only_staff(make_user, username: str = "viewer"):
    """Every view_* permission there is, and nothing else."""
    user = make_user(username=username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return user


def _plain(value):
    return bytes(value) if isinstance(value, memoryview) else value


def database_snapshot() -> dict[str, list[dict]]:
    """Every row of every table (m2m tables included), except the browser sessions the test
    client itself writes (sign-in, admin messages)."""
    snapshot = {}
    for model in apps.get_models(include_auto_created=True):
        if model is BrowserSession:
            continue
        rows = model._base_manager.order_by("pk").values()
        snapshot[model._meta.label] = [
            {key: _plain(value) for key, value in row.items()} for row in rows
        ]
    return snapshot
