"""User admin: search, filters, and no password hash on any page.

Every write goes through accounts.services (audited there): saving a user, changing or disabling
a password, deactivating, deleting, and clearing a login lockout. A password change or a
deactivation also ends the user's sessions (tokens.sessions.user_sessions_revoke); the admin is
the one place in accounts/ that calls into tokens/, as a view wiring two services together.
"""

from __future__ import annotations

from contextvars import ContextVar

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserCreationForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import User
from accounts.services import (
    LoginUnavailable,
    login_lockout_clear,
    user_admin_save,
    user_deactivate,
    user_delete,
    user_password_disable,
    user_set_password,
)
from accounts.throttling import CacheUnavailable, login_lockout_status
from tokens.models import Session
from tokens.sessions import user_sessions_revoke

# The request of the admin password-change view, for the form's save() (Django builds that form
# without the request). A ContextVar is per thread/task, so concurrent requests never mix.
_password_change_request: ContextVar[HttpRequest | None] = ContextVar(
    "password_change_request", default=None
)


class UserAdminCreationForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class UserAdminPasswordChangeForm(AdminPasswordChangeForm):
    """Django's admin password form, saving through user_set_password / user_password_disable
    so the change is stamped (ending older sessions) and audited."""

    def save(self, commit: bool = True) -> User:
        request = _password_change_request.get()
        actor = getattr(request, "user", None)
        if self.cleaned_data["set_usable_password"]:
            user_set_password(
                user=self.user,
                password=self.cleaned_data["password1"],
                actor=actor,
                request=request,
            )
        else:
            user_password_disable(user=self.user, actor=actor, request=request)
        # The credential changed: every session of the user ends now.
        user_sessions_revoke(user=self.user, reason=Session.RevokeReason.PASSWORD_CHANGED)
        return self.user


class UserAdminChangeForm(forms.ModelForm):
    """Django's change form shows a summary of the password hash; ours leaves it out entirely."""

    class Meta:
        model = User
        fields = (
            "username",
            "email",
            "first_name",
            "last_name",
            "is_active",
            "is_staff",
            "is_superuser",
            "groups",
            "user_permissions",
        )


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserAdminChangeForm
    add_form = UserAdminCreationForm
    change_password_form = UserAdminPasswordChangeForm
    actions = ["clear_login_lockout", "deactivate_users"]
    list_display = ("username", "email", "public_id", "is_active", "is_staff", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "groups", "date_joined", "last_login")
    search_fields = ("username", "email", "first_name", "last_name", "=public_id")
    ordering = ("username",)
    readonly_fields = (
        "public_id",
        "password_status",
        "last_login",
        "date_joined",
        "password_changed_at",
        "login_lockout",
    )
    fieldsets = (
        (None, {"fields": ("username", "public_id", "password_status")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined", "password_changed_at")}),
        ("Login protection", {"fields": ("login_lockout",)}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "password1", "password2"),
            },
        ),
    )

    @admin.display(description="password")
    def password_status(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        state = "set" if obj.has_usable_password() else "not set (cannot sign in with a password)"
        url = reverse("admin:auth_user_password_change", args=[obj.pk])
        return format_html('{} &middot; <a href="{}">Change password</a>', state, url)

    @admin.display(description="login lockout")
    def login_lockout(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        try:
            status = login_lockout_status(user=obj, now=timezone.now())
        except CacheUnavailable:
            return "unknown (the cache is unavailable)"
        if status.locked:
            return (
                f"locked until {status.locked_until:%Y-%m-%d %H:%M:%S} UTC "
                '(use the action "Clear login lockout" to lift it)'
            )
        return f"not locked; {status.failures} recent failed attempt(s)"

    def user_change_password(self, request, id, form_url=""):
        token = _password_change_request.set(request)
        try:
            return super().user_change_password(request, id, form_url)
        finally:
            _password_change_request.reset(token)

    def save_model(self, request, obj, form, change) -> None:
        user_admin_save(
            user=obj, changed_fields=form.changed_data, actor=request.user, request=request
        )
        if change and not obj.is_active and "is_active" in form.changed_data:
            user_sessions_revoke(user=obj, reason=Session.RevokeReason.USER_INACTIVE)

    def delete_model(self, request, obj) -> None:
        user_delete(user=obj, actor=request.user, request=request)

    def delete_queryset(self, request, queryset) -> None:
        for user in queryset:
            user_delete(user=user, actor=request.user, request=request)

    @admin.action(description="Clear login lockout", permissions=["change"])
    def clear_login_lockout(self, request, queryset) -> None:
        cleared = 0
        try:
            for user in queryset:
                login_lockout_clear(user=user, actor=request.user, request=request)
                cleared += 1
        except LoginUnavailable:
            self.message_user(
                request,
                f"The cache is unavailable: cleared {cleared} of {len(queryset)} lockout(s).",
                messages.ERROR,
            )
            return
        self.message_user(request, f"Cleared the login lockout of {cleared} user(s).")

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate_users(self, request, queryset) -> None:
        count = 0
        for user in queryset.filter(is_active=True):
            user_deactivate(user=user, actor=request.user, request=request)
            user_sessions_revoke(user=user, reason=Session.RevokeReason.USER_INACTIVE)
            count += 1
        self.message_user(request, f"Deactivated {count} user(s).")
