"""Claims for apps: the `groups` claim and each client's own claim mapping.

A client may be given, per token (ID token, userinfo response, access token), extra claims whose
values are user attributes, under names of its choosing: one `claim = attribute` per line, e.g.
`roles = groups`. Rules, checked when the client is saved (`claim_mapping_parse` and
`claim_mappings_check`):

- the claim name is not one authserver sets itself (`RESERVED_CLAIMS`: iss, sub, aud, exp, ...)
  nor one a standard scope releases (`SCOPE_RELEASED_CLAIMS`: email, name, groups, ...);
- the attribute is one of `ATTRIBUTES`, never anything else of the user row (the password hash);
- the attribute is released only under the scope that covers it (`ATTRIBUTE_SCOPES`: email needs
  the email scope, names need profile, groups need groups), so a mapping renames what the user
  consented to and never widens it: the client must be allowed that scope, and a token whose
  grant lacks it simply goes without the claim.

Cost: a client without a mapping, in a grant without the groups scope, pays nothing here: no
query, no parsing (`claims_for` returns an empty dict after two tests). Group names cost one
query per token response (memoised across the ID token and the access token of one response).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

GROUPS_SCOPE = "groups"

ID_TOKEN = "id_token"  # noqa: S105 - names of token kinds
USERINFO = "userinfo"
ACCESS_TOKEN = "access_token"  # noqa: S105
# Which Client field holds the mapping of each kind of token.
MAPPING_FIELDS = {
    ID_TOKEN: "id_token_claims",
    USERINFO: "userinfo_claims",
    ACCESS_TOKEN: "access_token_claims",
}
FIELD_LABELS = {
    "id_token_claims": "ID token claims",
    "userinfo_claims": "userinfo claims",
    "access_token_claims": "access token claims",
}

# Set by authserver itself in some token or response (RFC 7519 §4.1, RFC 9068 §2.2, OpenID
# Connect Core §2 and §3.1.3.6, RFC 8693 §4, RFC 7800 §3, RFC 8176), or meaningful to verifiers.
RESERVED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "at_hash",
        "c_hash",
        "s_hash",
        "sid",
        "scope",
        "scp",
        "client_id",
        "cnf",
        "act",
        "may_act",
        "typ",
        "kid",
        "alg",
        "events",
        "token_type",
        "active",
        "updated_at",
    }
)
# Released by a standard scope (OpenID Connect Core §5.4, and our groups scope): a mapping
# may not redefine what these mean.
SCOPE_RELEASED_CLAIMS = {
    "name": "profile",
    "given_name": "profile",
    "family_name": "profile",
    "middle_name": "profile",
    "nickname": "profile",
    "preferred_username": "profile",
    "email": "email",
    "email_verified": "email",
    "phone_number": "phone",
    "address": "address",
    "groups": GROUPS_SCOPE,
}
# The user attributes a mapping may release, and the scope that must be granted for each.
ATTRIBUTE_SCOPES = {
    "username": "profile",
    "first_name": "profile",
    "last_name": "profile",
    "full_name": "profile",
    "email": "email",
    "groups": GROUPS_SCOPE,
}
ATTRIBUTES = tuple(ATTRIBUTE_SCOPES)
# The user model fields each attribute reads (to load deferred ones in one query).
_ATTRIBUTE_FIELDS = {
    "username": ("username",),
    "first_name": ("first_name",),
    "last_name": ("last_name",),
    "full_name": ("first_name", "last_name"),
    "email": ("email",),
}
# A claim name: a short name, or a collision-resistant URI-like name (RFC 7519 §4.2).
_CLAIM_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/-]{0,99}$")
MAX_MAPPING_LINES = 30


class ClaimMappingError(ValueError):
    """A mapping line is not acceptable; the message says which and why."""


@functools.lru_cache(maxsize=512)
def claim_mapping_parse(text: str) -> tuple[tuple[str, str], ...]:
    """The (claim, attribute) pairs of a mapping text, in order; ClaimMappingError if any line is
    malformed, names a reserved or scope-released claim, repeats a claim or names an attribute
    that does not exist. Blank lines and lines starting with # are ignored."""
    pairs: list[tuple[str, str]] = []
    lines = [line.strip() for line in (text or "").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) > MAX_MAPPING_LINES:
        raise ClaimMappingError(f"at most {MAX_MAPPING_LINES} claims")
    for line in lines:
        claim, sep, attribute = (part.strip() for part in line.partition("="))
        shown = line[:80]
        if not sep or not claim or not attribute:
            raise ClaimMappingError(
                f"{shown!r}: write one claim per line as `claim = attribute`, e.g. `roles = groups`"
            )
        if not _CLAIM_NAME_RE.match(claim):
            raise ClaimMappingError(
                f"{claim[:80]!r} is not a claim name: start with a letter, then letters, digits "
                "or _ . : / - (at most 100 characters)"
            )
        if claim in RESERVED_CLAIMS:
            raise ClaimMappingError(f"{claim!r} is a reserved claim that authserver sets itself")
        if claim in SCOPE_RELEASED_CLAIMS:
            raise ClaimMappingError(
                f"{claim!r} is released by the {SCOPE_RELEASED_CLAIMS[claim]} scope; "
                "choose another claim name"
            )
        if attribute not in ATTRIBUTE_SCOPES:
            raise ClaimMappingError(
                f"{attribute[:80]!r} is not a user attribute; use one of: {', '.join(ATTRIBUTES)}"
            )
        if any(claim == seen for seen, _ in pairs):
            raise ClaimMappingError(f"{claim!r} is mapped twice")
        pairs.append((claim, attribute))
    return tuple(pairs)


