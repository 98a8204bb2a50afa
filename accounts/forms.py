"""Forms of the hosted pages. They check shape only; the login rules are in accounts.services."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

# Generous for any real password, small enough that nobody makes us hash megabytes.
PASSWORD_MAX_LENGTH = 1024


class LoginForm(forms.Form):
    username = forms.CharField(
        label=_("Username or email"),
        max_length=254,
        error_messages={"required": _("Enter your username or email address.")},
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False),
        error_messages={"required": _("Enter your password.")},
    )


def _email_clean(value: str) -> str:
    from accounts.emailaddr import EmailInvalid, email_normalize

    try:
        return email_normalize(value)
    except EmailInvalid as exc:
        raise forms.ValidationError(str(exc)) from None


class _NewPasswordMixin:
    """Two password fields, equal, accepted by Django's password validators (against the
    username and address typed in the same form)."""

    def _check_passwords(self, *, username: str, email: str) -> None:
        from django.contrib.auth import password_validation

        from accounts.models import User

        password = self.cleaned_data.get("password1")
        again = self.cleaned_data.get("password2")
        if password and again and password != again:
            self.add_error("password2", _("The two passwords don’t match."))
            return
        if password:
            try:
                password_validation.validate_password(
                    password, user=User(username=username, email=email)
                )
            except forms.ValidationError as exc:
                for message in exc.messages:
                    self.add_error("password1", message)


def _username_field() -> forms.CharField:
    from django.contrib.auth.validators import UnicodeUsernameValidator

    return forms.CharField(
        label=_("Username"),
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        error_messages={"required": _("Choose a username.")},
        help_text=_("Up to 150 characters: letters, digits and @ . + - _ only."),
    )


def _password_fields() -> tuple[forms.CharField, forms.CharField]:
    return (
        forms.CharField(
            label=_("Password"),
            strip=False,
            max_length=PASSWORD_MAX_LENGTH,
            widget=forms.PasswordInput(render_value=False),
            error_messages={"required": _("Choose a password.")},
        ),
        forms.CharField(
            label=_("Password again"),
            strip=False,
            max_length=PASSWORD_MAX_LENGTH,
            widget=forms.PasswordInput(render_value=False),
            error_messages={"required": _("Type the password again.")},
        ),
    )


class SignupForm(_NewPasswordMixin, forms.Form):
    """The sign-up page's shape checks. Nothing here looks at existing accounts: whether the
    address or the name is in use is never a form error (accounts/registration.py)."""

    username = _username_field()
    email = forms.CharField(
        label=_("Email address"),
        max_length=254,
        error_messages={"required": _("Enter your email address.")},
    )
    password1, password2 = _password_fields()

    def __init__(self, *args, allowed_domains: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.allowed_domains = allowed_domains

    def clean_email(self) -> str:
        from accounts.emailaddr import email_domain_allowed

        email = _email_clean(self.cleaned_data["email"])
        if not email_domain_allowed(email, self.allowed_domains):
            allowed = ", ".join(self.allowed_domains)
            raise forms.ValidationError(
                _("Sign-up is open to addresses at %(domains)s only.") % {"domains": allowed}
            )
        return email

    def clean(self):
        cleaned = super().clean()
        self._check_passwords(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
        return cleaned


class InviteAcceptForm(_NewPasswordMixin, forms.Form):
    username = _username_field()
    password1, password2 = _password_fields()

    def __init__(self, *args, email: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        cleaned = super().clean()
        self._check_passwords(username=cleaned.get("username", ""), email=self.email)
        return cleaned


class EmailChangeForm(forms.Form):
    """The new address (the account pages ask for a recent sign-in before it is accepted)."""

    email = forms.CharField(
        label=_("New email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
        error_messages={"required": _("Enter the new email address.")},
    )

    def clean_email(self) -> str:
        return _email_clean(self.cleaned_data["email"])


class PasswordForgotForm(forms.Form):
    login = forms.CharField(
        label=_("Username or email"),
        max_length=254,
        error_messages={"required": _("Enter your username or email address.")},
    )


class PasswordResetForm(forms.Form):
    """The new password, typed twice. The validators run in the service (they need the user)."""

    new_password1 = forms.CharField(
        label=_("New password"),
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False),
        error_messages={"required": _("Enter a new password.")},
    )
    new_password2 = forms.CharField(
        label=_("New password again"),
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False),
        error_messages={"required": _("Type the new password again.")},
    )

    def clean(self):
        data = super().clean()
        one, two = data.get("new_password1"), data.get("new_password2")
        if one and two and one != two:
            self.add_error("new_password2", _("The two passwords are not the same."))
        return data
