"""POST /oauth/introspect (RFC 7662), for confidential clients.

A client learns about tokens issued to itself; a client marked as a resource server about any
token. Everything else (unknown, expired, revoked, spent, someone else's) is {"active": false}
(§2.2), with nothing more.

Served without authlib (a resource server may ask on every API call): the caller authenticates
with client_secret_basic or client_secret_post (`client_authenticate`; a public client cannot
introspect), `token` is required (invalid_request otherwise), and an unknown token_type_hint is
ignored, since every kind of token is searched anyway (§2.1).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters

from oauth.client_auth import client_authenticate
from oauth.models import Client
from oauth.protocol import form_parameters, json_response, oauth_error_response, protocol_endpoint
from oauth.token_lookup import ACCESS_TOKEN, FoundToken, token_find, token_is_active

ENDPOINT = "introspection"  # the name Client.check_endpoint_auth_method knows
_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
_ACCESS_TOKEN_FIELDS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "sid")
_REFRESH_TOKEN_FIELDS = ("scope", "client_id", "sub", "iss", "exp", "iat", "sid")
_INACTIVE = {"active": False}


def introspection_payload(value: str, client: Client) -> dict[str, Any]:
    """What `client` may learn about the token `value` (RFC 7662 §2.2)."""
    found = token_find(value, liveness_only=True)
    if found is None or not _may_introspect(client, found) or not token_is_active(found):
        return _INACTIVE
    return _active_payload(found)


def _may_introspect(client: Client, token: FoundToken) -> bool:
    return client.is_resource_server or token.check_client(client)


def _active_payload(token: FoundToken) -> dict[str, Any]:
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
    form = form_parameters(request)
    try:
        client = client_authenticate(
            form,
            request.META.get("HTTP_AUTHORIZATION"),
            methods=_AUTH_METHODS,
            endpoint=ENDPOINT,
        )
        value = form.get("token")
        if not value:
            raise InvalidRequestError("The token parameter is required.")
    except OAuth2Error as error:
        return oauth_error_response(request, form, error)
    return json_response(introspection_payload(value, client))
