"""The first-party API's `mfa_token`: proof that a password was just checked, to be completed by
a second factor at POST /api/v1/auth/mfa (README "Multi-factor sign-in").

The token is signed with Django's signing (HMAC-SHA256 under SECRET_KEY, a salt of its own) and
carries the user's `sub`, a random id and its time; it lives MFA_TOKEN_MAX_AGE seconds. It is
single-use: completing the sign-in claims its id in the shared cache (SET NX), and the claim is
given back only when the code was wrong, so a used token is refused; a token whose signature
does not verify (tampered, another key) or that expired is refused too.
"""

from __future__ import annotations

import secrets

from django.core import signing

from accounts.models import User
from authserver.counters import cache_guard, shared_cache

MFA_TOKEN_MAX_AGE = 300  # seconds
MAX_MFA_TOKEN_LENGTH = 512
_SALT = "authserver.mfa.token"
_USED_TTL = MFA_TOKEN_MAX_AGE + 60


class MfaTokenInvalid(Exception):
    def __init__(self, reason: str, user=None) -> None:
        super().__init__("the mfa_token is invalid, expired or already used")
        self.reason = reason
        self.user = user


def mfa_token_issue(*, user) -> str:
    return signing.dumps({"sub": user.sub, "jti": secrets.token_urlsafe(16)}, salt=_SALT)


def mfa_token_read(value: str) -> tuple[User, str]:
    """(user, token id) of a valid, unexpired token; MfaTokenInvalid otherwise."""
    if not isinstance(value, str) or not value or len(value) > MAX_MFA_TOKEN_LENGTH:
        raise MfaTokenInvalid("token_malformed")
    try:
        payload = signing.loads(value, salt=_SALT, max_age=MFA_TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise MfaTokenInvalid("token_expired") from None
    except (signing.BadSignature, ValueError, UnicodeDecodeError):
        raise MfaTokenInvalid("token_invalid") from None
    sub = payload.get("sub") if isinstance(payload, dict) else None
    jti = payload.get("jti") if isinstance(payload, dict) else None
    if not isinstance(sub, str) or not isinstance(jti, str):
        raise MfaTokenInvalid("token_invalid")
    user = User.objects.filter(public_id=sub).first()
    if user is None or not user.is_active:
        raise MfaTokenInvalid("token_user_unusable", user)
    return user, jti


def _used_key(jti: str) -> str:
    return f"mfa:token:used:{jti}"


def mfa_token_claim(jti: str) -> bool:
    """Claim the token for this attempt: False if it was already used (or is being used)."""
    with cache_guard():
        return bool(shared_cache().add(_used_key(jti), 1, _USED_TTL))


def mfa_token_used(jti: str) -> bool:
    """Was the token already spent (or is an attempt with it under way)? A peek, no claim."""
    with cache_guard():
        return shared_cache().get(_used_key(jti)) is not None


def mfa_token_release(jti: str) -> None:
    """The attempt failed (wrong code): the token may be tried again until it expires."""
    with cache_guard():
        shared_cache().delete(_used_key(jti))
