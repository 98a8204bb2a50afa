"""GET/POST /oauth/userinfo (OpenID Connect Core §5.3): the user's claims, per granted scope.

Bearer access token in the Authorization header (RFC 6750 §2.1). The token must verify, carry the
openid scope, and its session must still be live: a revoked grant, a logout, a password change
or a deactivated user ends it at once, not only at the token's expiry.
"""

from __future__ import annotations

from typing import Any

import jwt
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.parsers import FormParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authserver.errors import ApiError
from authserver.parsers import BoundedJSONParser
from oauth.oidc import user_claims
from oauth.scopes import OPENID
from oauth.token_lookup import token_client_accepts
from sessions.apis import SessionAccessTokenAuthentication
from tokens.authentication import InvalidBearerToken


class UserinfoAuthentication(SessionAccessTokenAuthentication):
    """Any audience: userinfo is a resource of the issuer itself and accepts its own access
    tokens whatever API they were minted for (signature, issuer, expiry, session still checked).
    DRF builds one authenticator per request, so setting the audience here is request-local.

    Any client's tokens, the openid scope deciding (UserinfoEndpoint), as long as the client
    exists, is active and was not deactivated after the token was issued (issue 13.4)."""

    def client_is_accepted(self, claims) -> bool:
        return token_client_accepts(claims.get("client_id"), claims.get("iat"))

    def authenticate(self, request: Request):
        self.audience = _token_audience(request)
        try:
            return super().authenticate(request)
        except UnicodeEncodeError:
            # Only possible for header text that no WSGI server produces (PEP 3333: latin-1).
            raise InvalidBearerToken("malformed authorization header") from None


def _token_audience(request: Request) -> Any:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    parts = header.split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        try:
            claims = jwt.decode(parts[1], options={"verify_signature": False})
        # RecursionError: nested brackets in the JSON (json recurses per level; issue 14.5).
        except (jwt.InvalidTokenError, ValueError, TypeError, RecursionError):
            return None
        audience = claims.get("aud")
        if isinstance(audience, str) or (
            isinstance(audience, list) and audience and all(isinstance(a, str) for a in audience)
        ):
            return audience
    return None


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
        return Response(
            user_claims(request.user, scopes),
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def get(self, request: Request) -> Response:
        return self._claims(request)

    def post(self, request: Request) -> Response:
        return self._claims(request)
