"""OpenID Connect: ID tokens, the claims each scope releases, and reading an id_token_hint.

ID tokens are signed by tokens.issuance.jwt_sign with the same key store as access tokens
(OpenID Connect Core §2, §3.1.3.6).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import datetime
from typing import Any

import jwt
from django.utils import timezone

from authserver.conf import get_config
from mfa.policy import acr_for
from oauth.claims import GROUPS_SCOPE, UserClaims
from oauth.scopes import OPENID
from tokens.issuance import jwt_sign
from tokens.keys import published_key
from tokens.verification import MAX_TOKEN_LENGTH, REFUSED_HEADER_PARAMETERS

logger = logging.getLogger(__name__)

ID_TOKEN_TYP = "JWT"  # noqa: S105 - a media type
# Claims released per scope (OpenID Connect Core §5.4). email_verified is the account's
# email_verified field: true only once the person confirmed the address (accounts/verification.py)
# or an admin vouched for it.
SCOPE_CLAIMS = {
    "profile": ("name", "given_name", "family_name", "preferred_username"),
    "email": ("email", "email_verified"),
    GROUPS_SCOPE: ("groups",),
}
ID_TOKEN_CLAIMS = (
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "azp",
    "sid",
    "acr",
    "amr",
)
CLAIMS_SUPPORTED = ID_TOKEN_CLAIMS + tuple(c for cs in SCOPE_CLAIMS.values() for c in cs)


def at_hash(access_token: str) -> str:
    """OpenID Connect Core §3.1.3.6: base64url of the left half of the hash of the token's
    ASCII octets, with the hash of the signing alg: SHA-256 for both RS256 and ES256."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def user_claims(user, scopes: list[str], source: UserClaims | None = None) -> dict[str, Any]:
    """The user's claims released by `scopes` (always `sub`); empty values are left out, except
    `groups`, a list even when empty. `source` memoises the group names within a response."""
    claims: dict[str, Any] = {"sub": user.sub}
    if "profile" in scopes:
        full_name = user.get_full_name().strip()
        values = {
            "name": full_name or user.get_username(),
            "given_name": user.first_name.strip(),
            "family_name": user.last_name.strip(),
            "preferred_username": user.get_username(),
        }
        claims.update({k: v for k, v in values.items() if v})
    if "email" in scopes and user.email:
        claims["email"] = user.email
        claims["email_verified"] = bool(user.email_verified)
    if GROUPS_SCOPE in scopes:
        claims["groups"] = (source or UserClaims(user)).groups()
    return claims


def id_token_issue(
    *,
    user,
    client_id: str,
    scopes: list[str],
    auth_time: int,
    amr: list[str] | None = None,
    nonce: str = "",
    access_token: str | None = None,
    session_id: str | None = None,
    extra_claims: dict[str, Any] | None = None,
    source: UserClaims | None = None,
    now: datetime | None = None,
) -> str:
    """`extra_claims`: the client's mapped claims (oauth.claims.claims_for), which never name a
    claim set here (the mapping refuses reserved and scope-released names)."""
    now = now or timezone.now()
    config = get_config()
    issued_at = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": config.issuer,
        "aud": client_id,
        "azp": client_id,
        "exp": issued_at + config.id_token_ttl,
        "iat": issued_at,
        "auth_time": int(auth_time),
    }
    if amr:
        # RFC 8176 values and the acr they imply (mfa/policy.py, listed in discovery).
        claims["amr"] = list(amr)
        claims["acr"] = acr_for(amr)
    if nonce:
        claims["nonce"] = nonce
    if access_token:
        claims["at_hash"] = at_hash(access_token)
    if session_id:
        claims["sid"] = str(session_id)
    claims.update(user_claims(user, scopes, source))
    if extra_claims:
        claims.update({k: v for k, v in extra_claims.items() if k not in claims})
    return jwt_sign(claims=claims, typ=ID_TOKEN_TYP, now=now)


def is_openid_request(scopes: list[str]) -> bool:
    return OPENID in scopes


def id_token_hint_verify(token: str, *, now: datetime | None = None) -> dict[str, Any] | None:
    """The claims of an ID token this server issued, or None.

    For RP-initiated logout and the authorization endpoint's id_token_hint: the signature (by a
    key we publish, alg pinned to that key), the issuer and the ID token's required claims are
    checked; expiry is not, since a logout often comes after the ID token expired (OpenID
    Connect RP-Initiated Logout §2) and an authorization request may pass an expired one (Core
    §3.1.2.1). Access tokens (typ at+jwt) are refused.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        header = jwt.get_unverified_header(token)
    # RecursionError: nested brackets in the JSON (json recurses per level; issue 14.5).
    except (jwt.InvalidTokenError, ValueError, TypeError, RecursionError):
        return None
    typ = header.get("typ", ID_TOKEN_TYP)
    if not isinstance(typ, str) or typ.upper() != ID_TOKEN_TYP:
        return None
    if REFUSED_HEADER_PARAMETERS.intersection(header):
        return None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return None
    key = published_key(kid, now)
    if key is None or header.get("alg") != key.alg:
        return None
    try:
        claims = jwt.decode(
            token,
            key.backend.prepared_verifying_key,
            algorithms=[key.alg],
            issuer=get_config().issuer,
            options={
                "verify_exp": False,
                "verify_aud": False,
                "require": ["iss", "sub", "aud", "exp", "iat"],
            },
        )
    except (jwt.InvalidTokenError, ValueError, TypeError, RecursionError):
        return None
    aud = claims.get("aud")
    if not isinstance(claims.get("sub"), str) or not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        return None
    return claims
