"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

authlib's registry (`ClientAuthentication`) supplies client_secret_post and none; this module
replaces its client_secret_basic with a strict one: a malformed header is an error rather than
an exception, wrong Basic credentials fail at once instead of falling through to another
method, and a request may not combine Basic with a client_secret in the body (§2.3: "MUST NOT
use more than one authentication method in each request").
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError

from oauth.models import Client

# Client ids are at most 64 characters and secrets 43; anything much longer is not ours.
_MAX_BASIC_LENGTH = 512


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, secret) from `Authorization: Basic ...`, or None if the header is not Basic.
    Raises InvalidClientError for a Basic header that cannot be decoded."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    value = value.strip()
    if not value or len(value) > _MAX_BASIC_LENGTH:
        raise InvalidClientError(status_code=401, description="Malformed Basic credentials.")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidClientError(
            status_code=401, description="Malformed Basic credentials."
        ) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id or not secret:
        raise InvalidClientError(status_code=401, description="Malformed Basic credentials.")
    # §2.3.1: both parts are form-urlencoded before the Base64 step.
    return unquote_plus(client_id), unquote_plus(secret)


def authenticate_client_secret_basic(query_client, request) -> Client | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    credentials = _basic_credentials(header)
    if credentials is None:
        return None
    client_id, secret = credentials
    form = request.form
    if form.get("client_secret") is not None:
        raise InvalidRequestError("Use one client authentication method, not Basic and the body.")
    if form.get("client_id") not in (None, client_id):
        raise InvalidClientError(status_code=401, description="client_id does not match.")
    client = query_client(client_id)
    if client is None or not client.check_client_secret(secret):
        raise InvalidClientError(status_code=401, description="Client authentication failed.")
    return client


def client_auth_register(server) -> None:
    server.register_client_auth_method("client_secret_basic", authenticate_client_secret_basic)
