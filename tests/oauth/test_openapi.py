"""The OAuth 2.0 / OpenID Connect endpoints in the OpenAPI schema (issue 18.5): token,
revocation, introspection, userinfo, discovery and JWKS, with named schemas, a summary and tags
per operation, form-encoded bodies for the back channel, and examples. The schema validates as
OpenAPI 3; tests/security/test_schema_fuzz.py fuzzes these operations on live gunicorn."""

from __future__ import annotations

import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
OAUTH_OPERATIONS = {
    ("post", "/oauth/token"): ("TokenRequest", "TokenResponse"),
    ("post", "/oauth/revoke"): ("RevocationRequest", None),
    ("post", "/oauth/introspect"): ("IntrospectionRequest", "IntrospectionResponse"),
    ("get", "/oauth/userinfo"): (None, "Userinfo"),
    ("post", "/oauth/userinfo"): ("UserinfoRequest", "Userinfo"),
    ("get", "/.well-known/openid-configuration"): (None, "ProviderMetadata"),
    ("get", "/.well-known/jwks.json"): (None, "JsonWebKeySet"),
}


@pytest.fixture
def schema(client, settings):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _ref(content: dict) -> str:
    return content["schema"]["$ref"].rsplit("/", 1)[-1]


def test_the_schema_is_valid_openapi(schema):
    validate_schema(schema)


def test_every_oauth_operation_is_described(schema):
    tag_names = {tag["name"] for tag in schema["tags"]}
    for (method, path), (request, response) in OAUTH_OPERATIONS.items():
        operation = schema["paths"][path][method]
        assert operation["summary"] and operation["description"], path
        assert operation["tags"] and set(operation["tags"]) <= tag_names, path
        assert "security" in operation, path
        if request is not None:
            content = operation["requestBody"]["content"]
            assert _ref(content[FORM]) == request
            assert request in schema["components"]["schemas"]
        if response is not None:
            assert _ref(operation["responses"]["200"]["content"]["application/json"]) == response
            named = schema["components"]["schemas"][response]
            ok = operation["responses"]["200"]["content"]["application/json"]
            assert "example" in named or "examples" in ok, response
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert _ref(answer["content"]["application/json"]) == "OAuthError", (path, status)


def test_back_channel_bodies_are_form_encoded_with_examples(schema):
    for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
        body = schema["paths"][path]["post"]["requestBody"]
        assert list(body["content"]) == [FORM]
        assert body["content"][FORM]["example"]
    token = schema["components"]["schemas"]["TokenRequest"]
    assert token["properties"]["grant_type"]["enum"] == [
        "authorization_code",
        "refresh_token",
        "client_credentials",
    ]
    assert schema["components"]["securitySchemes"]["clientSecretBasic"]["scheme"] == "basic"


def test_every_operation_has_a_summary_and_a_tag_by_area(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            assert len(operation.get("tags", [])) == 1, (method, path)
    areas = {op["tags"][0] for ops in schema["paths"].values() for op in ops.values()}
    assert areas == {
        "First-party sign-in",
        "Account and sessions",
        "OAuth 2.0",
        "OpenID Connect",
        "Signing keys",
    }


def test_generation_has_no_warnings_and_every_schema_is_named(schema, tmp_path):
    """drf-spectacular warns (and names two bodies alike) when two serializers share a name;
    --fail-on-warn turns any warning into a failure."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yaml"))
    assert not {"Input", "Output"} & set(schema["components"]["schemas"])
    assert {"LoginRequest", "MfaRequest", "User"} <= set(schema["components"]["schemas"])
