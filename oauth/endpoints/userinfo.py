"""GET/POST /oauth/userinfo (OpenID Connect Core §5.3): the user's claims, per granted scope.

Bearer access token in the Authorization header (RFC 6750 §2.1). The token must verify, carry the
openid scope, and its session must still be live: a revoked grant, a logout, a password change
or a deactivated user ends it at once, not only at the token's expiry.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.parsers import FormParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authserver.errors import ApiError
from authserver.parsers import BoundedJSONParser
from oauth.claims import USERINFO, UserClaims, claims_for
from oauth.clients import client_get
from oauth.models import Client
from oauth.oidc import user_claims
from oauth.scopes import OPENID
from sessions.apis import FIRST_PARTY_CLIENT_ID, SessionAccessTokenAuthentication
from sessions.models import Session
from sessions.services import session_get, session_is_usable
from tokens.authentication import InvalidBearerToken
from tokens.issuance import OPERATOR_CLIENT_ID
from tokens.verification import ANY_AUDIENCE, TokenInvalid


class UserinfoAuthentication(SessionAccessTokenAuthentication):
    """Any audience: userinfo is a resource of the issuer itself and accepts its own access
    tokens whatever API they were minted for (signature, issuer, expiry, session still checked),
    as introspection does (ANY_AUDIENCE: the audience is read from the verified token, not from
    a second, unverified decode).

    Any client's tokens, the openid scope deciding (UserinfoEndpoint), as long as the client
    exists, is active and was not deactivated after the token was issued (issue 13.4).

    One query: the token's session is loaded with its user (session_get) and both checks use
    it, where the first-party API's authentication looks the user up, then the session.
    DRF builds one authenticator per request, so the session kept here is request-local."""

    audience = ANY_AUDIENCE
    _session: Session | None = None

    client: Client | None = None

    def client_is_accepted(self, claims) -> bool:
        """token_client_accepts, keeping the (cached) client for its claim mapping."""
        client_id, issued_at = claims.get("client_id"), claims.get("iat")
        if client_id in (FIRST_PARTY_CLIENT_ID, OPERATOR_CLIENT_ID):
            return True
        if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
            return False
        self.client = client_get(client_id=client_id)
        return self.client is not None and self.client.token_is_current(issued_at)

    def authenticate(self, request: Request):
        try:
            return super().authenticate(request)
        except UnicodeEncodeError:
            # Only possible for header text that no WSGI server produces (PEP 3333: latin-1).
            raise InvalidBearerToken("malformed authorization header") from None

    def get_user(self, validated_token: dict[str, Any]) -> Any:
        """The session's user when it is the token's `sub` and active; otherwise the lookup by
        `sub` of the first-party API, which then answers as it always did."""
        sid = validated_token.get("sid")
        self._session = session_get(sid=sid) if sid else None
        user = self._session.user if self._session is not None else None
        if user is not None and user.is_active and str(user.sub) == validated_token["sub"]:
            return user
        return super().get_user(validated_token)

    def session_is_live(self, claims) -> bool:
        """The rule of SessionAccessTokenAuthentication.session_is_live, on the session loaded
        by get_user; the session must also be the token's user's."""
        if not self.client_is_accepted(claims):
            raise TokenInvalid("token not issued for this API")
        session = self._session
        if not claims.get("sid") or session is None:
            return False
        return (
            session_is_usable(session=session)
            and session.client_id == claims.get("client_id")
            and str(session.user.sub) == claims["sub"]
        )


@extend_schema_view(
    # Described by the discovery document, not the first-party API's OpenAPI schema.
    get=extend_schema(exclude=True),
    post=extend_schema(exclude=True),
)
class UserinfoEndpoint(APIView):
    authentication_classes = [UserinfoAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [FormParser, BoundedJSONParser]

    def _claims(self, request: Request) -> Response:
        scopes = str(request.auth.get("scope", "")).split()
        if OPENID not in scopes:
            raise ApiError(
                "insufficient_scope",
                "The access token was not granted the openid scope.",
                403,
                {
                    "WWW-Authenticate": 'Bearer realm="authserver", error="insufficient_scope", '
                    'scope="openid"'
                },
            )
        source = UserClaims(request.user)  # group names read once, if at all
        claims = user_claims(request.user, scopes, source)
        # The client's mapped claims (the client as authentication found it; nothing to do
        # without a mapping).
        client = getattr(request.successful_authenticator, "client", None)
        extra, _ = claims_for(client, source, request.user, scopes, USERINFO)
        for name, value in extra.items():
            claims.setdefault(name, value)
        return Response(
            claims,
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def get(self, request: Request) -> Response:
        return self._claims(request)

    def post(self, request: Request) -> Response:
        return self._claims(request)
