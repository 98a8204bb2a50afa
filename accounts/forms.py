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
