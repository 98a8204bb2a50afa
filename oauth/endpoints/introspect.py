"""POST /oauth/introspect (RFC 7662), for confidential clients.

A client learns about tokens issued to itself; a client marked as a resource server about any
token. Everything else (unknown, expired, revoked, spent, someone else's) is {"active": false}
(§2.2), with nothing more.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters

from oauth.protocol import form_parameters, protocol_endpoint
from oauth.server import OAuthRequest, authorization_server
from oauth.token_lookup import ACCESS_TOKEN, FoundToken, token_find, token_is_active

_ACCESS_TOKEN_FIELDS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "sid")
_REFRESH_TOKEN_FIELDS = ("scope", "client_id", "sub", "iss", "exp", "iat", "sid")


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def check_params(self, request, client) -> None:
        if not request.form.get("token"):
            raise InvalidRequestError("The token parameter is required.")

    def authenticate_token(self, request, client) -> FoundToken | None:
        self.check_params(request, client)
        found = token_find(request.form["token"])
        if found is None or not self.check_permission(found, client, request):
            return None
        return found if token_is_active(found) else None

    def check_permission(self, token: FoundToken, client, request) -> bool:
        return client.is_resource_server or token.check_client(client)

    def query_token(self, token_string, token_type_hint):  # pragma: no cover - see above
        return token_find(token_string)

    def create_introspection_payload(self, token: FoundToken | None) -> dict[str, Any]:
        if token is None:
            return {"active": False}
        return self.introspect_token(token)

    def introspect_token(self, token: FoundToken) -> dict[str, Any]:
        fields = _ACCESS_TOKEN_FIELDS if token.kind == ACCESS_TOKEN else _REFRESH_TOKEN_FIELDS
        payload: dict[str, Any] = {"active": True}
        payload.update({name: token.claims[name] for name in fields if name in token.claims})
        if token.kind == ACCESS_TOKEN:
            payload["token_type"] = "Bearer"  # noqa: S105 - RFC 6750 token type
        return payload


@csrf_exempt
@sensitive_post_parameters("client_secret", "token")
@protocol_endpoint
def introspection_endpoint(request: HttpRequest) -> HttpResponse:
    oauth_request = OAuthRequest(request, form_parameters(request))
    return authorization_server().create_endpoint_response(
        IntrospectionEndpoint.ENDPOINT_NAME, oauth_request
    )
