"""POST /oauth/token (RFC 6749 §3.2): authorization_code, refresh_token, client_credentials."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters

from authserver.request_time import body_received_at
from oauth.grants.client_credentials import GRANT_TYPE as CLIENT_CREDENTIALS
from oauth.grants.client_credentials import client_credentials_token
from oauth.protocol import BadRequest, form_parameters, protocol_endpoint
from oauth.server import OAuthRequest, authorization_server


@csrf_exempt
@sensitive_post_parameters("client_secret", "code", "code_verifier", "refresh_token")
@protocol_endpoint
def token_endpoint(request: HttpRequest) -> HttpResponse:
    form = form_parameters(request)
    grant_type = form.get("grant_type")
    if not grant_type:
        raise BadRequest("The grant_type parameter is required.")
    if grant_type == CLIENT_CREDENTIALS:
        # The machine-to-machine hot path, served without authlib's request wrapping.
        return client_credentials_token(request, form)
    oauth_request = OAuthRequest(request, form)
    # The body has been read (form_parameters): a refresh token in it was presented now, not
    # when the headers arrived (issue 13.10).
    oauth_request.presented_at = body_received_at(request)
    server = authorization_server()
    if grant_type == "authorization_code":
        # Redeeming the code, starting the session and linking the two are one transaction: a
        # concurrent replay waits on the code's row lock and then finds (and revokes) the session.
        with transaction.atomic():
            return server.create_token_response(oauth_request)
    return server.create_token_response(oauth_request)
