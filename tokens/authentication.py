"""DRF authentication for APIs served by authserver itself: `Authorization: Bearer <access token>`.

Built on simplejwt's JWTAuthentication, which supplies the header parsing and the DRF plumbing.
What changes: the token is verified by tokens.verification (several published keys selected by
kid, alg pinned per key, typ at+jwt, RFC 9068 claims), the user is looked up by `sub` (the public
id, active users only), and failures follow RFC 6750 §3: 401, `WWW-Authenticate: Bearer
error="invalid_token"` and the JSON error body of authserver.errors.
A request without a bearer token is simply unauthenticated (no error code, RFC 6750 §3.1).
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication

from accounts.selectors import user_get_by_sub
from authserver.errors import description_sentence
from tokens.verification import TokenInvalid, access_token_verify

_ERROR_ATTRIBUTE = "_authserver_bearer_error"


class InvalidBearerToken(exceptions.AuthenticationFailed):
    """401; authserver.errors renders {"error": "invalid_token", "error_description": reason}."""

    default_code = "invalid_token"

    def __init__(self, reason: str):
        # The reason as a sentence, as every error_description ("token expired" -> "Token
        # expired."); `reason` stays the verifier's own words.
        super().__init__(description_sentence(reason), code="invalid_token")
        self.reason = reason


class AccessTokenAuthentication(JWTAuthentication):
    www_authenticate_realm = "authserver"
    # None: AUTHSERVER_DEFAULT_AUDIENCE. A subclass may name the audience of its API.
    audience: str | None = None

    def authenticate(self, request: Request) -> tuple[Any, dict[str, Any]] | None:
        header = self.get_header(request)
        if header is None:
            return None
        parts = header.split()
        if not parts or parts[0].lower() != b"bearer":
            return None  # another scheme: not ours to judge
        try:
            if len(parts) != 2:
                raise TokenInvalid("malformed authorization header")
            claims = access_token_verify(parts[1], audience=self.audience)
            user = self.get_user(claims)
            if not self.session_is_live(claims):
                raise TokenInvalid("session ended")
        except TokenInvalid as exc:
            setattr(request, _ERROR_ATTRIBUTE, exc.reason)
            raise InvalidBearerToken(exc.reason) from None
        return user, claims

    def get_user(self, validated_token: dict[str, Any]) -> Any:  # type: ignore[override]
        user = user_get_by_sub(sub=validated_token["sub"])
        if user is None:
            raise TokenInvalid("unknown or inactive user")
        return user

    def session_is_live(self, claims: dict[str, Any]) -> bool:
        """Hook for session revocation (the `sid` claim). Return False to reject the token."""
        return True

    def authenticate_header(self, request: Request) -> str:
        value = f'Bearer realm="{self.www_authenticate_realm}"'
        reason = getattr(request, _ERROR_ATTRIBUTE, None)
        if reason is None:
            reason = getattr(getattr(request, "_request", None), _ERROR_ATTRIBUTE, None)
        if reason is not None:
            reason = description_sentence(reason)
            value += f', error="invalid_token", error_description="{reason}"'
        return value
