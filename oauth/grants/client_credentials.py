"""The client credentials grant (RFC 6749 §4.4): confidential clients acting for themselves.

Served without authlib: its generic path (request wrapper, grant object, hooks, the
authentication registry) cost as much as everything else in this grant but the signature
(bench/README.md). The rules are the ones authlib applied, in its order:

1. the client authenticates (`client_authenticate`: client_secret_basic, client_secret_post, or
   `none`, which only identifies a public client so that it gets unauthorized_client below
   rather than a confusing invalid_client);
2. the client may use this grant (confidential, client_credentials among its grants), else
   unauthorized_client;
3. the requested scope is within the client's, with no OpenID Connect scope (no user here),
   else invalid_scope; no scope requested means every API scope the client is allowed (§3.3).

Errors are RFC 6749 §5.2 JSON (`oauth_error_response`, which audits failed authentication).
"""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidScopeError, UnauthorizedClientError
from django.http import HttpRequest, HttpResponse, QueryDict

from oauth.client_auth import client_authenticate
from oauth.issuance import client_tokens_issue
from oauth.models import Client, GrantType
from oauth.protocol import json_response, oauth_error_response
from oauth.scopes import OIDC_SCOPES

GRANT_TYPE = GrantType.CLIENT_CREDENTIALS.value
_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


def granted_scopes(client: Client, requested: str | None) -> list[str]:
    """The scopes of the token; raises InvalidScopeError."""
    if requested is None:
        return [s for s in client.scope_list if s not in OIDC_SCOPES]
    allowed = client.get_allowed_scope(requested)
    if allowed is None:
        raise InvalidScopeError("The requested scope is not allowed for this client.")
    scopes = allowed.split()
    if any(s in OIDC_SCOPES for s in scopes):
        raise InvalidScopeError("OpenID Connect scopes need a user (authorization_code).")
    return scopes


def client_credentials_token(request: HttpRequest, form: QueryDict) -> HttpResponse:
    """The token endpoint's answer to grant_type=client_credentials (`form` already checked by
    oauth.protocol.form_parameters)."""
    try:
        client = client_authenticate(
            form,
            request.META.get("HTTP_AUTHORIZATION"),
            methods=_AUTH_METHODS,
            endpoint="token",
        )
        if not client.check_grant_type(GRANT_TYPE):
            raise UnauthorizedClientError(
                f"The client is not authorized to use 'grant_type={GRANT_TYPE}'"
            )
        scopes = granted_scopes(client, form.get("scope"))
    except OAuth2Error as error:
        return oauth_error_response(request, form, error)
    return json_response(client_tokens_issue(client=client, scopes=scopes))
