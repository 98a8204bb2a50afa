"""POST /oauth/revoke (RFC 7009).

Revoking an access token or a refresh token ends the session (the grant) it belongs to: its
refresh tokens stop working, and userinfo and introspection reject its access tokens. An access
token without a session (client_credentials) goes on a deny-list by jti until its expiry. The answer
is 200 whether or not the token was found, was already revoked or belongs to another client
(RFC 7009 §2.2), so the endpoint tells nobody anything about a token.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters

from audit.events import EventType
from audit.services import audit_event_record
from oauth.protocol import form_parameters, protocol_endpoint
from oauth.server import OAuthRequest, authorization_server
from oauth.token_lookup import ACCESS_TOKEN, FoundToken, token_find
from sessions.models import Session
from sessions.services import session_revoke
from tokens.revocation import access_token_deny


class RevocationEndpoint(_RevocationEndpoint):
    # Public clients may revoke their own tokens, identified by client_id (RFC 7009 §2.1).
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def check_params(self, request, client) -> None:
        if not request.form.get("token"):
            raise InvalidRequestError("The token parameter is required.")
        # An unknown token_type_hint is ignored: we search every token type anyway (§2.1).

    def authenticate_token(self, request, client) -> FoundToken | None:
        self.check_params(request, client)
        found = token_find(request.form["token"])
        if found is None or not found.check_client(client):
            return None
        return found

    def query_token(self, token_string, token_type_hint):  # pragma: no cover - see above
        return token_find(token_string)

    def revoke_token(self, token: FoundToken, request) -> None:
        session = token.session
        if session is None:
            # An access token without a session (client_credentials): refused by jti until it
            # would have expired (issue 13.12).
            if token.kind == ACCESS_TOKEN and access_token_deny(
                jti=token.claims["jti"], exp=token.claims["exp"]
            ):
                audit_event_record(
                    event=EventType.OAUTH_TOKEN_REVOKED,
                    client_id=token.client_id,
                    ip=request.ip,
                    user_agent=request.user_agent,
                    details={"token_type": token.kind, "jti": token.claims["jti"]},
                )
            return
        if session_revoke(session=session, reason=Session.RevokeReason.TOKEN_REVOKED):
            audit_event_record(
                event=EventType.OAUTH_TOKEN_REVOKED,
                user=session.user,
                client_id=session.client_id,
                session_id=session.id,
                ip=request.ip,
                user_agent=request.user_agent,
                details={"token_type": token.kind},
            )


@csrf_exempt
@sensitive_post_parameters("client_secret", "token")
@protocol_endpoint
def revocation_endpoint(request: HttpRequest) -> HttpResponse:
    oauth_request = OAuthRequest(request, form_parameters(request))
    return authorization_server().create_endpoint_response(
        RevocationEndpoint.ENDPOINT_NAME, oauth_request
    )
