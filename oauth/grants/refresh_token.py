"""The refresh token grant (RFC 6749 §6), through the session engine.

authlib authenticates the client and checks the grant is allowed; sessions.services.
refresh_token_rotate spends the token and issues its successor atomically, with reuse detection
(a spent token presented again revokes the whole session) and the client binding.
"""

from __future__ import annotations

from dataclasses import dataclass

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)

from oauth.issuance import refresh_access_claims, refreshed_tokens_body
from oauth.models import Client
from oauth.scopes import scope_split
from sessions.models import Session
from sessions.services import (
    REFRESH_REFUSED_DESCRIPTION,
    RefreshError,
    refresh_token_rotate,
    session_find_by_refresh_token,
)


@dataclass(frozen=True)
class PresentedRefreshToken:
    """authlib's view of a presented refresh token; whether it may still be used is decided by
    the rotation itself, so a spent token reaches the engine and triggers reuse detection."""

    value: str
    session: Session

    def __repr__(self) -> str:  # never the token
        return f"PresentedRefreshToken(session={self.session.id})"

    def check_client(self, client: Client) -> bool:
        return self.session.client_id == client.client_id

    def get_scope(self) -> str:
        return self.session.scope


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def _validate_request_token(self, client: Client) -> PresentedRefreshToken:
        """authlib's check with one answer for every refused token (issue 13.10): unknown,
        another client's, issued before the client's last deactivation (issue 13.4) or, later
        in refresh_token_rotate, spent, revoked or expired, all give the same invalid_grant, so
        whoever holds a stolen token learns nothing about its state."""
        value = self.request.form.get("refresh_token")
        if not value:
            raise InvalidRequestError("The refresh_token parameter is required.")
        token = self.authenticate_refresh_token(value)
        if (
            token is None
            or not token.check_client(client)
            or not client.token_is_current(token.session.created_at.timestamp())
        ):
            raise InvalidGrantError(REFRESH_REFUSED_DESCRIPTION)
        return token

    def authenticate_refresh_token(self, refresh_token: str) -> PresentedRefreshToken | None:
        session = session_find_by_refresh_token(value=refresh_token)
        return PresentedRefreshToken(refresh_token, session) if session else None

    def _validate_token_scope(self, token: PresentedRefreshToken) -> None:
        """A scope parameter may repeat the granted scope; narrowing it is not supported (the
        session keeps one scope), and widening it is invalid_scope (RFC 6749 §6)."""
        raw = self.request.payload.scope
        if raw is None:
            return
        requested = scope_split(raw)
        if requested is None or set(requested) != set(token.get_scope().split()):
            raise InvalidScopeError("The scope must be omitted or equal the granted scope.")

    def authenticate_user(self, refresh_token: PresentedRefreshToken):
        return refresh_token.session.user

    def create_token_response(self):
        request = self.request
        client: Client = request.client
        try:
            pair = refresh_token_rotate(
                value=request.refresh_token.value,
                client_id=client.client_id,
                presented_at=getattr(request, "presented_at", None),
                access_token_lifetime=client.access_token_lifetime,
                access_claims=refresh_access_claims(client),
                ip=request.ip,
                user_agent=request.user_agent,
            )
        except RefreshError as exc:
            raise InvalidGrantError(exc.description) from None
        return 200, refreshed_tokens_body(pair), self.TOKEN_RESPONSE_HEADER
