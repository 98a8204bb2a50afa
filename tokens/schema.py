"""OpenAPI description of our bearer authentication (drf-spectacular extension).

Registered by importing this module in TokensConfig.ready().
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AccessTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tokens.authentication.AccessTokenAuthentication"
    match_subclasses = True
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT (RFC 9068 at+jwt, RS256; keys at /.well-known/jwks.json)",
        }