def claim_mapping_text(value: str | Mapping[str, str] | None) -> str:
    """The stored form of a mapping given as text or as {claim: attribute}."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return "\n".join(f"{claim} = {attribute}" for claim, attribute in value.items())


def claim_mappings_check(client) -> dict[str, str]:
    """Problems of the client's three mappings, by field name (empty if none). Each text is
    normalised (one `claim = attribute` per line) when it is valid."""
    problems: dict[str, str] = {}
    allowed = set(client.scope_list)
    for kind, field in MAPPING_FIELDS.items():
        try:
            pairs = claim_mapping_parse(getattr(client, field) or "")
        except ClaimMappingError as exc:
            problems[field] = str(exc)
            continue
        for claim, attribute in pairs:
            needed = ATTRIBUTE_SCOPES[attribute]
            if needed not in allowed:
                problems[field] = (
                    f"`{claim} = {attribute}` needs the {needed} scope among the allowed scopes "
                    "(the claim is released only when the user grants it)"
                )
                break
        else:
            if pairs and kind != ACCESS_TOKEN and "openid" not in allowed:
                problems[field] = "needs the openid scope among the allowed scopes"
            else:
                setattr(client, field, "\n".join(f"{c} = {a}" for c, a in pairs))
    return problems


class UserClaims:
    """One user's claim values for one token response; group names read at most once."""

    __slots__ = ("_groups", "user")

    def __init__(self, user) -> None:
        self.user = user
        self._groups: list[str] | None = None

    def groups(self) -> list[str]:
        if self._groups is None:
            self._groups = sorted(self.user.groups.values_list("name", flat=True))
        return self._groups

    def load(self, attributes) -> None:
        """Load the user columns `attributes` read that are deferred (a refresh loads only a
        few), in one query."""
        deferred = self.user.get_deferred_fields()
        if not deferred:
            return
        wanted = {f for a in attributes for f in _ATTRIBUTE_FIELDS.get(a, ())} & deferred
        if wanted:
            self.user.refresh_from_db(fields=sorted(wanted))

    def value(self, attribute: str) -> Any:
        user = self.user
        if attribute == "groups":
            return self.groups()
        if attribute == "full_name":
            return user.get_full_name().strip()
        if attribute == "username":
            return user.get_username()
        return getattr(user, attribute)


def claims_for(
    client, source: UserClaims | None, user, scopes, kind: str
) -> tuple[dict[str, Any], UserClaims | None]:
    """The extra claims of `kind` (ID_TOKEN, USERINFO, ACCESS_TOKEN) for `user` in a grant of
    `scopes`: the client's mapped claims covered by the granted scopes, and for access tokens
    the `groups` claim when the groups scope was granted (RFC 9068 §2.2.3.1). Empty values are
    left out. Returns the claims and the memo to pass to the next call of the same response.
    (ID tokens and userinfo get `groups` from oauth.oidc.user_claims.)"""
    text = getattr(client, MAPPING_FIELDS[kind], "") if client is not None else ""
    wants_groups = kind == ACCESS_TOKEN and GROUPS_SCOPE in scopes
    if not text and not wants_groups:
        return {}, source
    if source is None:
        source = UserClaims(user)
    claims: dict[str, Any] = {}
    if wants_groups:
        claims["groups"] = source.groups()
    try:
        pairs = claim_mapping_parse(text) if text else ()
    except ClaimMappingError:
        pairs = ()  # a row saved before a rule: the client_validate of the next save says why
    pairs = [(c, a) for c, a in pairs if ATTRIBUTE_SCOPES[a] in scopes]
    source.load(a for _, a in pairs)
    for claim, attribute in pairs:
        value = source.value(attribute)
        if value or value == []:
            claims[claim] = value
    return claims, source


def user_groups(source: UserClaims | None, user) -> tuple[list[str], UserClaims]:
    source = source or UserClaims(user)
    return source.groups(), source
