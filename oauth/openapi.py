"""The OAuth 2.0 and OpenID Connect endpoints in the OpenAPI schema (/api/schema/).

The first-party API's operations come from its DRF views (drf-spectacular); the OAuth back
channel is plain Django views speaking RFC 6749 form bodies, so its operations are written out
here and added by a drf-spectacular post-processing hook (`openapi_add_oauth`, registered in
SPECTACULAR_SETTINGS), with named schemas, a summary and a tag per operation, and examples.
The same hook gives the first-party operations their tags by area.

tests/security/test_schema_fuzz.py fuzzes every operation here with schemathesis against
authserver under gunicorn: each answer must be one documented below.
"""

from __future__ import annotations

from typing import Any

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

TAG_FIRST_PARTY = "First-party sign-in"
TAG_ACCOUNT = "Account and sessions"
TAG_OAUTH = "OAuth 2.0"
TAG_OIDC = "OpenID Connect"
TAG_KEYS = "Signing keys"
TAGS = [
    {
        "name": TAG_FIRST_PARTY,
        "description": "Username and password sign-in for authserver's own apps, refresh-token "
        "rotation and sign-out (JSON bodies).",
    },
    {"name": TAG_ACCOUNT, "description": "The signed-in user and their sessions (bearer token)."},
    {
        "name": TAG_OAUTH,
        "description": "The OAuth 2.0 back channel: token (RFC 6749), revocation (RFC 7009) and "
        "introspection (RFC 7662). Form bodies (application/x-www-form-urlencoded), JSON answers, "
        "errors as RFC 6749 §5.2. The authorization endpoint is a page for people, not listed.",
    },
    {
        "name": TAG_OIDC,
        "description": "OpenID Connect: the discovery document and userinfo.",
    },
    {"name": TAG_KEYS, "description": "The public keys that verify every token (RFC 7517)."},
]
_FIRST_PARTY_TAGS = (
    ("/api/v1/auth/", TAG_FIRST_PARTY),
    ("/api/v1/me", TAG_ACCOUNT),
    ("/api/v1/sessions", TAG_ACCOUNT),
)


