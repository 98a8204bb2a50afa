"""User admin: search, filters, and no password hash on any page."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserCreationForm
from django.urls import reverse
from django.utils.html import format_html

from accounts.models import User


class UserAdminCreationForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


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
    list_display = ("username", "email", "public_id", "is_active", "is_staff", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "groups", "date_joined", "last_login")
    search_fields = ("username", "email", "first_name", "last_name", "=public_id")
    ordering = ("username",)
    readonly_fields = ("public_id", "password_status", "last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("username", "public_id", "password_status")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
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
