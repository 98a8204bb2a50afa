"""HTTP rules shared by the back-channel endpoints (token, revocation, introspection).

- Bodies are application/x-www-form-urlencoded only (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662
  §2.1): JSON or multipart bodies are refused with invalid_request.
- Parameters may appear once (RFC 6749 §3.2) and may not carry control characters.
- Responses are JSON with Cache-Control: no-store (RFC 6749 §5.1), errors included.
- Nothing a client sends produces a 500: an oversized body is a 413, a database or key-store
  outage a 503, and anything unexpected a generic server_error with details in the log only.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable

from authlib.oauth2 import OAuth2Error
from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, QueryDict

from accounts.network import client_ip
from authserver.errors import method_not_allowed_description
from oauth.client_auth import client_auth_failure_record, client_id_attempted
from tokens.keys import KeyStoreUnavailable

logger = logging.getLogger("oauth")

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
JSON_MEDIA_TYPE = "application/json"
# One encoder for every response: json.dumps with `separators` builds a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":"))
# Descriptions authlib builds from request input; we send fixed text instead.
FIXED_DESCRIPTIONS = {
    "unsupported_grant_type": "The grant_type is not supported. Supported: authorization_code, "
    "refresh_token, client_credentials.",
    "unsupported_response_type": "The response_type is not supported. Supported: code.",
    "invalid_client": "Client authentication failed.",
}
INVALID_CLIENT_CHALLENGE = (
    'Basic realm="authserver", error="invalid_client", '
    'error_description="Client authentication failed."'
)


class BadRequest(Exception):
    def __init__(self, description: str, status: int = 400):
        super().__init__(description)
        self.description = description
        self.status = status


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> HttpResponse:
    """`body` as compact JSON with Cache-Control: no-store (RFC 6749 §5.1). The body is handed
    over as bytes, with its charset: Django then reads no setting to encode it."""
    response = HttpResponse(
        _JSON.encode(body).encode(), status=status, content_type=JSON_MEDIA_TYPE, charset="utf-8"
    )
    for name, value in NO_STORE.items():
        response[name] = value
    if headers:
        for name, value in headers.items():
            response[name] = value
    return response


def error_response(
    error: str, description: str, status: int = 400, headers: dict | None = None
) -> HttpResponse:
    return json_response({"error": error, "error_description": description}, status, headers)


def oauth_error_response(request: HttpRequest, form: QueryDict, error: OAuth2Error) -> HttpResponse:
    """RFC 6749 §5.2 JSON for an OAuth error raised at a back-channel endpoint. Every
    invalid_client is a 401 with WWW-Authenticate and a fixed description (authlib sends 400
    unless the client tried HTTP Basic, and describes the failure), and is audited
    (`client_auth_failure_record`: once per client and IP in a window)."""
    description = FIXED_DESCRIPTIONS.get(error.error, error.description)
    headers = None
    status = error.status_code
    if error.error == "invalid_client":
        status = 401
        headers = {"WWW-Authenticate": INVALID_CLIENT_CHALLENGE}
        client_auth_failed(request, form)
    body = {"error": error.error}
    if description:
        body["error_description"] = description
    return json_response(body, status, headers)


def client_auth_failed(request: HttpRequest, form: QueryDict) -> None:
    """Audit (and count) a failed client authentication of this request."""
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    client_auth_failure_record(
        client_id=client_id_attempted(form, authorization),
        ip=client_ip(request) or None,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
        endpoint=request.path,
        method="basic" if authorization.lower().startswith("basic ") else "body",
    )


# C0 controls and DEL. One regex search instead of a Python loop over every character: the loop
# was a tenth of an introspection's CPU, whose token parameter is a JWT of ~800 characters.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def form_parameters(request: HttpRequest) -> QueryDict:
    """The form body of a POST, checked; raises BadRequest (invalid_request)."""
    media_type = request.content_type.split(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise BadRequest(f"The request body must be {FORM_MEDIA_TYPE}.")
    try:
        form = request.POST
    except RequestDataTooBig:
        raise BadRequest("The request body is too large.", 413) from None
    except (TooManyFieldsSent, SuspiciousOperation):
        raise BadRequest("The request has too many parameters.") from None
    except DjangoBadRequest:
        raise BadRequest("The request body must be UTF-8 form data.") from None
    if request.META.get("QUERY_STRING") and request.GET:  # no QueryDict built for none
        # Credentials and codes never travel in the URL (RFC 6749 §3.2, RFC 6750 §5.3).
        raise BadRequest("Parameters must be sent in the request body, not the URL.")
    for key in form:
        values = form.getlist(key)
        if len(values) > 1:
            raise BadRequest(f"The {key[:40]} parameter must not be repeated.")
        if _CONTROL_CHARACTER.search(key) or _CONTROL_CHARACTER.search(values[0]):
            raise BadRequest("Parameters must not contain control characters.")
    return form


def protocol_endpoint(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """POST only; BadRequest and outages become RFC 6749 §5.2-shaped JSON."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            description = method_not_allowed_description(request.method, "POST")
            return error_response("invalid_request", description, 405, {"Allow": "POST"})
        try:
            return view(request, *args, **kwargs)
        except BadRequest as exc:
            return error_response("invalid_request", exc.description, exc.status)
        except KeyStoreUnavailable as exc:
            logger.error("signing keys unavailable: %s", exc.reason)
            return _unavailable()
        except (OperationalError, InterfaceError) as exc:
            logger.error("database unavailable: %s", exc.__class__.__name__)
            return _unavailable()
        except DatabaseError:
            logger.exception("database error in %s", view.__name__)
            return error_response("server_error", "The server could not complete the request.", 500)
        except Exception:
            logger.exception("unexpected error in %s", view.__name__)
            return error_response("server_error", "The server could not complete the request.", 500)

    return wrapped


def _unavailable() -> HttpResponse:
    return error_response(
        "temporarily_unavailable",
        "The service is temporarily unavailable.",
        503,
        {"Retry-After": "5"},
    )