# Summaries for first-party operations whose view gives none (a view's own summary wins).
_FIRST_PARTY_SUMMARIES = {
    ("get", "/api/v1/auth/csrf"): "Get the CSRF token for the browser-mode POSTs",
    ("post", "/api/v1/auth/logout-all"): "End every session of the signed-in user",
    ("get", "/api/v1/me"): "The signed-in user",
    ("get", "/api/v1/sessions"): "The signed-in user's live sessions",
    ("delete", "/api/v1/sessions/{session_id}"): "End one of the signed-in user's sessions",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


SCHEMAS: dict[str, Any] = {
    "OAuthError": {
        "type": "object",
        "description": "An OAuth error (RFC 6749 §5.2).",
        "properties": {
            "error": _string(
                "The error code.",
                example="invalid_grant",
            ),
            "error_description": _string(
                "What went wrong, as a sentence.", example="The refresh token is invalid."
            ),
            "error_uri": _string("A page about the error.", format="uri"),
        },
        "required": ["error"],
        "example": {
            "error": "invalid_client",
            "error_description": "Client authentication failed.",
        },
    },
    "TokenRequest": {
        "type": "object",
        "description": "A token request (RFC 6749 §4.1.3, §4.4.2, §6). Confidential clients "
        "authenticate with HTTP Basic (client_secret_basic) or client_id and client_secret "
        "here (client_secret_post); public clients send client_id and the PKCE code_verifier.",
        "properties": {
            "grant_type": _string(
                "The grant.",
                enum=["authorization_code", "refresh_token", "client_credentials"],
            ),
            "code": _string("authorization_code: the code from the redirect."),
            "redirect_uri": _string("authorization_code: the redirect_uri of the request."),
            "code_verifier": _string("authorization_code: the PKCE verifier (RFC 7636)."),
            "refresh_token": _string("refresh_token: the refresh token (spent by this call)."),
            "scope": _string(
                "client_credentials: the scopes wanted (space-separated); refresh_token: "
                "omitted or equal to the granted scope."
            ),
            "client_id": _string("client_secret_post and public clients: the client's id."),
            "client_secret": _string("client_secret_post: the client's secret.", format="password"),
        },
        "required": ["grant_type"],
    },
    "TokenResponse": {
        "type": "object",
        "description": "Tokens (RFC 6749 §5.1). The access token is a JWT (RFC 9068, typ "
        "at+jwt) verifiable with the JWKS.",
        "properties": {
            "access_token": _string("The access token (a signed JWT)."),
            "token_type": _string("Always Bearer (RFC 6750).", enum=["Bearer"]),
            "expires_in": {"type": "integer", "description": "Seconds until it expires."},
            "scope": _string("The granted scopes, space-separated."),
            "refresh_token": _string(
                "With the refresh_token grant allowed and offline_access granted."
            ),
            "id_token": _string("For the openid scope, at the code exchange (a signed JWT)."),
        },
        "required": ["access_token", "token_type", "expires_in"],
        "example": {
            "access_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjNhUHc...",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "openid profile offline_access",
            "refresh_token": "rt1.b6cPz...",
            "id_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjNhUHc...",
        },
    },
    "RevocationRequest": {
        "type": "object",
        "description": "A revocation request (RFC 7009 §2.1): the token's session (grant) ends.",
        "properties": {
            "token": _string("An access token or a refresh token of this client."),
            "token_type_hint": _string(
                "access_token or refresh_token; only a hint (every kind is searched)."
            ),
            "client_id": _string("client_secret_post and public clients: the client's id."),
            "client_secret": _string("client_secret_post: the client's secret.", format="password"),
        },
        "required": ["token"],
    },
    "IntrospectionRequest": {
        "type": "object",
        "description": "An introspection request (RFC 7662 §2.1), by a confidential client.",
        "properties": {
            "token": _string("The token to look at."),
            "token_type_hint": _string("access_token or refresh_token; only a hint."),
            "client_id": _string("client_secret_post: the client's id."),
            "client_secret": _string("client_secret_post: the client's secret.", format="password"),
        },
        "required": ["token"],
    },
    "IntrospectionResponse": {
        "type": "object",
        "description": "What a token is (RFC 7662 §2.2). Anything not active, or not the "
        'caller\'s to see, is {"active": false} and nothing more.',
        "properties": {
            "active": {"type": "boolean"},
            "scope": _string("Space-separated scopes."),
            "client_id": _string("The client the token was issued to."),
            "username": _string("The user's username (user tokens)."),
            "token_type": _string("access_token or refresh_token."),
            "exp": {"type": "integer"},
            "iat": {"type": "integer"},
            "nbf": {"type": "integer"},
            "sub": _string("The user's public id, or the client id for machine tokens."),
            "aud": {
                "description": "The token's audience.",
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            },
            "iss": _string("The issuer."),
            "jti": _string("The access token's id."),
            "sid": _string("The session the token belongs to."),
        },
        "required": ["active"],
        "example": {
            "active": True,
            "scope": "orders:read",
            "client_id": "reports",
            "token_type": "access_token",
            "exp": 1764969600,
            "iat": 1764969300,
            "sub": "reports",
            "aud": "https://orders.example.com",
            "iss": "https://id.example.com",
        },
    },
    "Userinfo": {
        "type": "object",
        "description": "The user's claims released by the token's scopes (OpenID Connect Core "
        "§5.3, §5.4), plus the client's mapped claims.",
        "properties": {
            "sub": _string("The user's public id."),
            "name": _string("profile scope."),
            "given_name": _string("profile scope."),
            "family_name": _string("profile scope."),
            "preferred_username": _string("profile scope."),
            "email": _string("email scope.", format="email"),
            "groups": {
                "type": "array",
                "items": {"type": "string"},
                "description": "groups scope: the names of the user's groups.",
            },
        },
        "required": ["sub"],
        "additionalProperties": True,
        "example": {
            "sub": "5f0e7c1e-4a51-4c3b-9d55-2f6a9e0b1c2d",
            "name": "Alice Liddell",
            "preferred_username": "alice",
            "email": "alice@example.com",
            "groups": ["finance"],
        },
    },
    "UserinfoRequest": {
        "type": "object",
        "description": "Nothing is needed in the body; the access token goes in the "
        "Authorization header.",
        "properties": {},
    },
    "ProviderMetadata": {
        "type": "object",
        "description": "The OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414 "
        "§2): every endpoint, what is supported.",
        "properties": {
            "issuer": _string("The issuer (`iss` of every token).", format="uri"),
            "authorization_endpoint": _string("", format="uri"),
            "token_endpoint": _string("", format="uri"),
            "userinfo_endpoint": _string("", format="uri"),
            "jwks_uri": _string("", format="uri"),
            "revocation_endpoint": _string("", format="uri"),
            "introspection_endpoint": _string("", format="uri"),
            "end_session_endpoint": _string("", format="uri"),
            "scopes_supported": {"type": "array", "items": {"type": "string"}},
            "response_types_supported": {"type": "array", "items": {"type": "string"}},
            "grant_types_supported": {"type": "array", "items": {"type": "string"}},
            "claims_supported": {"type": "array", "items": {"type": "string"}},
            "code_challenge_methods_supported": {"type": "array", "items": {"type": "string"}},
            "id_token_signing_alg_values_supported": {
                "type": "array",
                "items": {"type": "string"},
            },
        },
        "required": [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
        ],
        "additionalProperties": True,
        "example": {
            "issuer": "https://id.example.com",
            "authorization_endpoint": "https://id.example.com/oauth/authorize",
            "token_endpoint": "https://id.example.com/oauth/token",
            "jwks_uri": "https://id.example.com/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
        },
    },
    "JsonWebKey": {
        "type": "object",
        "description": "A public key (RFC 7517 §4): RSA (n, e) or EC P-256 (crv, x, y).",
        "properties": {
            "kty": _string("Key type.", enum=["RSA", "EC"]),
            "kid": _string("Key id: the RFC 7638 thumbprint, named in each token's header."),
            "use": _string("Always sig.", enum=["sig"]),
            "alg": _string("RS256 or ES256.", enum=["RS256", "ES256"]),
            "n": _string("RSA modulus (base64url)."),
            "e": _string("RSA exponent (base64url)."),
            "crv": _string("EC curve.", enum=["P-256"]),
            "x": _string("EC x (base64url)."),
            "y": _string("EC y (base64url)."),
        },
        "required": ["kty", "kid"],
        "additionalProperties": True,
    },
    "JsonWebKeySet": {
        "type": "object",
        "description": "The published keys: the signing key, the next one and retired ones "
        "still within their tokens' lifetime (RFC 7517 §5).",
        "properties": {"keys": {"type": "array", "items": _ref("JsonWebKey")}},
        "required": ["keys"],
        "example": {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "3aPwq9u1n0mXbKq...",
                    "use": "sig",
                    "alg": "RS256",
                    "n": "0vx7agoebGcQSuu...",
                    "e": "AQAB",
                }
            ]
        },
    },
}

