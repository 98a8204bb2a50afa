"""The client credentials grant (RFC 6749 §4.4): confidential clients acting for themselves."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidScopeError, grants

from oauth.issuance import client_tokens_issue
from oauth.models import Client
from oauth.scopes import OIDC_SCOPES


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    # "none" lets a public client be identified, so it gets unauthorized_client (not allowed
    # this grant) rather than a confusing invalid_client.
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def validate_token_request(self) -> None:
        super().validate_token_request()  # authenticates; unauthorized_client unless allowed
        client: Client = self.request.client
        raw = self.request.payload.scope
        if raw is None:
            # No scope requested: every API scope the client is allowed (RFC 6749 §3.3).
            scopes = [s for s in client.scope_list if s not in OIDC_SCOPES]
        else:
            allowed = client.get_allowed_scope(raw)
            if allowed is None:
                raise InvalidScopeError("The requested scope is not allowed for this client.")
            scopes = allowed.split()
            if any(s in OIDC_SCOPES for s in scopes):
                raise InvalidScopeError("OpenID Connect scopes need a user (authorization_code).")
        self.request.granted_scopes = scopes

    def create_token_response(self):
        body = client_tokens_issue(client=self.request.client, scopes=self.request.granted_scopes)
        return 200, body, self.TOKEN_RESPONSE_HEADER
