"""GET /.well-known/openid-configuration (OpenID Connect Discovery 1.0 §3, RFC 8414 §2),
built from configuration and the URL table."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_safe

from authserver.conf import get_config
from mfa.policy import ACR_VALUES
from oauth.models import GrantType
from oauth.oidc import CLAIMS_SUPPORTED
from oauth.scopes import OIDC_SCOPES

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def discovery_document() -> dict:
    config = get_config()

    def url(name: str) -> str:
        return config.issuer + reverse(name)

    return {
        "issuer": config.issuer,
        "authorization_endpoint": url("oauth:authorize"),
        "token_endpoint": url("oauth:token"),
        "userinfo_endpoint": url("oauth:userinfo"),
        "jwks_uri": url("jwks"),
        "revocation_endpoint": url("oauth:revoke"),
        "introspection_endpoint": url("oauth:introspect"),
        "end_session_endpoint": url("oauth:end-session"),
        "scopes_supported": list(OIDC_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GrantType.values),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [config.signing_alg],
        "token_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "revocation_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(CLAIMS_SUPPORTED),
        "acr_values_supported": list(ACR_VALUES),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_parameter_supported": False,
        # OpenID Connect Core §3.1.2.1 / Discovery §3: the languages of the hosted pages, which
        # follow ui_locales (authserver/languages.py).
        "ui_locales_supported": [code for code, _name in settings.LANGUAGES],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
    }


@require_safe
def openid_configuration(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(discovery_document())
    response["Cache-Control"] = "public, max-age=3600"
    # A public document: browser apps may read it from any origin.
    response["Access-Control-Allow-Origin"] = "*"
    return response