_NO_STORE = {
    "Cache-Control": {
        "description": "no-store: tokens and answers about them are never cached.",
        "schema": {"type": "string"},
        "required": True,
    }
}


def _error(description: str, example: dict | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": _ref("OAuthError")}
    if example:
        content["example"] = example
    return {"description": description, "content": {JSON: content}}


def _json(name: str, description: str, headers: dict | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref(name)}},
    }
    if headers:
        response["headers"] = headers
    return response


_CLIENT_AUTH = [{"clientSecretBasic": []}, {}]
_BAD_REQUEST = _error(
    "invalid_request: a missing, repeated or malformed parameter, a body that is not form "
    "data, parameters in the URL; unsupported_grant_type, invalid_grant, invalid_scope, "
    "unauthorized_client.",
    {"error": "invalid_request", "error_description": "The grant_type parameter is required."},
)
_INVALID_CLIENT = {
    **_error(
        "invalid_client: the client could not be authenticated (WWW-Authenticate: Basic).",
        {"error": "invalid_client", "error_description": "Client authentication failed."},
    ),
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
}
_TOO_LARGE = _error("The request body is too large.")
_UNAVAILABLE = _error("temporarily_unavailable: the database or the signing keys are down.")


def _form_body(name: str, example: dict) -> dict[str, Any]:
    return {
        "required": True,
        "content": {FORM: {"schema": _ref(name), "example": example}},
    }


