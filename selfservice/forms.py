"""Forms of the account pages. They check shape only; the rules are in selfservice.services."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from accounts.forms import PASSWORD_MAX_LENGTH
from selfservice.services import NAME_MAX_LENGTH


def _password(label: str, required: str, autocomplete: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        strip=False,
        max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": autocomplete}),
        error_messages={"required": required},
    )


class ProfileForm(forms.Form):
    first_name = forms.CharField(label=_("First name"), max_length=NAME_MAX_LENGTH, required=False)
    last_name = forms.CharField(label=_("Last name"), max_length=NAME_MAX_LENGTH, required=False)

    def clean(self):
        data = super().clean()
        for field in ("first_name", "last_name"):
            value = data.get(field) or ""
            if any(not ch.isprintable() for ch in value):
                self.add_error(field, _("Use letters, spaces and punctuation only."))
        return data


def _language_choices() -> list[tuple[str, str]]:
    # Each language in its own name ("Deutsch"), so a reader finds theirs whatever the page's.
    return [("", _("The browser’s language")), *settings.LANGUAGES]


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=_("Language"), choices=_language_choices, required=False)


class PasswordChangeForm(forms.Form):
    current_password = _password(
        _("Current password"), _("Enter your current password."), "current-password"
    )
    new_password = _password(_("New password"), _("Enter a new password."), "new-password")
    new_password_again = _password(
        _("New password, again"), _("Type the new password again."), "new-password"
    )

    def clean(self):
        data = super().clean()
        new, again = data.get("new_password"), data.get("new_password_again")
        if new and again and new != again:
            self.add_error("new_password_again", _("The two new passwords differ."))
        if new and data.get("current_password") == new:
            self.add_error("new_password", _("Choose a password different from the current one."))
        return data


class DeleteAccountForm(forms.Form):
    password = _password(_("Password"), _("Enter your password."), "current-password")
    confirm = forms.BooleanField(
        label=_("I understand that my account and its sign-ins will be deleted for good."),
        error_messages={"required": _("Tick the box to confirm.")},
    )
