"""Scopes: the OpenID Connect ones we implement, the syntax of any other, and what people read."""

from __future__ import annotations

import re

from django.utils.translation import gettext_lazy as _

OPENID = "openid"
OFFLINE_ACCESS = "offline_access"
# Scopes with a meaning at authserver itself; a client may also be allowed API scopes of its own.
OIDC_SCOPES = ("openid", "profile", "email", "groups", "offline_access")

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). We also cap the length.
_SCOPE_TOKEN_RE = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]{1,100}$")
MAX_SCOPE_LENGTH = 1000

# Shown on the consent page: (what it is called, what it lets the app do).
SCOPE_DESCRIPTIONS = {
    "openid": (_("Sign you in"), _("Recognise your account each time you come back.")),
    "profile": (_("Your profile"), _("Your name and username.")),
    "email": (_("Your email address"), _("The email address of your account.")),
    "groups": (_("Your groups"), _("The names of the groups your account belongs to.")),
    "offline_access": (
        _("Stay connected"),
        _("Keep access while you are away, until you sign out of the app or it is revoked."),
    ),
}


def scope_token_valid(token: str) -> bool:
    return bool(_SCOPE_TOKEN_RE.match(token))


def scope_split(text: str | None) -> list[str] | None:
    """The scope tokens of `text` in order, without duplicates; None if malformed.

    Only the space separates tokens (RFC 6749 §3.3); tabs, newlines or other characters outside
    the scope-token syntax make the whole value malformed.
    """
    if text is None:
        return []
    if not isinstance(text, str) or len(text) > MAX_SCOPE_LENGTH:
        return None
    tokens: list[str] = []
    for token in text.split(" "):
        if token == "":
            continue
        if not scope_token_valid(token):
            return None
        if token not in tokens:
            tokens.append(token)
    return tokens


def scope_describe(scopes: list[str]) -> list[tuple[str, str, str]]:
    """(scope, title, detail) for the consent page; API scopes are shown by name."""
    described = []
    for scope in scopes:
        title, detail = SCOPE_DESCRIPTIONS.get(
            scope, (scope, _("Access granted by this permission."))
        )
        described.append((scope, str(title), str(detail)))
    return described