PATHS: dict[str, Any] = {
    "/oauth/token": {
        "post": {
            "operationId": "oauth_token",
            "summary": "Exchange a code, a refresh token or client credentials for tokens",
            "description": "RFC 6749 §3.2. authorization_code (with PKCE S256), refresh_token "
            "(rotation with reuse detection: a spent token presented again ends the grant) and "
            "client_credentials (confidential clients).",
            "tags": [TAG_OAUTH],
            "security": _CLIENT_AUTH,
            "requestBody": _form_body(
                "TokenRequest",
                {
                    "grant_type": "authorization_code",
                    "code": "SplxlOBeZQQYbYS6WxSbIA",
                    "redirect_uri": "https://app.example.com/callback",
                    "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                },
            ),
            "responses": {
                "200": _json("TokenResponse", "The tokens.", _NO_STORE),
                "400": _BAD_REQUEST,
                "401": _INVALID_CLIENT,
                "413": _TOO_LARGE,
                "503": _UNAVAILABLE,
            },
        }
    },
    "/oauth/revoke": {
        "post": {
            "operationId": "oauth_revoke",
            "summary": "Revoke a token and end the grant it belongs to",
            "description": "RFC 7009. 200 whether or not the token was found, was already "
            "revoked or is another client's: the answer tells nothing about the token.",
            "tags": [TAG_OAUTH],
            "security": _CLIENT_AUTH,
            "requestBody": _form_body(
                "RevocationRequest", {"token": "rt1.b6cPz...", "token_type_hint": "refresh_token"}
            ),
            "responses": {
                "200": {"description": "Revoked, or nothing to revoke (empty body)."},
                "400": _BAD_REQUEST,
                "401": _INVALID_CLIENT,
                "413": _TOO_LARGE,
                "503": _UNAVAILABLE,
            },
        }
    },
    "/oauth/introspect": {
        "post": {
            "operationId": "oauth_introspect",
            "summary": "Find out whether a token is active, and what it is",
            "description": "RFC 7662, confidential clients only. A client sees only its own "
            'tokens unless it is a resource server; anything else is {"active": false}.',
            "tags": [TAG_OAUTH],
            "security": [{"clientSecretBasic": []}],
            "requestBody": _form_body(
                "IntrospectionRequest", {"token": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjNhUHc..."}
            ),
            "responses": {
                "200": {
                    **_json("IntrospectionResponse", "What the token is.", _NO_STORE),
                    "content": {
                        JSON: {
                            "schema": _ref("IntrospectionResponse"),
                            "examples": {
                                "active": {"value": SCHEMAS["IntrospectionResponse"]["example"]},
                                "inactive": {"value": {"active": False}},
                            },
                        }
                    },
                },
                "400": _BAD_REQUEST,
                "401": _INVALID_CLIENT,
                "413": _TOO_LARGE,
                "503": _UNAVAILABLE,
            },
        }
    },
}


def _userinfo_operation(method: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"oidc_userinfo_{method}",
        "summary": "The signed-in user's claims, for an access token with the openid scope",
        "description": "OpenID Connect Core §5.3. Any of authserver's access tokens (any "
        "audience) with the openid scope, whose session is still live.",
        "tags": [TAG_OIDC],
        "security": [{"bearerAuth": []}],
        "responses": {
            "200": _json("Userinfo", "The claims.", _NO_STORE),
            "401": {
                **_error(
                    "invalid_token: no token, or a token that does not verify or whose session "
                    "ended (WWW-Authenticate: Bearer).",
                    {"error": "invalid_token", "error_description": "Token expired."},
                ),
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
            },
            "403": _error(
                "insufficient_scope: the token was not granted the openid scope.",
                {
                    "error": "insufficient_scope",
                    "error_description": "The access token was not granted the openid scope.",
                },
            ),
            "503": _UNAVAILABLE,
        },
    }
    if method == "post":
        operation["requestBody"] = {
            "required": False,
            "content": {
                FORM: {"schema": _ref("UserinfoRequest")},
                JSON: {"schema": _ref("UserinfoRequest")},
            },
        }
        operation["responses"]["400"] = _error("The body is not valid form data or JSON.")
        operation["responses"]["415"] = _error("The body is neither form data nor JSON.")
    return operation


PATHS["/oauth/userinfo"] = {"get": _userinfo_operation("get"), "post": _userinfo_operation("post")}
PATHS["/.well-known/openid-configuration"] = {
    "get": {
        "operationId": "oidc_discovery",
        "summary": "The OpenID Provider configuration: endpoints, scopes, claims, algorithms",
        "description": "OpenID Connect Discovery 1.0. Public; cacheable for an hour.",
        "tags": [TAG_OIDC],
        "security": [{}],
        "responses": {"200": _json("ProviderMetadata", "The configuration.")},
    }
}
PATHS["/.well-known/jwks.json"] = {
    "get": {
        "operationId": "jwks",
        "summary": "The public keys that verify authserver's tokens",
        "description": "RFC 7517. Cache it for Cache-Control's max-age, and fetch it again "
        "when a token names a kid it does not hold. Conditional GET with If-None-Match.",
        "tags": [TAG_KEYS],
        "security": [{}],
        "responses": {
            "200": _json(
                "JsonWebKeySet",
                "The key set.",
                {
                    "ETag": {"schema": {"type": "string"}, "required": True},
                    "Cache-Control": {"schema": {"type": "string"}, "required": True},
                },
            ),
            "304": {"description": "Not modified (If-None-Match matched the ETag)."},
            "503": _error("The keys cannot be read; see /readyz."),
        },
    }
}

SECURITY_SCHEMES = {
    "clientSecretBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "client_secret_basic: the client id and secret (RFC 6749 §2.3.1).",
    },
}


def openapi_add_oauth(result: dict, generator, request, public) -> dict:
    """drf-spectacular post-processing hook: tags for the first-party operations, then the
    OAuth and OpenID Connect operations, their schemas and security schemes."""
    for path, operations in result.get("paths", {}).items():
        for prefix, tag in _FIRST_PARTY_TAGS:
            if path.startswith(prefix):
                for method, operation in operations.items():
                    if isinstance(operation, dict):
                        operation["tags"] = [tag]
                        summary = _FIRST_PARTY_SUMMARIES.get((method, path))
                        if summary:
                            operation.setdefault("summary", summary)
                break
    result.setdefault("paths", {}).update(PATHS)
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(SCHEMAS)
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    components["securitySchemes"].setdefault(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    result["tags"] = TAGS
    return result
