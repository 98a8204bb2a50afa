"""The authorization code grant (RFC 6749 §4.1) with OpenID Connect parameters.

authlib validates the request (client, response_type, redirect_uri, scope, PKCE through
oauth.pkce, client authentication at the token endpoint, redirect_uri equality at exchange);
this subclass stores codes through oauth.codes and issues tokens through oauth.issuance.
"""

from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, grants

from authserver.conf import get_config
from oauth.codes import (
    CodeRequest,
    authorization_code_issue,
    authorization_code_link_session,
    authorization_code_redeem,
)
from oauth.issuance import user_tokens_issue
from oauth.models import AuthorizationCode, Client
from oauth.oidc import id_token_hint_verify
from sessions.services import SessionEnded

# OpenID Connect Core §3.1.2.1 prompt values. select_account is served by the login page.
PROMPT_VALUES = frozenset({"none", "login", "consent", "select_account"})
# Parameters that may appear at most once (RFC 6749 §3.1). client_id, redirect_uri and
# response_type are checked before the redirect URI is trusted, the rest after.
_SINGLE_BEFORE_REDIRECT = ("client_id", "redirect_uri", "response_type")
_SINGLE_AFTER_REDIRECT = (
    "scope",
    "state",
    "nonce",
    "prompt",
    "max_age",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "id_token_hint",
    "acr_values",
)
MAX_STATE_LENGTH = 2048
MAX_NONCE_LENGTH = 512
_UNSUPPORTED = {
    "request": "request_not_supported",
    "request_uri": "request_uri_not_supported",
    "registration": "registration_not_supported",
}


def _has_control_characters(value: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def authorization_request_check(request, redirect_uri: str) -> None:
    """OpenID Connect and hygiene rules authlib does not apply. Errors go back to the (now
    trusted) redirect URI; parsed values are kept on the request."""

    def fail(description: str, error: str = "invalid_request") -> OAuth2Error:
        return OAuth2Error(description=description, error=error, redirect_uri=redirect_uri)

    datalist = request.payload.datalist
    data = request.payload.data
    for name in _SINGLE_AFTER_REDIRECT:
        if len(datalist.get(name, [])) > 1:
            raise fail(f"The {name} parameter must not be repeated.")
    for name, error in _UNSUPPORTED.items():
        if name in data:
            raise fail(f"The {name} parameter is not supported.", error)
    for values in datalist.values():
        if any(_has_control_characters(v) for v in values):
            raise fail("Parameters must not contain control characters.")
    if data.get("response_mode", "query") != "query":
        raise fail("Only response_mode=query is supported.")
    if len(data.get("state", "")) > MAX_STATE_LENGTH:
        raise fail(f"state must be at most {MAX_STATE_LENGTH} characters.")
    nonce = data.get("nonce", "")
    if len(nonce) > MAX_NONCE_LENGTH:
        raise fail(f"nonce must be at most {MAX_NONCE_LENGTH} characters.")
    prompts = set(data.get("prompt", "").split(" ")) - {""}
    if not prompts <= PROMPT_VALUES:
        raise fail("prompt must be none, login, consent or select_account.")
    if "none" in prompts and len(prompts) > 1:
        raise fail("prompt=none cannot be combined with other values.")
    max_age = None
    if "max_age" in data:
        raw = data["max_age"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
            raise fail("max_age must be a non-negative number of seconds.")
        max_age = int(raw)
    hint_sub = None
    if "id_token_hint" in data:
        # OpenID Connect Core §3.1.2.1: an ID token we issued (signature by a key we publish,
        # our issuer), expired or not; the endpoint then wants its subject signed in.
        claims = id_token_hint_verify(data["id_token_hint"])
        if claims is None:
            raise fail("id_token_hint is not an ID token issued by this server.")
        hint_sub = claims["sub"]
    request.prompts = frozenset(prompts)
    request.max_age = max_age
    request.nonce = nonce
    request.id_token_hint_sub = hint_sub


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    # Confidential clients authenticate with their secret; public ones with client_id + PKCE.
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @staticmethod
    def validate_authorization_redirect_uri(request, client: Client) -> str:
        """Required and matched exactly (OAuth 2.1 §2.3.1, RFC 9700 §4.1.1). Errors here are
        shown to the user; nothing redirects to an unverified URI."""
        uri = request.payload.redirect_uri
        if not uri:
            raise InvalidRequestError("The redirect_uri parameter is required.")
        if not client.check_redirect_uri(uri):
            raise InvalidRequestError("The redirect_uri is not registered for this client.")
        return uri

    @staticmethod
    def validate_no_multiple_request_parameter(request) -> None:
        datalist = request.payload.datalist
        for name in _SINGLE_BEFORE_REDIRECT:
            if len(datalist.get(name, [])) > 1:
                raise InvalidRequestError(f"The {name} parameter must not be repeated.")

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        authorization_request_check(self.request, redirect_uri)
        return redirect_uri

    def create_authorization_response(self, redirect_uri: str, grant_user):
        """RFC 6749 §4.1.2, plus `iss` (RFC 9207) against mix-up attacks."""
        request = self.request
        if request.auth_time is None:
            raise RuntimeError("the authorization endpoint must set auth_time")
        data = request.payload.data
        code = authorization_code_issue(
            request=CodeRequest(
                client=request.client,
                user=grant_user,
                redirect_uri=redirect_uri,
                scope=request.scope or "",
                nonce=getattr(request, "nonce", ""),
                code_challenge=data.get("code_challenge", ""),
                code_challenge_method=data.get("code_challenge_method", "")
                if data.get("code_challenge")
                else "",
                auth_time=request.auth_time,
                amr=" ".join(request.amr),
                browser_session=request.browser_session,
            )
        )
        params = [("code", code)]
        if request.payload.state:
            params.append(("state", request.payload.state))
        params.append(("iss", get_config().issuer))
        return 302, "", [("Location", add_params_to_uri(redirect_uri, params))]

    # --- Token endpoint ---------------------------------------------------------------------
    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        return authorization_code_redeem(
            value=code, client=client, ip=self.request.ip, user_agent=self.request.user_agent
        )

    def delete_authorization_code(self, authorization_code) -> None:
        """Unused: redemption marks the code consumed (it is kept to recognise a replay)."""

    def authenticate_user(self, authorization_code: AuthorizationCode):
        user = authorization_code.user
        return user if user.is_active else None

    def create_token_response(self):
        request = self.request
        code: AuthorizationCode = request.authorization_code
        user = self.authenticate_user(code)
        if user is None:
            raise InvalidGrantError("The authorization code is invalid or expired.")
        try:
            body, session = user_tokens_issue(
                client=request.client,
                user=user,
                scopes=code.scope.split(),
                auth_time=int(code.auth_time.timestamp()),
                # A code from before amr was recorded came from a password sign-in.
                amr=code.amr.split() or ["pwd"],
                nonce=code.nonce,
                parent=code.browser_session,
                ip=request.ip,
                user_agent=request.user_agent,
            )
        except SessionEnded:
            # The browser sign-in that approved the code ended (logout, revocation) before
            # the exchange: nothing may hang from it any more.
            raise InvalidGrantError("The authorization code is invalid or expired.") from None
        authorization_code_link_session(code=code, session=session)
        return 200, body, self.TOKEN_RESPONSE_HEADER
