"""The authlib adapter: authlib parses and validates OAuth requests; this module binds it to our
models and services and turns its results into Django responses.

authlib's AuthorizationServer needs `query_client`, `create_oauth2_request`, `handle_response`
(authlib/integrations/django_oauth2 supplies the same for its own models). Tokens never come
from authlib's generators: each grant (oauth/grants/) returns what sessions.services and
tokens.issuance issued.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict

from authlib.oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request, UnsupportedResponseTypeError
from django.http import HttpRequest, HttpResponse, QueryDict

from accounts.network import client_ip
from oauth.client_auth import client_auth_register
from oauth.clients import client_get
from oauth.models import Client
from oauth.protocol import FIXED_DESCRIPTIONS, INVALID_CLIENT_CHALLENGE, client_auth_failed

logger = logging.getLogger(__name__)

NO_STORE_HEADERS = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


class Payload(OAuth2Payload):
    def __init__(self, source: QueryDict):
        self._source = source

    @property
    def data(self) -> dict[str, str]:
        return self._source.dict()

    @property
    def datalist(self) -> defaultdict[str, list]:
        values: defaultdict[str, list] = defaultdict(list)
        for key in self._source:
            values[key].extend(self._source.getlist(key))
        return values


class OAuthRequest(OAuth2Request):
    """An OAuth request whose parameters come from one place: the query string of an
    authorization GET, or the form body of a POST (never both, never a token in a URL)."""

    def __init__(self, request: HttpRequest, source: QueryDict):
        # authlib's constructor refuses non-https URIs other than loopback; transport security
        # is Django's job here (SECURE_SSL_REDIRECT, an https issuer in production), and tests
        # run on http://testserver. So the fields are set directly.
        self.method = request.method
        self.uri = request.path
        self.headers = request.headers
        self._body = None
        self.payload = Payload(source)
        self.client = None
        self.auth_method = None
        self.user = None
        self.authorization_code = None
        self.refresh_token = None
        self.credential = None
        self._scope = None
        self._source = source
        self.django_request = request
        self.ip = client_ip(request) or None
        self.user_agent = request.META.get("HTTP_USER_AGENT", "")[:512]
        # Set by the authorization endpoint before issuing a code.
        self.auth_time: int | None = None
        # RFC 8176 methods of the browser's sign-in (accounts.login_flow.session_amr).
        self.amr: list[str] = []
        self.browser_session = None
        # The subject of a valid id_token_hint (authorization_request_check).
        self.id_token_hint_sub: str | None = None

    @property
    def args(self) -> QueryDict:
        return self.django_request.GET

    @property
    def form(self) -> QueryDict:
        return self._source


class AuthorizationServer(_AuthorizationServer):
    def __init__(self) -> None:
        super().__init__(scopes_supported=None)  # scopes are checked per client
        # Imported here: the grants import this module's request class.
        from oauth.endpoints.revoke import RevocationEndpoint
        from oauth.grants.authorization_code import AuthorizationCodeGrant
        from oauth.grants.refresh_token import RefreshTokenGrant
        from oauth.pkce import S256CodeChallenge

        # client_credentials and introspection do not go through authlib: see
        # oauth/grants/client_credentials.py and oauth/endpoints/introspect.py.
        client_auth_register(self)
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge()])
        self.register_grant(RefreshTokenGrant)
        self.register_endpoint(RevocationEndpoint)

    def get_authorization_grant(self, request):
        """Only response_type=code is served. authlib's own refusal puts the requested value
        into the error description, which it then rejects for characters outside RFC 6749's
        set; this one uses a fixed text. Redirect only to a registered URI (§4.1.2.1)."""
        if request.payload.response_type != "code":
            redirect_uri = None
            client = self.query_client(request.payload.client_id)
            uri = request.payload.redirect_uri
            if client is not None and uri and client.check_redirect_uri(uri):
                redirect_uri = uri
            raise UnsupportedResponseTypeError(
                response_type="code",
                description=FIXED_DESCRIPTIONS["unsupported_response_type"],
                redirect_uri=redirect_uri,
            )
        return super().get_authorization_grant(request)

    def query_client(self, client_id: str) -> Client | None:
        return client_get(client_id=client_id)

    def save_token(self, token, request) -> None:
        """Unused: tokens are stored by the session engine when they are issued."""

    def send_signal(self, name, *args, **kwargs) -> None:
        """No signals: auditing is an explicit service call (no business logic in signals)."""

    def create_oauth2_request(self, request) -> OAuthRequest:
        if isinstance(request, OAuthRequest):
            return request
        raise TypeError("build an OAuthRequest with the parameter source of the endpoint")

    def handle_response(self, status, body, headers) -> HttpResponse:
        if isinstance(body, dict):
            body = json.dumps(body, separators=(",", ":"))
        response = HttpResponse(body, status=status)
        for name, value in headers:
            response[name] = value
        return response

    def handle_error_response(self, request, error: OAuth2Error) -> HttpResponse:
        """RFC 6749 §5.2 JSON. Every invalid_client is a 401 with WWW-Authenticate (authlib
        sends 400 unless the client tried HTTP Basic), and is audited."""
        if error.error in FIXED_DESCRIPTIONS:
            error.description = FIXED_DESCRIPTIONS[error.error]
        if error.error == "invalid_client":
            error.status_code = 401
            if isinstance(request, OAuthRequest):
                client_auth_failed(request.django_request, request.form)
        response = self.handle_response(*error(None))
        for name, value in NO_STORE_HEADERS:
            response[name] = value
        if error.error == "invalid_client":
            response["WWW-Authenticate"] = INVALID_CLIENT_CHALLENGE
        return response


_server: AuthorizationServer | None = None


def authorization_server() -> AuthorizationServer:
    global _server  # noqa: PLW0603 - one server per process, built on first use
    if _server is None:
        _server = AuthorizationServer()
    return _server
