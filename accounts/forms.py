"""Forms of the hosted pages. They check shape only; the login rules are in accounts.services."""

from __future__ import annotations

from django import forms

# Generous for any real password, small enough that nobody makes us hash megabytes.
PASSWORD_MAX_LENGTH = 1024


class LoginForm(forms.Form):
    username = forms.CharField(
        label="Username or email",
        max_length=254,
        error_messages={"required": "Enter your username or email address."},
    )
    password = forms.CharField(
        label="Password",
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False),
        error_messages={"required": "Enter your password."},
    )


class PasswordForgotForm(forms.Form):
    login = forms.CharField(
        label="Username or email",
        max_length=254,
        error_messages={"required": "Enter your username or email address."},
    )


class PasswordResetForm(forms.Form):
    """The new password, typed twice. The validators run in the service (they need the user)."""

    new_password1 = forms.CharField(
        label="New password",
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False),
        error_messages={"required": "Enter a new password."},
    )
    new_password2 = forms.CharField(
        label="New password again",
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False),
        error_messages={"required": "Type the new password again."},
    )

    def clean(self):
        data = super().clean()
        one, two = data.get("new_password1"), data.get("new_password2")
        if one and two and one != two:
            self.add_error("new_password2", "The two passwords are not the same.")
        return data
