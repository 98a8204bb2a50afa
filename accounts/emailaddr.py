"""The one shape of email address authserver stores: a plain `local@domain`, lower-cased.

Anything that could reach a mail header otherwise (CR/LF and other control characters, a comma
or semicolon adding a recipient, angle brackets or quotes starting a display name) is refused
here, before an address is stored or a message queued; mail.services refuses it again.
"""

from __future__ import annotations

import re
import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy

from accounts.models import User

EMAIL_MAX_LENGTH = 254
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\u0085\u2028\u2029,;:<>\"'()\[\]\\]")


class EmailInvalid(ValueError):
    """Not one plain email address; the message is safe to show on a page."""


def email_normalize(raw: str) -> str:
    address = unicodedata.normalize("NFKC", raw or "").strip()
    if not address:
        raise EmailInvalid(gettext_lazy("Enter your email address."))
    if len(address) > EMAIL_MAX_LENGTH or _FORBIDDEN.search(address) or address.count("@") != 1:
        raise EmailInvalid(gettext_lazy("Enter a valid email address, like name@example.com."))
    try:
        validate_email(address)
    except ValidationError:
        raise EmailInvalid(
            gettext_lazy("Enter a valid email address, like name@example.com.")
        ) from None
    return User.objects.normalize_email(address).lower()


def email_domain_allowed(address: str, domains: tuple[str, ...]) -> bool:
    """Whether `address` is at one of `domains` (exactly; subdomains are not included). An
    empty tuple allows every domain."""
    if not domains:
        return True
    return address.rsplit("@", 1)[1].lower() in domains
